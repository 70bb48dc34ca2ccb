"""Variants of this project against a reference run of it, record by record: each variant's results.json (a `run`
with `--set`, or `--project` on an edited checkout) against the reference's, on the same dataset files and seeds.

Two means over three seeds on a 220-record test split differ by a point or two by chance alone; the paired
bootstrap over test records (each record's outcome averaged over the seeds, as `fusion.tracking.compare` does for
runs of one MLflow experiment) says which differences the records support.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks.accuracy.runner.paired import TEST_RECORDS, run_folder
from benchmarks.accuracy.runner.summary import ACC_DECIMALS, SECONDS_DECIMALS, format_mean_std
from benchmarks.tables import Table
from fusion.tracking.stats import Difference, paired_bootstrap

RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass
class VariantResult:
    """One variant on one dataset against the reference."""

    dataset: str
    label: str
    seeds: list[int]
    acc: list[float]
    fit_cpu: list[float]
    difference: Difference  # variant - reference, per-record accuracy averaged over the seeds


def label(results: Mapping[str, Any], path: Path) -> str:
    """What sets a variant apart: its --set overrides, else the checkout it measured, else its folder."""
    settings = results.get("settings", {})
    if settings.get("project_overrides"):
        return " ".join(settings["project_overrides"])
    return Path(settings["checkout"]).name if settings.get("checkout") else path.parent.name


def outcomes(results: Mapping[str, Any], path: Path, dataset: str, system: str) -> dict[int, dict[str, int]]:
    """seed -> record id -> 1 right / 0 wrong, from each successful run's test_records.csv."""
    out = {}
    for row in results["runs"]:
        if row["dataset"] != dataset or row["system"] != system or row.get("error"):
            continue
        records = run_folder(row, path) / TEST_RECORDS
        if not records.is_file():
            raise FileNotFoundError(f"{records} is missing: the comparison needs the run folders that `run` wrote")
        with records.open(encoding="utf-8", newline="") as handle:
            out[int(row["seed"])] = {r["id"]: int(r["correct"]) for r in csv.DictReader(handle)}
    return out


def _figure(results: Mapping[str, Any], dataset: str, system: str, seeds: Sequence[int], key: str) -> list[float]:
    rows = {r["seed"]: r for r in results["runs"] if r["dataset"] == dataset and r["system"] == system}
    return [float(rows[s][key]) for s in seeds if rows[s].get(key) is not None]


def compare(
    reference: tuple[Mapping[str, Any], Path],
    variants: Sequence[tuple[Mapping[str, Any], Path]],
    system: str = "project",
    resamples: int = RESAMPLES,
) -> list[VariantResult]:
    """Per dataset of the reference, per variant that ran it: the variant's figures over the seeds both ran, and
    the paired bootstrap of its per-record accuracy less the reference's. Data that differ (dataset fingerprints)
    or test records that differ are refused, never compared."""
    ref_results, ref_path = reference
    out = []
    for dataset in ref_results["datasets"]:
        ref = outcomes(ref_results, ref_path, dataset, system)
        for results, path in variants:
            mine = outcomes(results, path, dataset, system) if dataset in results.get("datasets", {}) else {}
            seeds = sorted(set(ref) & set(mine))
            if not seeds:
                continue
            _same_data(ref_results, ref_path, results, path, dataset)
            ids = sorted(ref[seeds[0]])
            if any(sorted(runs[s]) != ids for runs in (ref, mine) for s in seeds):
                raise ValueError(
                    f"{dataset}: the test records of {path} and {ref_path} differ; compare runs on one split"
                )
            per_record = [[statistics.mean(runs[s][i] for s in seeds) for i in ids] for runs in (mine, ref)]
            out.append(
                VariantResult(
                    dataset=dataset,
                    label=label(results, path),
                    seeds=seeds,
                    acc=_figure(results, dataset, system, seeds, "test_acc"),
                    fit_cpu=_figure(results, dataset, system, seeds, "fit_cpu_seconds"),
                    difference=paired_bootstrap(*per_record, resamples=resamples, seed=BOOTSTRAP_SEED),
                )
            )
    return out


def _same_data(ref: Mapping[str, Any], ref_path: Path, other: Mapping[str, Any], path: Path, dataset: str) -> None:
    before, now = (r["datasets"][dataset].get("fingerprint") for r in (ref, other))
    if before and now and before != now:
        raise ValueError(
            f"{dataset}: {path} was measured on other files than {ref_path} (fingerprints {now[:12]} and "
            f"{before[:12]}); compare runs on the same dataset folder"
        )


def table(
    rows: Sequence[VariantResult], reference: Mapping[str, Any], reference_path: Path, system: str = "project"
) -> Table:
    """One line per dataset and variant, the reference's own figures (of ``system``, as compared) first."""
    ref_label = label(reference, reference_path)
    lines = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        seeds = next(r.seeds for r in rows if r.dataset == dataset)
        acc = _figure(reference, dataset, system, seeds, "test_acc")
        cpu = _figure(reference, dataset, system, seeds, "fit_cpu_seconds")
        lines.append(
            [
                dataset,
                f"{ref_label} (reference)",
                format_mean_std(acc, ACC_DECIMALS),
                format_mean_std(cpu, SECONDS_DECIMALS),
                "",
                "",
            ]
        )
        for r in (r for r in rows if r.dataset == dataset):
            d = r.difference
            lines.append(
                [
                    dataset,
                    r.label,
                    format_mean_std(r.acc, ACC_DECIMALS),
                    format_mean_std(r.fit_cpu, SECONDS_DECIMALS),
                    f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
                    "yes" if d.significant else "no",
                ]
            )
    return Table(
        title="Variants against the reference, record by record (paired bootstrap)",
        columns=["dataset", "variant", "test acc", "fit CPU s", "vs reference [95% CI]", "significant"],
        rows=lines,
        notes=[
            "test acc, fit CPU s: mean ± sample std over the seeds both runs hold.",
            f"vs reference: the variant's test accuracy less the reference's, each test record's outcome averaged "
            f"over those seeds, with the percentile interval of {RESAMPLES:,} bootstrap resamples of the records; "
            "significant: the interval excludes 0.",
        ],
    )
