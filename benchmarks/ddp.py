"""Data-parallel scaling: the real CLI (`python train.py trainer=...`) with 1 process vs several, weak scaling."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from benchmarks.common import Context, SectionResult, failed, short_error
from benchmarks.tables import Table, percent, ratio
from fusion.overrides import quoted_override

SECTION = "ddp"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_INFO = "run.json"  # written by fusion.stages.train into the run folder
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b.*:")  # "ValueError: ...", "hydra.errors.X: ..."


def scaling_efficiency(rate: float | None, single_rate: float | None, processes: int) -> float | None:
    """Weak-scaling efficiency: rate with n processes / (n × the rate of one); 1.0 is perfect scaling."""
    return ratio(rate, None if single_rate is None else processes * single_rate)


def last_epoch_metric(tracking_uri: str, run_id: str, key: str) -> float:
    """The metric's value at the highest step (the last epoch) of an MLflow run."""
    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)
    if not history:
        raise LookupError(f"run {run_id} has no metric {key!r} in {tracking_uri}")
    return max(history, key=lambda m: (m.step, m.timestamp)).value


def run_id_of(run_dir: Path) -> str:
    """The MLflow run id train.py wrote to <run folder>/run.json."""
    return json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))["run_id"]


def configurations(ctx: Context) -> list[tuple[str, str, int]]:
    """(label, trainer group, processes): CPU 1 vs 2 gloo processes; 1 vs all GPUs when there are several."""
    pairs = [("cpu", "cpu", 1), ("cpu", "ddp_cpu", 2)]
    gpus = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if gpus >= 2:
        pairs += [("gpu", "gpu", 1), ("gpu", "ddp", gpus)]
    return pairs


def run(ctx: Context) -> SectionResult:
    settings = ctx.settings.ddp
    ctx.workspace.shards()
    runs: dict[str, dict[str, Any]] = {}
    for family, group, processes in configurations(ctx):
        key = f"{family}/{group}"
        started = time.perf_counter()
        try:
            rate = train_cli(ctx, group)
            row: dict[str, Any] = {"samples_per_second": rate}
        except Exception as exc:
            row = {"error": failed(short_error(exc, int(ctx.settings.report.error_chars)))}
        row.update(family=family, trainer=group, processes=processes, seconds=time.perf_counter() - started)
        runs[key] = row
        ctx.console.progress(
            SECTION,
            f"trainer={group} ({processes} process(es)): "
            + (row["error"] if "error" in row else f"{rate:.1f} samples/s ({row['seconds']:.0f} s)"),
        )
    for row in runs.values():
        single = next((r for r in runs.values() if r["family"] == row["family"] and r["processes"] == 1), {})
        row["efficiency"] = scaling_efficiency(
            row.get("samples_per_second"), single.get("samples_per_second"), row["processes"]
        )
    return SectionResult(
        figures={
            "runs": runs,
            "batch_size_per_process": int(settings.batch_size),
            "overrides": list(settings.overrides),
        },
        tables=[_table(runs, settings)],
    )


def train_cli(ctx: Context, trainer_group: str) -> float:
    """Run train.py with this trainer group into its own folder; the last epoch's summed samples/s."""
    settings = ctx.settings.ddp
    root = ctx.workspace.root
    run_dir = root / f"run-{trainer_group}"
    tracking_uri = f"sqlite:///{root / 'ddp-mlflow.db'}"
    args = [
        sys.executable,
        "train.py",
        f"trainer={trainer_group}",
        "test_after_fit=false",
        "test_missing_modalities=false",
        f"trainer.max_epochs={int(settings.epochs)}",
        # ++: add-or-override, the trainer groups do not set these Trainer arguments
        f"++trainer.limit_train_batches={int(settings.batches_per_epoch)}",
        f"++trainer.limit_val_batches={int(settings.val_batches)}",
        "trainer.enable_model_summary=false",
        f"data.batch_size={int(settings.batch_size)}",
        f"data.num_workers={int(settings.num_workers)}",
        quoted_override("data.processed_dir", ctx.workspace.shards()),
        quoted_override("logger.tracking_uri", tracking_uri),
        quoted_override("logger.artifact_location", root / "ddp-mlartifacts"),
        quoted_override("hydra.run.dir", run_dir),
        *settings.overrides,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        args,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=int(settings.timeout_seconds),
    )
    with open(ctx.log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(args)}\n{done.stdout}")
    if done.returncode != 0:
        raise RuntimeError(
            f"train.py trainer={trainer_group} exited with {done.returncode}: {_last_error(done.stdout)}"
        )
    return last_epoch_metric(tracking_uri, run_id_of(run_dir), str(settings.metric))


def _last_error(output: str) -> str:
    """What went wrong in a failed run's output: its last exception line (e.g. "ValueError: ..."), else its last
    line but Hydra's hint about HYDRA_FULL_ERROR (progress bars' carriage returns split lines too)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip() and not line.startswith(HYDRA_HINT)]
    errors = [line for line in lines if EXCEPTION_LINE.match(line)]
    return (errors or lines or ["no output"])[-1]


def _table(runs: dict[str, dict[str, Any]], settings) -> Table:
    table = Table(
        "Data-parallel scaling (python train.py, weak scaling)",
        ["trainer", "processes", "samples/s (all ranks)", "per process", "efficiency", "run s"],
        notes=[
            f"Weak scaling: data.batch_size={int(settings.batch_size)} per process (the global batch grows with the "
            f"processes), {int(settings.batches_per_epoch)} training batches per process and epoch, "
            f"{int(settings.epochs)} epochs, data.num_workers={int(settings.num_workers)}; figure = "
            f"{settings.metric} of the last epoch (DataWaitMonitor, summed over ranks) read from MLflow.",
            "efficiency = rate(n processes) / (n × rate(1 process)); 100% is perfect scaling.",
            "trainer=ddp_cpu on a 2-core machine: Lightning gives each process cores / processes torch threads "
            "(1 each), against 2 threads for the single process, so the figure mostly shows the cost of gradient "
            "all-reduce (gloo) and sharding rather than added compute.",
            "run s: the whole command (start-up, validation, checkpoints included).",
        ],
    )
    for row in runs.values():
        if "error" in row:
            table.add(row["trainer"], row["processes"], row["error"], None, None, row["seconds"])
            continue
        table.add(
            row["trainer"],
            row["processes"],
            row["samples_per_second"],
            row["samples_per_second"] / row["processes"],
            percent(row["efficiency"]) if row["processes"] > 1 else "-",
            row["seconds"],
        )
    return table
