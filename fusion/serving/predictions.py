"""The prediction table shared by the served model, `python -m fusion.predict` and the evaluate stage: one row
per record with its prediction and every output's score, so the three can be compared column by column."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

from torch import Tensor

from fusion.tasks.objectives import Task

ID, PREDICTION, PROB_PREFIX, VALUE = "id", "prediction", "prob_", "value"
LABEL_SEPARATOR = "|"  # joins the predicted labels of a multilabel row


def score_columns(task: Task) -> list[str]:
    """One column per model output: ``prob_<class>`` for the class-based tasks, ``value`` for regression."""
    return [f"{PROB_PREFIX}{name}" for name in task.classes] or [VALUE]


def prediction_columns(task: Task) -> list[str]:
    return [ID, PREDICTION, *score_columns(task)]


def prediction_rows(ids: Sequence[str], scores: Tensor, task: Task) -> list[dict[str, Any]]:
    """Rows ``{id, prediction, <score columns>}`` from the task's scores [B, outputs] (regression: [B] or [B, 1]):
    multiclass predicts the most probable class, multilabel every label above ``task.threshold`` (joined by
    ``|``, empty for none), regression the value."""
    scores = scores.detach().float().cpu().reshape(len(ids), -1)
    columns = score_columns(task)
    if scores.shape[1] != len(columns):
        raise ValueError(
            f"scores have {scores.shape[1]} outputs per row, the {task.name} task has {len(columns)} "
            f"({', '.join(columns)}); the model and its labels do not belong together"
        )
    rows = []
    for record_id, row in zip(ids, scores.tolist(), strict=True):
        rows.append({ID: str(record_id), PREDICTION: _prediction(row, task), **dict(zip(columns, row, strict=True))})
    return rows


def _prediction(row: list[float], task: Task) -> Any:
    if not task.classes:
        return row[0]
    if task.name == "multilabel":
        return LABEL_SEPARATOR.join(name for name, p in zip(task.classes, row, strict=True) if p > task.threshold)
    return task.classes[max(range(len(row)), key=row.__getitem__)]  # the first of equal maxima, as argmax


def write_predictions(path: str | Path, ids: Sequence[str], scores: Tensor, task: Task) -> Path:
    """Write the prediction rows as CSV (floats at full precision), replacing ``path`` only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=prediction_columns(task))
        writer.writeheader()
        writer.writerows(prediction_rows(ids, scores, task))
    os.replace(partial, path)
    return path
