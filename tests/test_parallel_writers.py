"""Parallel writers: several real `train.py` processes started together against one tracking store, a new SQLite
file (the case that lost runs to concurrent schema migrations) and an `mlflow server` on 127.0.0.1 over SQLite.
Every run finishes, every metric has the same steps in every run, and every artifact (config, test figure, the
whole logged model) is there. Each process and the server have a timeout and are stopped on failure."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fusion.serving.server import POLL_SECONDS, answers, free_port, stop_process_group
from tests.helpers.config import TINY_TRAINING

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WRITERS = 3  # on a new SQLite file: the schema-migration race needs several
SERVER_WRITERS = 2  # through `mlflow server`: the server serialises the writes; two cover the path
RUN_TIMEOUT_SECONDS = 600
SERVER_START_SECONDS = 120
# A small text-only run that still logs per-epoch metrics, a test figure and the MLflow model.
TRAINING = [*TINY_TRAINING, "modality=text", "fusion=late", "test_missing_modalities=false", "explain.enabled=false"]
EXPERIMENT = "parallel"


def _files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run (recursively)."""
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _files(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def train_together(
    base: Path, tracking_uri: str, processed_dir: Path, sample_root: Path, env: dict, writers: int
) -> list[str]:
    """Start ``writers`` train.py processes at once against ``tracking_uri``; wait for all (killed after
    RUN_TIMEOUT_SECONDS); returns their run names. Fails with the logs of the processes that did not succeed."""
    processes, names, logs = [], [f"writer-{i}" for i in range(writers)], []
    for name in names:
        logs.append(base / f"{name}.log")
        args = [
            sys.executable,
            str(ROOT / "train.py"),
            *TRAINING,
            f"data.root={sample_root}",
            f"data.processed_dir={processed_dir}",
            f"logger.tracking_uri={tracking_uri}",
            f"logger.artifact_location={base / 'mlartifacts'}",
            f"logger.experiment_name={EXPERIMENT}",
            f"logger.run_name={name}",
            f"hydra.run.dir={base / name}",
        ]
        with open(logs[-1], "wb") as sink:
            processes.append(
                subprocess.Popen(args, cwd=base, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            )
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    try:
        codes = [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    except subprocess.TimeoutExpired:
        codes = [process.poll() for process in processes]
    finally:
        for process in processes:
            stop_process_group(process)  # the still running ones: SIGTERM to its process group, then SIGKILL
    failed = [(name, code, log) for name, code, log in zip(names, codes, logs, strict=True) if code != 0]
    assert not failed, "\n\n".join(
        f"{name} ended with {code}:\n{log.read_text(errors='replace')[-3000:]}" for name, code, log in failed
    )
    return names


def check_store(tracking_uri: str, names: list[str]) -> None:
    """Every run FINISHED; the same metrics with the same steps in every run; every artifact in every run."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(names)
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    steps = {
        name: {key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics}
        for name, run in runs.items()
    }
    reference = steps[names[0]]
    assert {"train/loss", "val/acc", "test/acc", "params/total"} <= set(reference)
    assert len(reference["train/loss"]) == int(next(o for o in TINY_TRAINING if "max_epochs" in o).split("=")[1])
    assert all(steps[name] == reference for name in names), "a run lost metric steps"
    files = {name: _files(client, run.info.run_id) for name, run in runs.items()}
    assert {"config.yaml", "confusion_matrix.png", "model/MLmodel", "model/artifacts/bundle/weights.pt"} <= files[
        names[0]
    ]
    assert all(files[name] == files[names[0]] for name in names), "a run lost artifacts"


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_writers_starting_together_on_a_new_sqlite_store_lose_nothing(
    tmp_path, processed_dir, sample_root, subprocess_env
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # does not exist yet: every writer finds it missing
    names = train_together(tmp_path, uri, processed_dir, sample_root, subprocess_env, WRITERS)
    check_store(uri, names)


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + SERVER_START_SECONDS + 60)
def test_writers_through_a_local_mlflow_server_lose_nothing(tmp_path, processed_dir, sample_root, subprocess_env):
    port, log = free_port(), tmp_path / "mlflow-server.log"
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--default-artifact-root",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = dict(
        subprocess_env, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"
    )
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while not answers(f"{url}/health"):
            if server.poll() is not None or time.monotonic() - started > SERVER_START_SECONDS:
                pytest.fail(f"mlflow server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(POLL_SECONDS)
        names = train_together(tmp_path, url, processed_dir, sample_root, subprocess_env, SERVER_WRITERS)
        check_store(url, names)
    finally:
        stop_process_group(server)
