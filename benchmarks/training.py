"""Training throughput on the real training path: fusion setups × precision × eager / torch.compile."""

from __future__ import annotations

import time
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import Context, SectionResult, failed, short_error
from benchmarks.machine import peak_tflops
from benchmarks.tables import Table, ratio, times, verdict
from fusion.training.setup import build_datamodule, build_module
from fusion.training.throughput import DataWaitMonitor

SECTION = "training"
MEBIBYTE = 2**20
GIGA, TERA = 1e9, 1e12
# Lightning precision names -> the peak-FLOPs table's keys (benchmarks/config.yaml `peak_tflops`).
PEAK_KEY = {"bf16-mixed": "bf16", "bf16-true": "bf16", "32-true": "fp32", "32": "fp32"}


def run(ctx: Context) -> SectionResult:
    settings = ctx.settings.training
    ctx.workspace.shards()
    peaks = peak_tflops(
        ctx.machine.get("cuda_device"), ctx.settings.peak_tflops.devices, ctx.settings.peak_tflops.override
    )
    runs: dict[str, dict[str, Any]] = {}
    for setup in settings.setups:
        name, setup_overrides = str(setup.name), list(setup.overrides)
        eager_cfg = _config(ctx, setup_overrides, str(settings.precisions[0]), False)
        flops_per_sample = _try(ctx, lambda eager_cfg=eager_cfg: step_flops_per_sample(ctx, eager_cfg))
        for precision in settings.precisions:
            for compiled in settings.compile:
                key = run_key(name, precision, bool(compiled))
                cfg = _config(ctx, setup_overrides, precision, bool(compiled))
                started = time.perf_counter()
                row = _try(ctx, lambda cfg=cfg: fit_once(ctx, cfg))
                if not isinstance(row, dict):
                    row = {"error": row}
                row.update(
                    setup=name,
                    precision=precision,
                    compiled=bool(compiled),
                    deterministic=bool(_deterministic(ctx, cfg)),
                    total_seconds=time.perf_counter() - started,
                )
                _add_flops(row, flops_per_sample, peaks, precision)
                runs[key] = row
                ctx.console.progress(
                    SECTION,
                    f"{key}: "
                    + (
                        row["error"]
                        if "error" in row
                        else f"{row['samples_per_second']:.1f} samples/s ({row['total_seconds']:.0f} s)"
                    ),
                )
    _add_speedups(runs, settings)
    threshold = float(settings.max_data_wait)
    for row in runs.values():
        wait = row.get("data_wait_fraction")
        row["data_wait_ok"] = None if wait is None else wait < threshold
    return SectionResult(
        figures={
            "runs": runs,
            "peak_tflops": peaks,
            "batch_size": int(settings.batch_size),
            "epochs": int(settings.epochs),
            "batches_per_epoch": int(settings.batches_per_epoch),
        },
        tables=[_table(runs, settings)],
    )


def run_key(setup: str, precision: str, compiled: bool) -> str:
    return f"{setup}/{precision}/{'compiled' if compiled else 'eager'}"


def _try(ctx: Context, measure):
    """The measurement's result, or "failed: <reason>" when it raised (the run goes on)."""
    try:
        with ctx.quiet:
            return measure()
    except Exception as exc:  # a failing combination (e.g. compile without a compiler) is a result
        return failed(short_error(exc, int(ctx.settings.report.error_chars)))


def _config(ctx: Context, setup_overrides, precision: str, compiled: bool) -> DictConfig:
    """The project's config for one combination, with the benchmark's batch, loader and trainer group."""
    settings = ctx.settings.training
    trainer_group = "gpu" if ctx.device.type == "cuda" else "cpu"
    overrides = [
        *setup_overrides,
        f"trainer={trainer_group}",
        f"trainer.precision={precision}",
        f"model.compile.enabled={str(compiled).lower()}",
        f"data.batch_size={int(settings.batch_size)}",
        f"data.num_workers={int(settings.num_workers)}",
        *settings.overrides,
    ]
    return ctx.workspace.fusion_config(overrides)


def _deterministic(ctx: Context, cfg: DictConfig) -> bool:
    """training.deterministic when set, else the trainer group's own setting (cpu: true, gpu: false)."""
    chosen = ctx.settings.training.deterministic
    return bool(cfg.trainer.deterministic if chosen is None else chosen)


class EpochLog(pl.Callback):
    """Keeps DataWaitMonitor's figures and the wall time of every training epoch (the first one compiles)."""

    def __init__(self, monitor) -> None:
        self.monitor, self.epochs, self.started = monitor, [], 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append({**self.monitor.summary(), "seconds": time.perf_counter() - self.started})


def fit_once(ctx: Context, cfg: DictConfig) -> dict[str, Any]:
    """Fit for training.epochs × training.batches_per_epoch and report the last (steady-state) epoch."""
    settings = ctx.settings.training
    torch._dynamo.reset()  # compiled code of an earlier run must not count against this one's recompile limit
    pl.seed_everything(int(cfg.seed), workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    monitor = DataWaitMonitor()
    epoch_log = EpochLog(monitor)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[monitor, epoch_log],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        limit_train_batches=int(settings.batches_per_epoch),
        max_epochs=int(settings.epochs),
        deterministic=_deterministic(ctx, cfg),
        default_root_dir=str(ctx.workspace.root / "trainer"),
    )
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
    trainer.fit(module, datamodule=datamodule)
    if not epoch_log.epochs:
        raise RuntimeError("no training epoch finished")
    last = epoch_log.epochs[-1]
    return {
        "samples_per_second": last["time/train_samples_per_second"],
        "data_wait_fraction": last["time/data_wait_fraction"],
        "first_batch_seconds": last["time/first_batch_seconds"],
        "first_epoch_seconds": epoch_log.epochs[0]["seconds"],
        "last_epoch_seconds": last["seconds"],
        "epochs": epoch_log.epochs,
        "peak_memory_mib": torch.cuda.max_memory_allocated(ctx.device) / MEBIBYTE if cuda else None,
    }


