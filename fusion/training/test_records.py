"""The test split's per-record outcome of a run (test_records.csv, an MLflow artifact): what paired
significance tests over the same records (fusion/tracking/stats.py, compare) read across runs, and the test
figure of each group of records that hold the same modalities (a record missing its image, say, is judged on its
text and audio alone: the figure of those records is what a user with naturally missing data needs to see)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch

FILE = "test_records.csv"
COLUMNS = ("id", "target", "prediction", "correct", "modalities")
NO_MODALITY = "none"  # the `modalities` of a record that holds none of the run's modalities
# The test figure `correct` averages to, by task: its metric name, and the sign that turns the mean into it.
HELD_FIGURE = {"multiclass": ("acc", 1.0), "multilabel": ("subset_acc", 1.0), "regression": ("mae", -1.0)}


def held_modalities(batch: dict, modalities: list[str]) -> list[str]:
    """Each record of a batch -> the run's modalities it holds, joined by "+" in the run's order ("none")."""
    present = torch.stack([batch[m]["present"].bool().cpu() for m in modalities], dim=1)
    return ["+".join(m for m, held in zip(modalities, row, strict=True) if held) or NO_MODALITY for row in present]


def test_record_rows(
    ids: list[str], labels: torch.Tensor, scores: torch.Tensor, task, held: list[str] | None = None
) -> list[dict]:
    """One row per record: its target and prediction, `correct` (1/0; multilabel: every label right;
    regression: the negative absolute error, so that higher is better as for the class tasks) and the
    modalities it holds (``held``; empty where not given)."""
    rows = []
    for i, record_id in enumerate(ids):
        if task.name == "multiclass":
            p, t = int(scores[i].argmax()), int(labels[i])
            rows.append({"id": record_id, "target": t, "prediction": p, "correct": int(p == t)})
        elif task.name == "multilabel":
            p, t = (scores[i] > task.threshold).int(), labels[i].int()
            rows.append(
                {
                    "id": record_id,
                    "target": "".join(map(str, t.tolist())),
                    "prediction": "".join(map(str, p.tolist())),
                    "correct": int(bool((p == t).all())),
                }
            )
        else:
            p, t = float(scores[i].reshape(-1)[0]), float(labels[i].reshape(-1)[0])
            rows.append({"id": record_id, "target": t, "prediction": p, "correct": -abs(p - t)})
    for row, modalities in zip(rows, held if held is not None else [""] * len(rows), strict=True):
        row["modalities"] = modalities
    return rows


def outcome_by_modalities(rows: list[dict], task_name: str) -> dict[str, tuple[float, int]]:
    """{held modalities: (the task's test figure over those records, their count)}: accuracy, exact match or
    mean absolute error (``HELD_FIGURE``), most modalities first, then most records."""
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        groups[row["modalities"]].append(float(row["correct"]))
    _, sign = HELD_FIGURE[task_name]
    outcome = {held: (sign * sum(values) / len(values), len(values)) for held, values in groups.items()}
    return dict(sorted(outcome.items(), key=lambda kv: (-_count_modalities(kv[0]), -kv[1][1], kv[0])))


def _count_modalities(held: str) -> int:
    return 0 if held in ("", NO_MODALITY) else held.count("+") + 1


@dataclass
class TestPredictions:
    """The test split as one predict pass gives it: record ids, labels, scores and the modalities each holds."""

    ids: list[str]
    labels: torch.Tensor
    scores: torch.Tensor
    held: list[str]


def predict_test_split(trainer: pl.Trainer, module, datamodule) -> TestPredictions:
    """Predict the test split with the module's current (best) weights."""
    batches = trainer.predict(module, dataloaders=datamodule.loader("test"))
    return TestPredictions(
        ids=[str(i) for batch in batches for i in batch["id"]],
        labels=torch.cat([batch["label"] for batch in batches]),
        scores=torch.cat([batch["scores"].float() for batch in batches]),
        held=[h for batch in batches for h in batch["held"]],
    )


def write_test_records(predictions: TestPredictions, task, path: Path) -> list[dict]:
    """Write test_records.csv from the test split's predictions; return its rows."""
    rows = test_record_rows(predictions.ids, predictions.labels, predictions.scores, task, predictions.held)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_test_records(path: str | Path) -> dict[str, float]:
    """{record id: correct} from a test_records.csv."""
    with open(path, newline="", encoding="utf-8") as source:
        return {row["id"]: float(row["correct"]) for row in csv.DictReader(source)}


def log_test_records(
    trainer: pl.Trainer,
    module,
    datamodule,
    logger,
    output_dir: Path,
    predictions: TestPredictions | None = None,
) -> dict[str, tuple[float, int]] | None:
    """Write test_records.csv in ``output_dir`` (from ``predictions``, else a predict pass of its own) and log it
    to the run; in a multimodal run, also log and print the test figure of each group of records holding the same
    modalities (:func:`log_outcome_by_modalities`) and return those groups (:func:`outcome_by_modalities`; empty
    for one modality). One process only: under several processes each would predict its own share of the
    records, so nothing is written there (None)."""
    if trainer.world_size != 1:
        print(
            "test_records.csv and the test figures by held modalities skipped: they need one process's predictions "
            "(trainer.devices=1)",
            flush=True,
        )
        return None
    path = output_dir / FILE
    rows = write_test_records(predictions or predict_test_split(trainer, module, datamodule), module.task, path)
    logger.experiment.log_artifact(logger.run_id, str(path))
    if len(module.modalities) < 2:
        return {}
    outcome = outcome_by_modalities(rows, module.task.name)
    log_outcome_by_modalities(outcome, module.task.name, logger)
    return outcome


def outcome_json(outcome: dict[str, tuple[float, int]], task_name: str) -> dict[str, dict[str, float]]:
    """The groups as test_by_modalities.json holds them: {"image+audio": {"acc": ..., "records": ...}, ...}."""
    name, _ = HELD_FIGURE[task_name]
    return {held: {name: figure, "records": count} for held, (figure, count) in outcome.items()}


def outcome_metrics(outcome: dict[str, tuple[float, int]], task_name: str) -> dict[str, float]:
    """``test/<figure>_holding_<modalities>`` and ``test/records_holding_<modalities>`` for every group (the
    modalities joined by "_": MLflow keys hold no "+")."""
    name, _ = HELD_FIGURE[task_name]
    metrics = {}
    for held, (figure, count) in outcome.items():
        slug = held.replace("+", "_")
        metrics[f"test/{name}_holding_{slug}"] = figure
        metrics[f"test/records_holding_{slug}"] = float(count)
    return metrics


def log_outcome_by_modalities(outcome: dict[str, tuple[float, int]], task_name: str, logger) -> dict[str, float]:
    """Log :func:`outcome_metrics` to the run and print the groups as a table."""
    name, _ = HELD_FIGURE[task_name]
    metrics = outcome_metrics(outcome, task_name)
    logger.log_metrics(metrics)
    width = max(len(held) for held in outcome)
    lines = [f"  {held:<{width}}  {figure:.3f}  ({count} records)" for held, (figure, count) in outcome.items()]
    print(f"Test {name} by the modalities each record holds ({FILE}):", *lines, sep="\n", flush=True)
    return metrics
