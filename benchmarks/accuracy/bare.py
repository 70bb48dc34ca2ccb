"""Train the defaults on an already-preprocessed dataset for several seeds, without MLflow (`logger=none`), in this
process: the accuracy check for a machine that has torch, Lightning and Hydra but no MLflow store, such as a bare
GPU box. Preprocess where the full pipeline runs, carry the processed folder, then:

    python -m benchmarks.accuracy.bare <processed_dir> --seeds 0,1,2 --out gpu.json trainer=gpu

Any further argument is a config override of every run. Results (per seed and mean ± std) go to --out after each
seed, so a run cut short keeps what it measured."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.accuracy.runner.project import ACC, FIT_CPU_SECONDS, FIT_SECONDS, MODALITIES, WITHOUT
from benchmarks.accuracy.runner.summary import mean_std
from benchmarks.machine import describe, pick_device
from fusion.config import compose
from fusion.overrides import quoted_override
from fusion.stages.train import train

KEPT = (ACC, FIT_SECONDS, FIT_CPU_SECONDS, *(WITHOUT.format(m) for m in MODALITIES))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy.bare", description=__doc__)
    parser.add_argument("processed_dir", type=Path, help="a processed folder (text/, image/, audio/ shards)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    parser.add_argument("--out", type=Path, required=True, help="the results JSON to write")
    parser.add_argument("--workdir", type=Path, help="run folders (default: a temporary folder, removed after)")
    parser.add_argument("overrides", nargs="*", help="config overrides of every run, e.g. trainer=gpu")
    return parser.parse_intermixed_args(argv)


def kept_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The figures the accuracy benchmark reports: test accuracy, with each modality removed, and fit time."""
    return {k: float(v) for k, v in metrics.items() if k in KEPT}


def summarise(runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of every figure over the seeds that reported it."""
    names = sorted({k for figures in runs.values() for k in figures})
    summary = {}
    for name in names:
        values = [figures[name] for figures in runs.values() if name in figures]
        mean, spread = mean_std(values)
        summary[name] = {"mean": mean, "std": spread or 0.0, "n": len(values)}
    return summary


def machine() -> dict[str, Any]:
    """Where the figures come from (the speed benchmark's description of the machine)."""
    return describe(pick_device("auto"))


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Train once per seed; the results file is rewritten after each."""
    result: dict[str, Any] = {
        "processed_dir": str(args.processed_dir),
        "overrides": args.overrides,
        "machine": machine(),
        "runs": {},
    }
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = compose(
            [
                quoted_override("data.processed_dir", args.processed_dir.resolve()),
                quoted_override("paths.output_dir", workdir / f"seed-{seed}"),
                f"seed={seed}",
                "logger=none",
                *args.overrides,
            ]
        )
        start = time.perf_counter()
        figures = kept_metrics(train(cfg))
        figures["wall_seconds"] = time.perf_counter() - start
        result["runs"][str(seed)] = figures
        result["summary"] = summarise(result["runs"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(figures.items())), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.processed_dir.is_dir():
        raise SystemExit(
            f"error: {args.processed_dir} is not a folder; preprocess first: python pipelines/preprocess.py "
            f"<text|image|audio> data.root=<dataset> data.processed_dir={args.processed_dir}"
        )
    if args.workdir is not None:
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bare-accuracy-") as tmp:
            result = run(args, Path(tmp))
    for name, s in result["summary"].items():
        print(f"{name}: {s['mean']:.4f} ± {s['std']:.4f} (n={s['n']})")


if __name__ == "__main__":
    main()
