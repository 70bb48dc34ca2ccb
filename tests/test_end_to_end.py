"""End to end: the CLI entry point and `dvc repro` of the whole DAG on tiny data, for real."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fusion.config import compose
from tests.helpers.config import TINY_TRAINING

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "sample",
    "preprocess_text",
    "preprocess_image",
    "preprocess_audio",
    "train",
    "evaluate",
    "robustness",
    "report",
    "compare",
}
ROBUSTNESS_LEVELS = [0.0, 0.5, 1.0]  # fewer noise levels keep the robustness stage quick


def _run(args, cwd, env, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-5000:]}"
        )
    return result


def _runs(db: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fusion")
    runs = [] if experiment is None else client.search_runs([experiment.experiment_id])
    return [run for run in runs if "kind" not in run.data.tags]  # training runs only (not compare / report runs)


@pytest.mark.parametrize("modality", ["text+image", "audio"])
def test_train_cli_creates_an_mlflow_run(modality, processed_dir, tmp_path, subprocess_env):
    db = tmp_path / "mlflow.db"
    args = [
        sys.executable,
        "train.py",
        f"modality={modality}",
        "trainer.max_epochs=1",
        *TINY_TRAINING[1:],
        f"data.processed_dir={processed_dir}",
        f"logger.tracking_uri=sqlite:///{db}",
        f"logger.artifact_location={tmp_path / 'artifacts'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    _run(args, ROOT, subprocess_env)
    (run,) = _runs(db)
    assert run.data.tags["modality"] == modality
    assert "test/acc" in run.data.metrics and "val/acc" in run.data.metrics
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_train_cli_help_lists_the_config_groups(subprocess_env):
    out = _run([sys.executable, "train.py", "--help"], ROOT, subprocess_env).stdout
    for group in ("modality:", "fusion:", "trainer:", "model:", "data:", "logger:"):
        assert group in out


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    """A copy of the project whose params.yaml is shrunk to tiny data, after one full `dvc repro`."""
    project = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "pipelines", "fusion"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    cfg = compose(
        [
            *TINY_TRAINING,
            "trainer.max_epochs=1",
            "sample.num_records=80",
            "sample.progress=false",
            f"robustness.levels={ROBUSTNESS_LEVELS}",
        ]
    )
    (project / "params.yaml").write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    import os

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    dvc = [sys.executable, "-m", "dvc"]
    _run([*dvc, "init", "--no-scm", "-q"], project, env)
    _run([*dvc, "config", "core.analytics", "false"], project, env)
    first = _run([*dvc, "repro"], project, env)
    return project, env, dvc, first


def _changed(project, env, dvc) -> set[str]:
    return set(json.loads(_run([*dvc, "status", "--json"], project, env).stdout or "{}"))


def test_repro_runs_every_stage_and_tracks_the_run(dvc_project):
    project, env, dvc, first = dvc_project
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((project / "outputs" / "evaluate" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["acc"] <= 1.0
    shown = _run([*dvc, "metrics", "show", "--json"], project, env).stdout
    assert "f1_macro" in shown
    for modality in ("text", "image", "audio"):
        assert (project / "data" / "processed" / modality / "rejected.jsonl").is_file()
    (run,) = _runs(project / "mlflow.db")
    assert run.info.run_id == metrics["mlflow_run_id"]
    assert run.data.tags["data_version"] not in ("", "untracked")
    assert "test/acc" in run.data.metrics  # logged by the evaluate stage into the train run
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    explain = {a.path for a in client.list_artifacts(run.info.run_id, "explain")}
    assert {"explain/summary.json", "explain/contribution.png", "explain/index.html"} <= explain
    assert (project / "outputs" / "evaluate" / "explain" / "summary.json").is_file()
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    predictions = (project / "outputs" / "evaluate" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == metrics["test"]["samples"] + 1
    report = (project / "outputs" / "report" / "report.html").read_text(encoding="utf-8")
    assert run.info.run_id[:8] in report and "data:image/png;base64," in report
    reports = client.get_experiment_by_name("fusion-reports").experiment_id  # bookkeeping runs: their own experiment
    (report_run,) = [r for r in client.search_runs([reports]) if r.data.tags.get("kind") == "report"]
    assert "report.html" in {a.path for a in client.list_artifacts(report_run.info.run_id)}


def test_repro_runs_the_robustness_stage_and_dvc_plots_show_its_curves(dvc_project):
    project, env, dvc, _ = dvc_project
    out = project / "outputs" / "robustness"
    scores = json.loads((out / "robustness.json").read_text())
    assert 0.0 <= scores["clean"] <= 1.0 and set(scores["without"]) == {"text", "image", "audio"}
    assert all(0.0 <= value <= 1.0 for value in scores["relative"].values())
    assert (out / "robustness.png").stat().st_size > 0
    assert "relative.all" in _run([*dvc, "metrics", "show"], project, env).stdout
    shown = json.loads(_run([*dvc, "plots", "show", "--json"], project, env).stdout)
    (plot,) = shown["data"]["outputs/robustness/curves.csv"]
    points = plot["content"]["data"]["values"]
    assert {p["field"] for p in points} == {*scores["relative"]}
    assert sorted({float(p["level"]) for p in points}) == ROBUSTNESS_LEVELS
    assert not [e for e in shown.get("errors", []) if e["name"].endswith("curves.csv")]
    (run,) = _runs(project / "mlflow.db")
    assert run.data.metrics["robustness/relative_all"] == pytest.approx(scores["relative"]["all"])
    # The default fusion is late, the reference itself: no gap to its own curves.
    assert scores["reference"]["run_id"] == run.info.run_id
    assert scores["effective"] and all(value == pytest.approx(0.0) for value in scores["effective"].values())


def test_second_repro_is_up_to_date_and_dag_has_the_designed_edges(dvc_project):
    project, env, dvc, _ = dvc_project
    assert _changed(project, env, dvc) == set()
    assert "up to date" in _run([*dvc, "repro"], project, env).stdout
    dot = _run([*dvc, "dag", "--dot"], project, env).stdout
    edges = {
        tuple(part.strip().strip('"') for part in line.strip().rstrip(";").split("->"))
        for line in dot.splitlines()
        if "->" in line
    }
    modalities = ("text", "image", "audio")
    expected = {("sample", f"preprocess_{m}") for m in modalities} | {(f"preprocess_{m}", "train") for m in modalities}
    expected |= {("train", "evaluate"), ("train", "compare"), ("evaluate", "compare")}
    expected |= {("train", "report"), ("evaluate", "report"), ("robustness", "report")}
    expected |= {("sample", "robustness"), ("train", "robustness")} | {
        (f"preprocess_{m}", "robustness") for m in modalities
    }
    assert edges == expected


@pytest.mark.parametrize(
    "modality, key, value", [("audio", "n_mels", 32), ("text", "max_len", 16), ("image", "size", 48)]
)
def test_a_modality_parameter_invalidates_only_its_branch(dvc_project, modality, key, value):
    project, env, dvc, _ = dvc_project
    params_path = project / "params.yaml"
    original = params_path.read_text()
    params = OmegaConf.load(params_path)
    params.preprocess[modality][key] = value
    params_path.write_text(OmegaConf.to_yaml(params))
    try:
        assert _changed(project, env, dvc) == {f"preprocess_{modality}", "train", "evaluate", "robustness"}
    finally:
        params_path.write_text(original)
    assert _changed(project, env, dvc) == set()
