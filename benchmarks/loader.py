"""Loading cost: one item from the memory-mapped shards vs decoding its raw file, and DataLoader throughput."""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from benchmarks.common import Context, SectionResult, median
from benchmarks.tables import Table, ratio, times, verdict
from fusion.data.manifest import load_manifest
from fusion.data.shards import ModalityShards
from fusion.preprocess.common import _processors
from fusion.training.setup import build_datamodule

SECTION = "loader"
MICROSECONDS = 1e6


def run(ctx: Context) -> SectionResult:
    """Per-item cost of both paths per modality, then samples/s of the training DataLoader per worker count."""
    settings = ctx.settings.loader
    per_item = per_item_costs(ctx, settings)
    end_to_end = dataloader_throughput(ctx, settings)
    return SectionResult(
        figures={"per_item": per_item, "dataloader": end_to_end},
        tables=[_per_item_table(per_item, settings), _dataloader_table(end_to_end, settings)],
    )


def per_item_costs(ctx: Context, settings) -> dict[str, dict[str, Any]]:
    """µs per item of ModalityShards.get vs the modality's processor decoding the raw file, same records."""
    shards_dir = ctx.workspace.shards()
    cfg = ctx.workspace.fusion_config()
    data = cfg.data
    manifest = load_manifest(data.root, data.manifest, data.split, stage="benchmark_loader", task=cfg.task.name)
    results: dict[str, dict[str, Any]] = {}
    for modality in settings.modalities:
        shards = ModalityShards(shards_dir / modality)
        # As run_preprocess builds it: same config, fitted on the training split (tokenizer, normalisation).
        processor = _processors()[modality](cfg.preprocess[modality], manifest.root, data.dirs[modality])
        with_modality = [r for r in manifest.records if r.has(modality)]
        with ctx.quiet:
            processor.fit([r for r in with_modality if r.split == "train"])
        kept = [r for r in with_modality if r.id in shards.position]  # rejected records have no item
        records = random.Random(int(settings.seed)).sample(kept, min(int(settings.timed_items), len(kept)))
        shard_us = _per_item_us(lambda r, shards=shards: shards.get(r.id), records, settings)
        raw_us = _per_item_us(processor.process, records, settings)
        results[modality] = {
            "items": len(records),
            "shards_us": shard_us,
            "raw_us": raw_us,
            "speedup": ratio(raw_us, shard_us),
        }
        ctx.console.progress(SECTION, f"{modality}: shards {shard_us:.0f} µs/item, raw decode {raw_us:.0f} µs/item")
    shard_total = sum(r["shards_us"] for r in results.values())
    raw_total = sum(r["raw_us"] for r in results.values())
    results["all"] = {
        "items": min((r["items"] for r in results.values()), default=0),
        "shards_us": shard_total,
        "raw_us": raw_total,
        "speedup": ratio(raw_total, shard_total),
    }
    threshold = float(settings.min_speedup)
    for row in results.values():
        row["passed"] = None if row["speedup"] is None else row["speedup"] >= threshold
    return results


def _per_item_us(load: Callable[[Any], Any], records: list, settings) -> float:
    """Median over passes of the mean µs per item, after a warm-up on the first records (opens the shards,
    builds lazy state such as the mel filter bank or the tokenizer)."""
    for record in records[: int(settings.warmup_items)]:
        load(record)
    passes = []
    for _ in range(int(settings.passes)):
        start = time.perf_counter()
        for record in records:
            load(record)
        passes.append((time.perf_counter() - start) / len(records) * MICROSECONDS)
    return median(passes)


def dataloader_throughput(ctx: Context, settings) -> dict[str, dict[str, float]]:
    """Samples/s of the training DataLoader (tri-modal, from shards, collated) per worker count: the first
    pass includes starting the workers, the last one is the steady state (persistent workers)."""
    ctx.workspace.shards()
    results = {}
    for workers in settings.dataloader_workers:
        cfg = ctx.workspace.fusion_config(
            [f"data.num_workers={int(workers)}", f"data.batch_size={int(settings.batch_size)}"]
        )
        datamodule = build_datamodule(cfg)
        loader = datamodule.train_dataloader()
        passes = []
        first_batch = None
        with ctx.quiet:
            for _ in range(int(settings.dataloader_passes)):
                samples = 0
                start = time.perf_counter()
                for batch in loader:
                    if first_batch is None:
                        first_batch = time.perf_counter() - start
                    samples += len(batch["id"])
                passes.append(samples / (time.perf_counter() - start))
        results[f"{int(workers)}w"] = {
            "workers": int(workers),
            "batch_size": int(settings.batch_size),
            "modalities": list(cfg.modality.names),
            "samples_per_second": passes[-1],
            "first_pass_samples_per_second": passes[0],
            "first_batch_seconds": first_batch,
        }
        ctx.console.progress(SECTION, f"DataLoader, {workers} worker(s): {passes[-1]:.0f} samples/s")
        del loader  # ends the persistent workers
    return results


def _per_item_table(results: dict[str, dict[str, Any]], settings) -> Table:
    threshold = float(settings.min_speedup)
    table = Table(
        "Loader: one item from shards vs decoding the raw file",
        ["modality", "items", "shards µs/item", "raw decode µs/item", "shards faster by", f"≥ {threshold:g}x"],
        notes=[
            "shards: fusion.data.shards.ModalityShards.get(id) (litdata, memory-mapped chunks; page cache warm). "
            "raw: the modality's preprocessing processor on the record's file (read, decode, resize / resample, "
            "tokenise / log-mel), fitted as run_preprocess fits it. Same records, random order; median of "
            f"{int(settings.passes)} passes after {int(settings.warmup_items)} warm-up items.",
            "all: one record with every modality (sum of the rows above).",
        ],
    )
    for modality, row in results.items():
        table.add(
            modality, row["items"], row["shards_us"], row["raw_us"], times(row["speedup"]), verdict(row["passed"])
        )
    return table


def _dataloader_table(results: dict[str, dict[str, float]], settings) -> Table:
    table = Table(
        "Loader: training DataLoader from shards (MultimodalDataModule.train_dataloader)",
        ["workers", "batch", "samples/s (steady)", "samples/s (first pass)", "first batch s"],
        notes=[
            f"Modalities {'+'.join(next(iter(results.values()))['modalities']) if results else ''}; "
            f"{int(settings.dataloader_passes)} passes over the training split, shuffled and collated; steady = "
            "the last pass (persistent workers already running), first pass includes starting the workers."
        ],
    )
    for row in results.values():
        table.add(
            row["workers"],
            row["batch_size"],
            row["samples_per_second"],
            row["first_pass_samples_per_second"],
            row["first_batch_seconds"],
        )
    return table
