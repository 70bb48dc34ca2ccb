"""`python -m fusion.predict` as a user runs it: the test split's predictions equal the evaluate side's, a corrupt
file is quarantined with its reason, labels are optional, and bad references end with a clear message. Also
the prediction table of each task."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.predict import options
from fusion.serving.predictions import prediction_rows, write_predictions
from fusion.tasks.labels import label_spec
from fusion.tasks.objectives import build_task
from tests.helpers.serving import trained_run

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
CLASSES = ["alpha", "bravo", "charlie"]


def _task(name: str):
    return build_task(
        compose([f"task={name}"]).task,
        label_spec(name)(
            {
                "task": name,
                "classes": [] if name == "regression" else CLASSES,
                "target_stats": {"mean": 0.0, "std": 1.0},
            }
        ),
    )


def _read(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as source:
        return {row["id"]: row for row in csv.DictReader(source)}


def _predict(args: list[str], env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fusion.predict", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


# ------------------------------------------------------------------ the prediction table
def test_prediction_rows_of_each_task():
    multiclass = prediction_rows(["a", "b"], torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]]), _task("multiclass"))
    assert [r["prediction"] for r in multiclass] == ["bravo", "alpha"]
    assert list(multiclass[0]) == ["id", "prediction", "prob_alpha", "prob_bravo", "prob_charlie"]
    multilabel = prediction_rows(["a", "b"], torch.tensor([[0.9, 0.1, 0.7], [0.5, 0.2, 0.1]]), _task("multilabel"))
    assert [r["prediction"] for r in multilabel] == ["alpha|charlie", ""]  # over the threshold (0.5) only
    regression = prediction_rows(["a", "b"], torch.tensor([1.5, -0.25]), _task("regression"))
    assert regression == [
        {"id": "a", "prediction": 1.5, "value": 1.5},
        {"id": "b", "prediction": -0.25, "value": -0.25},
    ]
    with pytest.raises(ValueError, match="do not belong together"):
        prediction_rows(["a"], torch.tensor([[0.5, 0.5]]), _task("multiclass"))


def test_written_predictions_keep_full_float_precision(tmp_path):
    scores = torch.tensor([[0.1234567, 0.5, 0.3765433]])
    path = write_predictions(tmp_path / "out" / "predictions.csv", ["r1"], scores, _task("multiclass"))
    (row,) = _read(path).values()
    assert [float(row[f"prob_{c}"]) for c in CLASSES] == scores[0].tolist()  # float32 values, exactly
    assert not list((tmp_path / "out").glob(".*partial"))


def test_help_lists_every_key(subprocess_env):
    result = _predict(["--help"], subprocess_env)
    assert result.returncode == 0
    for key in options(compose()):
        assert f"{key}=" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=/no/such/folder", "manifest=m.jsonl"], "no such file or folder"),
        (
            ["model=0123456789abcdef0123456789abcdef", "manifest=m.jsonl", "tracking_uri=sqlite:///no/such/mlflow.db"],
            "does not exist",
        ),
        (["model=x", "manifest=no.jsonl"], "manifest not found: no.jsonl"),
        (["manifest=m.jsonl"], "missing model="),
        (["model=x", "manifest=m.jsonl", "colour=red"], "unknown key 'colour'"),
    ],
)
def test_a_bad_command_line_ends_with_a_clear_message(args, message, subprocess_env, tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "r1", "text": "some text"}\n')
    result = _predict(args, subprocess_env, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "no").exists()  # no MLflow store was created on the way


# ------------------------------------------------------------------ with a trained run
@pytest.fixture(scope="module")
def run(tmp_path_factory, processed_dir, sample_root):
    return trained_run(tmp_path_factory, processed_dir, sample_root)


def evaluate_stage_predictions(run) -> Path:
    """The evaluate stage's predictions.csv of the run: the best checkpoint on the processed test split."""
    from fusion.stages.evaluate import PREDICTIONS, evaluate

    cfg = OmegaConf.merge(run["cfg"], {"test_missing_modalities": False, "explain": {"enabled": False}})
    evaluate(cfg)
    return Path(cfg.paths.evaluate_dir) / PREDICTIONS


@pytest.mark.slow
def test_predictions_of_the_test_split_equal_the_evaluate_stage(run, sample_root, subprocess_env, tmp_path):
    expected = _read(evaluate_stage_predictions(run))
    output = tmp_path / "predict" / "predictions.csv"
    result = _predict(
        [
            f"model={run['uri']}",
            f"manifest={sample_root / 'manifest.jsonl'}",
            "split=test",
            f"tracking_uri={run['cfg'].logger.tracking_uri}",
            f"output={output}",
            "batch_size=7",
        ],
        subprocess_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = _read(output)
    assert f"predicted {len(got)} record(s)" in result.stdout and "rejected 0" in result.stdout
    assert set(got) == set(expected) and len(got) == len(run["datamodule"].dataset("test"))
    columns = [c for c in next(iter(expected.values())) if c.startswith("prob_")]
    for record_id, row in expected.items():
        assert got[record_id]["prediction"] == row["prediction"], record_id
        np.testing.assert_allclose(
            [float(got[record_id][c]) for c in columns], [float(row[c]) for c in columns], atol=TOLERANCE
        )
    assert (output.parent / "predictions.rejected.jsonl").read_text() == ""


@pytest.mark.slow
def test_a_corrupt_image_is_quarantined_and_the_other_records_predicted(run, sample_root, subprocess_env, tmp_path):
    dataset = tmp_path / "new"
    lines = [json.loads(line) for line in (sample_root / "manifest.jsonl").read_text().splitlines()][:6]
    for line in lines:
        for key in ("text_path", "image", "audio"):
            if line.get(key):
                (dataset / line[key]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(sample_root / line[key], dataset / line[key])
        line.pop("label")  # labels are optional for prediction
        line.pop("split", None)
    broken = {"id": "broken", "text": "a text", "image": "image/broken.png"}
    (dataset / "image" / "broken.png").write_bytes(np.random.default_rng(0).bytes(3000))
    (dataset / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [*lines[:3], broken, *lines[3:]]))
    model = run["base"] / "model"
    if not model.exists():  # a local MLflow model folder works as well as the run
        from fusion.serving.pyfunc import save_bundle_model

        save_bundle_model(run["bundle"], model)
    result = _predict(
        [f"model={model}", "manifest=new/manifest.jsonl", "output=out/new.csv", "num_workers=2"],
        subprocess_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = _read(tmp_path / "out" / "new.csv")
    assert list(got) == [line["id"] for line in lines]
    (rejection,) = [json.loads(x) for x in (tmp_path / "out" / "new.rejected.jsonl").read_text().splitlines()]
    assert rejection["id"] == "broken" and rejection["line"] == 4 and rejection["file"] == "image/broken.png"
    assert rejection["reason"].startswith("image: not an image")
    assert "rejected 1" in result.stdout and "broken" in result.stdout


@pytest.mark.slow
def test_a_run_that_is_not_in_the_store_ends_with_a_clear_message(run, sample_root, subprocess_env, tmp_path):
    result = _predict(
        [
            "model=0123456789abcdef0123456789abcdef",
            f"manifest={sample_root / 'manifest.jsonl'}",
            f"tracking_uri={run['cfg'].logger.tracking_uri}",
        ],
        subprocess_env,
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        "Run with id=0123456789abcdef0123456789abcdef not found" in result.stderr and "tracking_uri=" in result.stderr
    )