def step_flops_per_sample(ctx: Context, cfg: DictConfig) -> float:
    """FLOPs of one training step (forward, loss, backward; eager network) on one training batch, per sample,
    counted by torch.utils.flop_counter."""
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule).to(ctx.device).train()
    dataset = datamodule.dataset("train")
    batch = datamodule.collate([dataset[i] for i in range(min(int(cfg.data.batch_size), len(dataset)))])
    batch = module.transfer_batch_to_device(batch, ctx.device, 0)
    with FlopCounterMode(display=False) as counter:
        module.task.loss(module(batch), batch["label"]).backward()
    del module
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return counter.get_total_flops() / len(batch["id"])


def _add_flops(row: dict[str, Any], flops_per_sample, peaks: dict[str, float] | None, precision: str) -> None:
    """GFLOP per sample, achieved TFLOP/s and MFU (achieved / the device's peak for this precision)."""
    if not isinstance(flops_per_sample, float):
        row.update(gflop_per_sample=None, achieved_tflops=None, mfu=None, flops_error=flops_per_sample)
        return
    rate = row.get("samples_per_second")
    achieved = flops_per_sample * rate / TERA if rate else None
    peak = (peaks or {}).get(PEAK_KEY.get(precision, ""))
    row.update(
        gflop_per_sample=flops_per_sample / GIGA, achieved_tflops=achieved, peak_tflops=peak, mfu=ratio(achieved, peak)
    )


def _add_speedups(runs: dict[str, dict[str, Any]], settings) -> None:
    """bf16 vs fp32 (same setup and mode) and compiled vs eager (same setup and precision)."""
    fp32 = str(settings.precisions[0])
    for row in runs.values():
        rate = row.get("samples_per_second")
        base_precision = runs.get(run_key(row["setup"], fp32, row["compiled"]), {})
        eager = runs.get(run_key(row["setup"], row["precision"], False), {})
        is_baseline = row["precision"] == fp32
        row["speedup_vs_fp32"] = None if is_baseline else ratio(rate, base_precision.get("samples_per_second"))
        row["speedup_vs_eager"] = ratio(rate, eager.get("samples_per_second")) if row["compiled"] else None


def _table(runs: dict[str, dict[str, Any]], settings) -> Table:
    threshold = float(settings.max_data_wait)
    fp32 = str(settings.precisions[0])
    deterministic = ", ".join(sorted({str(row["deterministic"]).lower() for row in runs.values()}))
    compiled_ok = [row for row in runs.values() if row["compiled"] and row["deterministic"] and "error" not in row]
    compile_note = "torch.compile ran with deterministic mode on." if compiled_ok else ""
    table = Table(
        "Training throughput (real training path, last epoch)",
        [
            "setup",
            "precision",
            "mode",
            "samples/s",
            "data wait",
            f"wait < {threshold:.0%}",
            "first epoch s",
            f"vs {fp32}",
            "vs eager",
            "GFLOP/sample",
            "achieved TFLOP/s",
            "peak MiB",
            "MFU",
        ],
        notes=[
            f"Batch {int(settings.batch_size)}, {int(settings.batches_per_epoch)} batches × "
            f"{int(settings.epochs)} epochs, "
            f"DataLoader workers {int(settings.num_workers)}; build_datamodule / build_module and a Lightning Trainer "
            "(no logger, checkpoints or validation). samples/s and data wait are DataWaitMonitor's figures for the "
            "last epoch (steady state: torch.compile compiles, and recompiles for new shapes, in the first).",
            "data wait = time waiting for the next batch / (wait + step); the first column after it is the "
            f"acceptance check (< {threshold:.0%}).",
            "first epoch s includes compilation for compiled runs: far less once inductor's on-disk cache "
            f"(TORCHINDUCTOR_CACHE_DIR) holds the graphs from an earlier run. trainer.deterministic={deterministic}. "
            + compile_note,
            "GFLOP/sample: torch.utils.flop_counter on one eager forward+backward (matmuls and convolutions; the "
            "CPU SDPA kernel is not counted). MFU = achieved / the device's peak dense TFLOP/s for the precision "
            "(benchmarks/config.yaml peak_tflops); n/a on CPU.",
        ],
    )
    for row in runs.values():
        mode = "compiled" if row["compiled"] else "eager"
        if "error" in row:
            table.add(row["setup"], row["precision"], mode, row["error"], *([None] * 9))
            continue
        table.add(
            row["setup"],
            row["precision"],
            mode,
            row["samples_per_second"],
            f"{row['data_wait_fraction']:.1%}",
            verdict(row["data_wait_ok"]),
            row["first_epoch_seconds"],
            times(row["speedup_vs_fp32"]) if row["speedup_vs_fp32"] else "-",
            times(row["speedup_vs_eager"]) if row["speedup_vs_eager"] else "-",
            row["gflop_per_sample"],
            row["achieved_tflops"],
            row["peak_memory_mib"],
            row["mfu"],
        )
    return table
