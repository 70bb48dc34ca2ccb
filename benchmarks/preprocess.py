"""Preprocessing throughput per modality: the real stage (raw files -> litdata shards) at 1 and 2 workers."""

from __future__ import annotations

import time

from benchmarks.common import Context, SectionResult, failed, short_error
from benchmarks.tables import Table, ratio, times
from fusion.preprocess.common import run_preprocess

SECTION = "preprocess"


def run(ctx: Context) -> SectionResult:
    """Time fusion.preprocess.common.run_preprocess per modality and worker count on the generated sample."""
    settings = ctx.settings.preprocess
    ctx.workspace.sample()
    worker_counts = [int(w) for w in settings.workers]
    figures: dict[str, dict] = {}
    complete: list = []
    for workers in worker_counts:
        out = ctx.workspace.root / f"preprocess-{workers}w"
        cfg = ctx.workspace.fusion_config([f"preprocess.num_workers={workers}"], processed_dir=out)
        all_done = True
        for modality in settings.modalities:
            key = f"{modality}/{workers}w"
            try:
                start = time.perf_counter()
                with ctx.quiet:
                    summary = run_preprocess(modality, cfg)
                seconds = time.perf_counter() - start
            except Exception as exc:  # one failing stage is a result, not the end of the run
                figures[key] = {
                    "modality": modality,
                    "workers": workers,
                    "error": failed(short_error(exc, int(ctx.settings.report.error_chars))),
                }
                ctx.console.progress(SECTION, f"{modality}, {workers} worker(s): {figures[key]['error']}")
                all_done = False
                continue
            items = sum(summary["kept"].values())
            figures[key] = {
                "modality": modality,
                "workers": workers,
                "items": items,
                "seconds": seconds,
                "items_per_second": items / seconds,
                "items_per_second_per_worker": items / seconds / workers,
                "rejected": summary["rejected"],
            }
            ctx.console.progress(SECTION, f"{modality}, {workers} worker(s): {items} items in {seconds:.1f} s")
        if all_done and set(settings.modalities) >= {"text", "image", "audio"}:
            complete.append(out)
    if complete:
        ctx.workspace.use_shards(complete[-1])
    _add_speedups(figures, worker_counts)
    return SectionResult(
        figures={"runs": figures, "records": int(ctx.settings.dataset.num_records)},
        tables=[_table(figures, worker_counts, settings.modalities)],
    )


def _add_speedups(figures: dict[str, dict], worker_counts: list[int]) -> None:
    """Each run's items/s relative to the same modality with the first (smallest) worker count."""
    base_workers = worker_counts[0]
    for row in figures.values():
        base = figures.get(f"{row['modality']}/{base_workers}w", {})
        row["speedup_vs_first"] = ratio(row.get("items_per_second"), base.get("items_per_second"))


def _table(figures: dict[str, dict], worker_counts: list[int], modalities) -> Table:
    table = Table(
        "Preprocessing: raw files -> shards (run_preprocess, per modality)",
        [
            "modality",
            "workers",
            "items",
            "seconds",
            "items/s",
            "items/s per worker",
            f"speed-up vs {worker_counts[0]} worker(s)",
        ],
        notes=[
            "Each run is the whole stage as DVC runs it: manifest read and validated, the tokenizer (text) or "
            "log-mel normalisation (audio) fitted on the training split, litdata worker processes started, "
            "items written to chunks. Fitting and start-up are part of the stage and kept in.",
            "items = records kept (all splits); on a small dataset the fixed start-up cost of the worker "
            "processes weighs more, so the speed-up from more workers grows with the dataset.",
        ],
    )
    for modality in modalities:
        for workers in worker_counts:
            row = figures.get(f"{modality}/{workers}w")
            if row is None:
                continue
            if "error" in row:
                table.add(modality, workers, row["error"], None, None, None, None)
                continue
            table.add(
                modality,
                workers,
                row["items"],
                row["seconds"],
                row["items_per_second"],
                row["items_per_second_per_worker"],
                times(row["speedup_vs_first"]),
            )
    return table
