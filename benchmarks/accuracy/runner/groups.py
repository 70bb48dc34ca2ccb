"""Record by record, by what each test record gives to go by: the accuracy of this project's runs (the fused
defaults and each modality alone) on the records that hold the same informative modalities.

A fused model should do at least as well as a model of one modality on the records where that modality is the
only one that tells the label (a record without its picture whose caption names no digit, say); the tables of
`run` average over every record and hide it. The dataset's `latent.jsonl` says which modalities each record
holds and whether each tells its label (a caption can be uninformative; avunrelated's recordings never tell),
and each run folder's test_records.csv what the run got right.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from benchmarks.accuracy.datasets.build import DATASET_INFO, LATENT
from benchmarks.accuracy.datasets.plan import MODALITIES
from benchmarks.accuracy.runner.paired import TEST_RECORDS, run_folder
from benchmarks.tables import Table

NOTHING = "nothing"  # the group of records that hold no informative modality


def telling_modalities(latent: Mapping[str, Any], informative: Mapping[str, float]) -> str:
    """The modalities a record holds that tell its label, joined by "+" (``NOTHING`` if none): a modality counts
    where the record's latent says it is informative, or, where it does not say, where the dataset's modality
    ever is (``informative`` of dataset.json: avdigits' scans 1.0, avunrelated's recordings 0.0)."""
    telling = []
    for m in MODALITIES:
        held = latent.get(m)
        if held is not None and held.get("informative", informative.get(m, 1.0) > 0):
            telling.append(m)
    return "+".join(telling) or NOTHING


def record_groups(dataset_dir: Path) -> dict[str, str]:
    """Record id -> :func:`telling_modalities`, from the dataset folder's latent.jsonl and dataset.json."""
    for name in (LATENT, DATASET_INFO):
        if not (dataset_dir / name).is_file():
            raise FileNotFoundError(f"{dataset_dir / name} is missing: give the dataset folder that `build` wrote")
    informative = json.loads((dataset_dir / DATASET_INFO).read_text(encoding="utf-8")).get("informative", {})
    groups = {}
    with (dataset_dir / LATENT).open(encoding="utf-8") as lines:
        for line in lines:
            latent = json.loads(line)
            groups[latent["id"]] = telling_modalities(latent, informative)
    return groups


def run_outcomes(row: Mapping[str, Any], results_path: Path) -> dict[str, int]:
    """Record id -> 1 if the run got it right, from its test_records.csv."""
    path = run_folder(row, results_path) / TEST_RECORDS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the groups need the run folders that `run` wrote")
    with path.open(encoding="utf-8", newline="") as handle:
        return {r["id"]: int(float(r["correct"])) for r in csv.DictReader(handle)}


def accuracy_by_group(
    results: Mapping[str, Any], results_path: Path, groups: Mapping[str, str], dataset: str
) -> dict[str, dict[str, tuple[float, int]]]:
    """{system: {group: (accuracy over the group's test records and the system's seeds, records)}} for every
    successful project run (``project``, ``project-<modality>``) of ``dataset``."""
    right: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    records: dict[str, set[str]] = defaultdict(set)
    for row in results["runs"]:
        if row["dataset"] != dataset or not row["system"].startswith("project") or row.get("error"):
            continue
        for record_id, correct in run_outcomes(row, results_path).items():
            if record_id not in groups:
                raise ValueError(f"test record {record_id} of {row['system']} is not in the dataset's {LATENT}")
            right[row["system"]][groups[record_id]].append(correct)
            records[groups[record_id]].add(record_id)
    return {
        system: {group: (sum(values) / len(values), len(records[group])) for group, values in by_group.items()}
        for system, by_group in right.items()
    }


def table(by_system: Mapping[str, Mapping[str, tuple[float, int]]], labels: Mapping[str, str], dataset: str) -> Table:
    """One row per group (most telling modalities first, then most records), one column per system."""
    systems = sorted(by_system, key=lambda s: (s != "project", s))
    counts = {group: n for figures in by_system.values() for group, (_, n) in figures.items()}
    order = sorted(counts, key=lambda g: (-(0 if g == NOTHING else g.count("+") + 1), -counts[g], g))
    out = Table(
        title=f"{dataset}: test accuracy by the modalities that tell a record's label",
        columns=["modalities that tell the label", "records", *(labels.get(s, s) for s in systems)],
        notes=[
            "Each record counted in the group of the modalities it holds that tell its label (latent.jsonl): a "
            "missing modality, an uninformative caption or recording, tells nothing.",
            "Accuracy over the group's test records and every seed of the system.",
        ],
    )
    for group in order:
        cells = [f"{by_system[s][group][0]:.3f}" if group in by_system[s] else "n/a" for s in systems]
        out.add(group, str(counts[group]), *cells)
    return out
