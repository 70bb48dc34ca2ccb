"""This project as a user runs it: `python pipelines/preprocess.py <modality> ...` per modality, then
`python train.py ...` with only the flags that name the folders, the seed and the MLflow store (plus any
system overrides), each in a subprocess with a timeout, timed, its metrics read back from MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mlflow.tracking import MlflowClient

from benchmarks.accuracy.timing import Timing, timed
from benchmarks.ddp import _last_error
from fusion.overrides import quoted_override

PROJECT_ROOT = Path(__file__).resolve().parents[3]
MODALITIES = ("text", "image", "audio")
RUN_INFO = "run.json"  # written by fusion.training.train into the run folder
ACC, F1_MACRO = "test/acc", "test/f1_macro"
FIT_SECONDS, FIT_CPU_SECONDS = "time/fit_seconds", "time/fit_cpu_seconds"
WITHOUT = "test/acc_without_{}"
# The test accuracy and count of the records holding the same modalities (fusion/training/test_records.py)
HOLDING, HOLDING_RECORDS = "test/acc_holding_", "test/records_holding_"
PREPROCESS_TIMEOUT_SECONDS = 1800
TRAIN_TIMEOUT_SECONDS = 3600


class StepFailed(RuntimeError):
    """A subprocess exited with an error or ran out of time; the message says which and where the log is."""


@dataclass
class ProjectRun:
    """One train.py run's figures."""

    test_acc: float | None
    test_f1_macro: float | None
    without: dict[str, float]
    holding: dict[str, dict[str, float]]
    fit_seconds: float | None
    fit_cpu_seconds: float | None
    run_id: str
    timing: Timing
    metrics: dict[str, float] = field(default_factory=dict)


def run_logged(args: Sequence[str], cwd: Path, log: Path, timeout: float) -> Timing:
    """Run `args` (its own process group, output appended to `log`), timed; StepFailed on error or timeout, after
    ending the whole group so no loader worker outlives it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        with timed() as timing:
            process = subprocess.Popen(
                list(args), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise StepFailed(f"{Path(args[1]).name} ran past its {timeout:.0f} s timeout (log: {log})") from None
    if code != 0:
        raise StepFailed(
            f"{Path(args[1]).name} exited with {code}: {_last_error(log.read_text(encoding='utf-8'))} (log: {log})"
        )
    return timing


def preprocess(
    dataset: Path,
    processed: Path,
    overrides: Sequence[str],
    log: Path,
    project: Path = PROJECT_ROOT,
    timeout: float = PREPROCESS_TIMEOUT_SECONDS,
    modalities: Sequence[str] = MODALITIES,
) -> dict[str, Timing]:
    """Preprocess each of `modalities` of `dataset` into `processed` (the DVC stage scripts, run by hand)."""
    return {
        m: run_logged(
            [
                sys.executable,
                "pipelines/preprocess.py",
                m,
                quoted_override("data.root", dataset),
                quoted_override("data.processed_dir", processed),
                *overrides,
            ],
            project,
            log,
            timeout,
        )
        for m in modalities
    }


def holding_groups(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{"image+audio": {"acc": ..., "records": ...}, ...}: a run's test accuracy on the records holding exactly
    those modalities (the MLflow keys join them by "_"; every modality name is one word)."""
    groups = {}
    for key, value in metrics.items():
        if key.startswith(HOLDING):
            slug = key.removeprefix(HOLDING)
            groups[slug.replace("_", "+")] = {"acc": value, "records": metrics.get(HOLDING_RECORDS + slug)}
    return dict(sorted(groups.items()))


def train(
    dataset: Path,
    processed: Path,
    seed: int,
    run_dir: Path,
    store: Path,
    overrides: Sequence[str],
    log: Path,
    project: Path = PROJECT_ROOT,
    timeout: float = TRAIN_TIMEOUT_SECONDS,
) -> ProjectRun:
    """`python train.py` into `run_dir` (hydra.run.dir: train.py makes the Hydra folder the run's output folder),
    tracking into the SQLite store under `store`; the run's metrics from MLflow."""
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    args = [
        sys.executable,
        "train.py",
        quoted_override("data.root", dataset),
        quoted_override("data.processed_dir", processed),
        f"seed={seed}",
        quoted_override("hydra.run.dir", run_dir),
        quoted_override("paths.output_dir", run_dir),
        quoted_override("logger.tracking_uri", tracking_uri),
        quoted_override("logger.artifact_location", store / "mlartifacts"),
        *overrides,
    ]
    timing = run_logged(args, project, log, timeout)
    run_id = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))["run_id"]
    metrics = dict(MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.metrics)
    return ProjectRun(
        test_acc=metrics.get(ACC),
        test_f1_macro=metrics.get(F1_MACRO),
        fit_seconds=metrics.get(FIT_SECONDS),
        fit_cpu_seconds=metrics.get(FIT_CPU_SECONDS),
        run_id=run_id,
        timing=timing,
        without={m: metrics[WITHOUT.format(m)] for m in MODALITIES if WITHOUT.format(m) in metrics},
        holding=holding_groups(metrics),
        metrics=metrics,
    )
