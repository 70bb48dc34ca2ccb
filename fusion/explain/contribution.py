"""Modality contribution by removal: how the model's output changes when one modality is taken away.

Per sample, the change of the output when the modality is marked missing (as for real missing data,
fusion.data.ablation): multiclass, the drop of the predicted class's probability; multilabel, the mean
absolute change of the label probabilities; regression, the absolute change of the value. Over a split,
the mean of that change over the samples holding the modality, and the drop of the task's main metric.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from fusion.data.ablation import drop_modalities
from fusion.tasks.objectives import Task


def output_change(task: Task, full: Tensor, without: Tensor) -> Tensor:
    """[B] change of the task's scores from ``full`` to ``without`` (see the module docstring)."""
    if task.name == "multiclass":
        predicted = full.argmax(-1, keepdim=True)
        return (full.gather(-1, predicted) - without.gather(-1, predicted))[:, 0]
    change = (full - without).abs()
    return change.mean(-1) if change.dim() > 1 else change


CHANGE_NAMES = {
    "multiclass": "drop in predicted-class probability when removed",
    "multilabel": "mean change of label probabilities when removed",
    "regression": "change of the predicted value when removed",
}


def change_name(task: Task) -> str:
    return CHANGE_NAMES[task.name]


@torch.no_grad()
def removal_changes(net: nn.Module, task: Task, batch: dict[str, Any]) -> dict[str, Tensor]:
    """Per modality of ``net``, the per-sample output change [B] when it is removed (NaN where the sample
    does not hold it: nothing to remove)."""
    modalities = list(net.modalities)
    full = task.scores(net({m: batch[m] for m in modalities})).float()
    changes = {}
    for m in modalities:
        dropped = drop_modalities(batch, [m])
        without = task.scores(net({k: dropped[k] for k in modalities})).float()
        change = output_change(task, full, without)
        changes[m] = torch.where(batch[m]["present"].cpu(), change.cpu(), torch.full_like(change.cpu(), float("nan")))
    return changes


def _local(metrics: MetricCollection) -> MetricCollection:
    """The metrics computed on this process's samples alone: rank 0 explains the whole split by itself after
    distributed training, while the other ranks are gone, so no state may be gathered across processes."""
    for metric in metrics.values():
        metric.distributed_available_fn = lambda: False
    return metrics


@torch.no_grad()
def split_removal(net: nn.Module, task: Task, batches: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Over a split: per modality ``{"change": mean output change over samples holding it, "metric": full
    metric, "metric_without": metric with it removed, "metric_drop": their difference}``; the metric is the
    task's main one (task.metric), computed with the task's own metric objects."""
    modalities = list(net.modalities)
    key = task.metric.split("/", 1)[-1]
    full_metric = _local(task.metrics())
    without_metric = {m: _local(task.metrics()) for m in modalities}
    sums = {m: 0.0 for m in modalities}
    counts = {m: 0 for m in modalities}
    for batch in batches:
        outputs = net({m: batch[m] for m in modalities})
        full_metric.update(*task.metric_inputs(outputs, batch["label"]))
        full = task.scores(outputs).float()
        for m in modalities:
            dropped = drop_modalities(batch, [m])
            reduced = net({k: dropped[k] for k in modalities})
            without_metric[m].update(*task.metric_inputs(reduced, batch["label"]))
            change = output_change(task, full, task.scores(reduced).float())
            present = batch[m]["present"]
            sums[m] += float(change[present].sum())
            counts[m] += int(present.sum())
    value = float(full_metric.compute()[key])
    result = {}
    for m in modalities:
        without = float(without_metric[m].compute()[key])
        drop = value - without if task.mode == "max" else without - value
        result[m] = {
            "change": sums[m] / counts[m] if counts[m] else float("nan"),
            "metric": value,
            "metric_without": without,
            "metric_drop": drop,
        }
    return result
