"""Record by record: a modality-alone run of this project against logistic regression's model of that modality on
the same test records, with McNemar's exact test on the records that exactly one of the two gets right.

On a 220-record test split one record moves an accuracy by 0.45 points, so a gap of a few points between two
means can be luck; this says whether it is. Records without the modality get the training majority class from
logistic regression, and whatever our model answers for them, as in the benchmark's tables.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from benchmarks.accuracy.baselines import logreg, rawdata
from benchmarks.accuracy.baselines.scoring import accuracy, majority_class
from benchmarks.tables import Table

TEST_RECORDS = "test_records.csv"  # train.py's per-record test predictions, in the run folder
BUNDLE_META = Path("bundle") / "preprocess"  # <modality>/meta.json: the class names in the model's order
SIGNIFICANCE = 0.05


@dataclass
class PairedResult:
    """One seed of `project-<modality>` against logistic regression on the same test records."""

    dataset: str
    modality: str
    seed: int
    ours: float  # test accuracy
    baseline: float
    baseline_only: int  # records logistic regression gets right and ours wrong
    ours_only: int
    p_value: float


def mcnemar_exact(baseline_only: int, ours_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant records as fair coin flips (binomial, p = 1/2)."""
    n = baseline_only + ours_only
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(baseline_only, ours_only) + 1))
    return min(1.0, 2.0 * tail / 2**n)


def our_predictions(run_dir: Path, modality: str) -> dict[str, str]:
    """Record id -> predicted class name, from the run's test_records.csv and its bundle's class order."""
    records, meta = run_dir / TEST_RECORDS, run_dir / BUNDLE_META / modality / "meta.json"
    for path in (records, meta):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the paired test needs the run folder that train.py wrote")
    classes = json.loads(meta.read_text(encoding="utf-8"))["classes"]
    with records.open(encoding="utf-8", newline="") as handle:
        return {row["id"]: classes[int(row["prediction"])] for row in csv.DictReader(handle)}


def run_folder(row: Mapping[str, Any], results_path: Path) -> Path:
    """The run's folder as recorded, else where `run` puts it under the results folder (results moved)."""
    recorded = Path(row.get("run_dir") or "")
    if row.get("run_dir") and recorded.is_dir():
        return recorded
    return results_path.parent / "work" / row["dataset"] / "runs" / f"{row['system']}-s{row['seed']}"


def compare(results: Mapping[str, Any], results_path: Path, data: rawdata.RawDataset, dataset: str, modality: str):
    """PairedResult per successful `project-<modality>` run of `dataset` in the results."""
    test = data.split("test")
    labels = data.labels[test]
    fallback = majority_class(data)
    out = []
    for row in results["runs"]:
        if row["dataset"] != dataset or row["system"] != f"project-{modality}" or row.get("error"):
            continue
        probabilities, _, _ = logreg.fit_modality(data, modality, row["seed"])
        baseline = np.where(data.present[modality][test], probabilities[test].argmax(1), fallback)
        predicted = our_predictions(run_folder(row, results_path), modality)
        missing = [data.ids[i] for i in test if data.ids[i] not in predicted]
        if missing:
            raise ValueError(f"{TEST_RECORDS} of {row['system']} seed {row['seed']} lacks test records {missing[:5]}")
        ours = np.array([data.classes.index(predicted[data.ids[i]]) for i in test])
        baseline_only = int(np.sum((baseline == labels) & (ours != labels)))
        ours_only = int(np.sum((ours == labels) & (baseline != labels)))
        out.append(
            PairedResult(
                dataset=dataset,
                modality=modality,
                seed=int(row["seed"]),
                ours=accuracy(ours, labels),
                baseline=accuracy(baseline, labels),
                baseline_only=baseline_only,
                ours_only=ours_only,
                p_value=mcnemar_exact(baseline_only, ours_only),
            )
        )
    return out


def table(rows: Iterable[PairedResult]) -> Table:
    """One line per seed: both accuracies, the discordant records and the p-value."""
    return Table(
        title="Alone, record by record: this project against logistic regression (McNemar's exact test)",
        columns=[
            "dataset",
            "modality",
            "seed",
            "ours",
            "logistic regression",
            "LR only right",
            "ours only right",
            "p",
            "significant",
        ],
        rows=[
            [
                r.dataset,
                r.modality,
                str(r.seed),
                f"{r.ours:.3f}",
                f"{r.baseline:.3f}",
                str(r.baseline_only),
                str(r.ours_only),
                f"{r.p_value:.3f}",
                verdict(r),
            ]
            for r in rows
        ],
        notes=[
            f"significant: p < {SIGNIFICANCE}, and which model is ahead; a record without the modality gets "
            "logistic regression's training majority class."
        ],
    )


def verdict(result: PairedResult) -> str:
    """'no' unless p < SIGNIFICANCE, else which model gets more of the discordant records right."""
    if result.p_value >= SIGNIFICANCE:
        return "no"
    return "ours ahead" if result.ours_only > result.baseline_only else "LR ahead"
