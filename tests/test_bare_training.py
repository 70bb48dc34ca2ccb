"""Training where users are: the training path imports without DVC, and `logger=none` trains and checkpoints
without writing anything to MLflow (a bare GPU box with torch, Lightning, timm and Hydra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.config import ROOT, TINY_TRAINING

# Run in a fresh interpreter whose `import dvc` fails, as on a machine without DVC.
SCRIPT = """
import sys
sys.modules["dvc"] = None  # any `import dvc...` now raises ImportError
from pathlib import Path
from fusion.config import compose
from fusion.stages.train import train
out = Path(sys.argv[1])
cfg = compose([*sys.argv[3:], f"data.processed_dir={sys.argv[2]}", f"paths.output_dir={out / 'train'}", "logger=none"])
metrics = train(cfg)
print("DVC_LOADED", any(name == "dvc" or name.startswith("dvc.") for name, m in sys.modules.items() if m is not None))
print("METRICS", sorted(metrics))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_logger_none_trains_without_dvc_and_writes_nothing_to_mlflow(processed_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path),
            str(processed_dir),
            *TINY_TRAINING,
            "trainer.max_epochs=1",
            "modality=text+audio",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "DVC_LOADED False" in result.stdout and "test/acc" in result.stdout
    run = tmp_path / "train"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "run.json").read_text())["run_id"] is None
    assert (run / "bundle").is_dir()  # predict and serve from the run folder: model=<run folder>
    assert not list(tmp_path.glob("mlflow.db")) and not (tmp_path / "mlartifacts").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bare_accuracy_benchmark_trains_each_seed_and_summarises(processed_dir, tmp_path):
    """`python -m benchmarks.accuracy.bare`: the accuracy check of a machine without an MLflow store (a GPU box)."""
    out = tmp_path / "bare.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.accuracy.bare",
            str(processed_dir),
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "runs"),
            *TINY_TRAINING,
            "trainer.max_epochs=1",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert sorted(report["runs"]) == ["0", "1"] and report["machine"]["device"] == "cpu"
    for figures in report["runs"].values():
        assert 0 <= figures["test/acc"] <= 1 and figures["time/fit_seconds"] > 0
        assert {"test/acc_without_text", "test/acc_without_image", "test/acc_without_audio"} <= set(figures)
    accuracies = [figures["test/acc"] for figures in report["runs"].values()]
    assert report["summary"]["test/acc"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert report["summary"]["test/acc"]["n"] == 2
    assert (tmp_path / "runs" / "seed-1" / "run.json").is_file()  # each seed its own run folder


def test_bare_accuracy_benchmark_names_a_missing_processed_folder(tmp_path):
    from benchmarks.accuracy.bare import main

    with pytest.raises(SystemExit, match=r"not a folder; preprocess first: python pipelines/preprocess.py"):
        main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
