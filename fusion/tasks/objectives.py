"""What differs between tasks in training and evaluation, one class per task (`task.name`).

A Task turns model outputs into a loss and into what its metrics read, names its metrics (the same
per split: `<split>/<name>`), accumulates a test report and writes it as figure, MLflow metrics and
DVC plot data. The LightningModule, train() and evaluate() only call these methods.

| task | output | loss | metrics | test report |
| --- | --- | --- | --- | --- |
| multiclass | one logit per class | cross-entropy | acc, f1_macro | confusion matrix, per-class F1 |
| multilabel | one logit per class | binary cross-entropy | f1_micro, f1_macro, subset_acc, hamming | per-class F1 |
| regression | one value | MSE or smooth L1 on the standardised target | mae, pearson_r, sign_acc | predicted vs true |
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanAbsoluteError, Metric, MetricCollection, PearsonCorrCoef
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
)
from torchmetrics.utilities import dim_zero_cat

from fusion.tasks import by_task, unknown_task
from fusion.tasks.labels import LabelSpec
from fusion.tracking.figures import plot_confusion_matrix, plot_per_class, plot_scatter

MODES = ("max", "min")
# How a multiclass loss treats rare classes (task.class_balance): plain cross-entropy; each class weighted by the
# inverse of its training frequency; or logit adjustment (Menon et al., 2021, "Long-tail learning via logit
# adjustment"): the loss adds tau * log(prior) to the logits, so the model's own logits learn the balanced posterior.
CLASS_BALANCES = ("none", "reweight", "logit_adjust")
# The multiclass loss (task.loss): cross-entropy, or the generalised cross-entropy of Zhang & Sabuncu (2018),
# (1 - p_true ** q) / q, which weighs a sample by p_true ** q and so pulls less on records the model finds
# implausible, such as mislabeled ones (q -> 0 is cross-entropy, q = 1 the mean absolute error).
CLASSIFICATION_LOSSES = ("cross_entropy", "gce")
GCE_MIN_PROBABILITY = 1e-7  # floor of p_true under the power (its gradient at 0 is infinite for q < 1)


class SignAccuracy(Metric):
    """Binary accuracy of the sign: prediction >= 0 against target >= 0 (CMU-MOSI's Acc-2,
    negative vs non-negative)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.correct += ((preds >= 0) == (target >= 0)).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.correct.float() / self.total


class Collect(Metric):
    """Every prediction of an epoch (or, with `targets=True`, every target), concatenated."""

    full_state_update = False

    def __init__(self, targets: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.targets = targets
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.values.append((target if self.targets else preds).detach().float().flatten())

    def compute(self) -> Tensor:
        return dim_zero_cat(self.values) if self.values else torch.zeros(0)


class Task:
    """The base: `metric` (main test metric), `monitor` (validation metric for checkpoints) and
    `mode` come from conf/task/<name>.yaml, as do the subclasses' knobs."""

    name: ClassVar[str]

    def __init__(self, labels: LabelSpec, metric: str, monitor: str, mode: str, figure: str):
        self.labels = labels
        self.classes: list[str] = labels.classes
        self.metric, self.monitor, self.mode, self.figure = metric, monitor, mode, figure
        if mode not in MODES:
            raise ValueError(f"task.mode must be one of {MODES}, got {mode!r}")
        for key, split in (("metric", "test"), ("monitor", "val")):
            known = [f"{split}/{name}" for name in ("loss", *self.metrics())]
            if getattr(self, key) not in known:
                raise ValueError(
                    f"task.{key}={getattr(self, key)!r} is not a metric of the {self.name} task; "
                    f"use one of {', '.join(known)}"
                )

    @property
    def num_outputs(self) -> int:
        return self.labels.num_outputs

    @property
    def uses_class_counts(self) -> bool:
        """Whether the loss reads the training split's records per class (:meth:`fit_class_counts`)."""
        return False

    def fit_class_counts(self, counts: Sequence[int]) -> None:
        """The training split's records per class, for a loss that balances the classes (others ignore them)."""

    @property
    def best_key(self) -> str:
        """The best monitored value so far, logged per epoch: e.g. val/acc_best."""
        return f"{self.monitor}_best"

    def loss(self, outputs: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def metric_inputs(self, outputs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """(predictions, target) as the metrics read them."""
        raise NotImplementedError

    def scores(self, outputs: Tensor) -> Tensor:
        """What predict_step returns: class probabilities, or values in the target's units."""
        raise NotImplementedError

    def confidence(self, outputs: Tensor, target: Tensor) -> Tensor:
        """[B] in [0, 1]: how much of the truth each row's output gives (the gradient modulation's
        per-modality score)."""
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        """Per-split metrics (unprefixed names)."""
        raise NotImplementedError

    def report_metrics(self) -> MetricCollection:
        """Accumulated over the test split for the report (figure, per-class metrics, plot data)."""
        raise NotImplementedError

    def report_scalars(self, report: Mapping[str, Tensor]) -> dict[str, float]:
        """Extra test metrics for MLflow (e.g. test/f1_<class>)."""
        return {}

    def plot(self, report: Mapping[str, Tensor], path: Path, title: str) -> Path:
        raise NotImplementedError

    def write_plot_data(self, report: Mapping[str, Tensor], folder: Path) -> None:
        """CSV files for `dvc plots` (see dvc.yaml's plots)."""
        raise NotImplementedError


class _Classification(Task):
    """Shared by the class-based tasks: per-class F1 as test/f1_<class> and plots/per_class.csv."""

    def report_scalars(self, report: Mapping[str, Tensor]) -> dict[str, float]:
        return {f"test/f1_{name}": float(v) for name, v in zip(self.classes, report["f1_per_class"], strict=True)}

    def write_plot_data(self, report: Mapping[str, Tensor], folder: Path) -> None:
        _write_csv(
            folder / "per_class.csv",
            ["class", "f1"],
            ([name, round(float(f1), 6)] for name, f1 in zip(self.classes, report["f1_per_class"], strict=True)),
        )


class Multiclass(_Classification):
    name = "multiclass"

    def __init__(
        self,
        labels: LabelSpec,
        label_smoothing: float = 0.0,
        class_balance: str = "none",
        logit_adjust_tau: float = 1.0,
        loss: str = "cross_entropy",
        gce_q: float = 0.7,
        **common: Any,
    ):
        super().__init__(labels, **common)
        if class_balance not in CLASS_BALANCES:
            raise ValueError(f"task.class_balance must be one of {', '.join(CLASS_BALANCES)}, got {class_balance!r}")
        if loss not in CLASSIFICATION_LOSSES:
            raise ValueError(f"task.loss must be one of {', '.join(CLASSIFICATION_LOSSES)}, got {loss!r}")
        if loss == "gce" and not 0 < gce_q <= 1:
            raise ValueError(f"task.gce_q must be in (0, 1], got {gce_q}")
        if loss == "gce" and label_smoothing:
            raise ValueError(
                f"task.loss=gce takes hard labels: set optim.label_smoothing=0 (got {label_smoothing}), or keep "
                f"task.loss=cross_entropy with label smoothing"
            )
        self.loss_name, self.gce_q = loss, float(gce_q)
        self.label_smoothing = float(label_smoothing)
        self.class_balance, self.logit_adjust_tau = class_balance, float(logit_adjust_tau)
        self.class_counts: Optional[Tensor] = None
        self.class_weight: Optional[Tensor] = None  # reweight: N / (classes x count), 1 everywhere when balanced
        self.log_prior: Optional[Tensor] = None  # logit_adjust: log(count / N)

    @property
    def uses_class_counts(self) -> bool:
        return self.class_balance != "none"

    def fit_class_counts(self, counts: Sequence[int]) -> None:
        """A class without training records counts as one (its weight and log-prior stay finite)."""
        if len(counts) != len(self.classes):
            raise ValueError(f"{len(counts)} class counts for {len(self.classes)} classes")
        self.class_counts = torch.as_tensor(list(counts), dtype=torch.float32).clamp_min(1.0)
        total = self.class_counts.sum()
        self.class_weight = total / (len(self.class_counts) * self.class_counts)
        self.log_prior = (self.class_counts / total).log()

    def loss(self, outputs: Tensor, target: Tensor) -> Tensor:
        weight = None
        if self.class_balance != "none":
            if self.class_counts is None:
                raise RuntimeError(f"task.class_balance={self.class_balance} needs fit_class_counts() before a loss")
            if self.class_balance == "reweight":
                weight = self.class_weight.to(device=outputs.device, dtype=outputs.dtype)
            else:
                outputs = outputs + self.logit_adjust_tau * self.log_prior.to(
                    device=outputs.device, dtype=outputs.dtype
                )
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(outputs, target, weight=weight, label_smoothing=self.label_smoothing)
        p_true = outputs.float().softmax(dim=-1).gather(1, target[:, None]).squeeze(1)
        per_sample = (1.0 - p_true.clamp_min(GCE_MIN_PROBABILITY) ** self.gce_q) / self.gce_q
        if weight is None:
            return per_sample.mean()
        weights = weight.float()[target]
        return (weights * per_sample).sum() / weights.sum()  # as cross_entropy's weighted mean

    def metric_inputs(self, outputs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return outputs.argmax(dim=-1), target

    def scores(self, outputs: Tensor) -> Tensor:
        return torch.softmax(outputs, dim=-1)

    def confidence(self, outputs: Tensor, target: Tensor) -> Tensor:
        """The probability of the true class."""
        return torch.softmax(outputs, dim=-1).gather(1, target[:, None]).squeeze(1)

    def metrics(self) -> MetricCollection:
        n = len(self.classes)
        return MetricCollection(
            {"acc": MulticlassAccuracy(n, average="micro"), "f1_macro": MulticlassF1Score(n, average="macro")}
        )

    def report_metrics(self) -> MetricCollection:
        n = len(self.classes)
        return MetricCollection(
            {"confusion": MulticlassConfusionMatrix(n), "f1_per_class": MulticlassF1Score(n, average=None)},
            compute_groups=False,
        )

    def plot(self, report: Mapping[str, Tensor], path: Path, title: str) -> Path:
        return plot_confusion_matrix(report["confusion"].numpy(), self.classes, path, title)

    def write_plot_data(self, report: Mapping[str, Tensor], folder: Path) -> None:
        """confusion.csv (one row per test sample: actual, predicted) and per_class.csv (class, f1)."""
        confusion = report["confusion"].tolist()
        _write_csv(
            folder / "confusion.csv",
            ["actual", "predicted"],
            (
                [self.classes[i], self.classes[j]]
                for i, row in enumerate(confusion)
                for j, count in enumerate(row)
                for _ in range(int(count))
            ),
        )
        super().write_plot_data(report, folder)


class Multilabel(_Classification):
    name = "multilabel"

    def __init__(self, labels: LabelSpec, threshold: float = 0.5, **common: Any):
        self.threshold = float(threshold)
        super().__init__(labels, **common)

    def loss(self, outputs: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, target)

    def metric_inputs(self, outputs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(outputs), target.long()

    def scores(self, outputs: Tensor) -> Tensor:
        return torch.sigmoid(outputs)

    def confidence(self, outputs: Tensor, target: Tensor) -> Tensor:
        """The mean probability given to each label's true state (on or off)."""
        probs = torch.sigmoid(outputs)
        return (probs * target + (1 - probs) * (1 - target)).mean(dim=-1)

    def metrics(self) -> MetricCollection:
        n, t = len(self.classes), self.threshold
        return MetricCollection(
            {
                "f1_micro": MultilabelF1Score(n, threshold=t, average="micro"),
                "f1_macro": MultilabelF1Score(n, threshold=t, average="macro"),
                "subset_acc": MultilabelExactMatch(n, threshold=t),
                "hamming": MultilabelHammingDistance(n, threshold=t, average="micro"),
            }
        )

    def report_metrics(self) -> MetricCollection:
        return MetricCollection(
            {"f1_per_class": MultilabelF1Score(len(self.classes), threshold=self.threshold, average=None)},
            compute_groups=False,
        )

    def plot(self, report: Mapping[str, Tensor], path: Path, title: str) -> Path:
        return plot_per_class(report["f1_per_class"].tolist(), self.classes, path, title, xlabel="test F1")


class Regression(Task):
    name = "regression"
    LOSSES = {"mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}

    def __init__(self, labels: LabelSpec, loss: str = "mse", standardize: bool = True, **common: Any):
        super().__init__(labels, **common)
        if loss not in self.LOSSES:
            raise ValueError(f"task.loss must be one of {', '.join(self.LOSSES)}, got {loss!r}")
        self.loss_fn = self.LOSSES[loss]
        stats = labels.info.get("target_stats", {})
        std = float(stats.get("std", 1.0))
        self.mean, self.std = (float(stats.get("mean", 0.0)), std if std > 0 else 1.0) if standardize else (0.0, 1.0)

    def _values(self, outputs: Tensor) -> Tensor:
        """The model's single output in the target's units."""
        return outputs.float().squeeze(-1) * self.std + self.mean

    def loss(self, outputs: Tensor, target: Tensor) -> Tensor:
        return self.loss_fn(outputs.float().squeeze(-1), (target - self.mean) / self.std)

    def metric_inputs(self, outputs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return self._values(outputs), target

    def scores(self, outputs: Tensor) -> Tensor:
        return self._values(outputs)

    def confidence(self, outputs: Tensor, target: Tensor) -> Tensor:
        """exp(-squared error) in standardised units: 1 when exact, toward 0 as the error grows."""
        return torch.exp(-((outputs.float().squeeze(-1) - (target - self.mean) / self.std) ** 2))

    def metrics(self) -> MetricCollection:
        return MetricCollection(
            {"mae": MeanAbsoluteError(), "pearson_r": PearsonCorrCoef(), "sign_acc": SignAccuracy()}
        )

    def report_metrics(self) -> MetricCollection:
        return MetricCollection({"predicted": Collect(), "actual": Collect(targets=True)}, compute_groups=False)

    def plot(self, report: Mapping[str, Tensor], path: Path, title: str) -> Path:
        return plot_scatter(report["actual"].numpy(), report["predicted"].numpy(), path, title)

    def write_plot_data(self, report: Mapping[str, Tensor], folder: Path) -> None:
        """scatter.csv: one row per test sample (actual, predicted)."""
        _write_csv(
            folder / "scatter.csv",
            ["actual", "predicted"],
            (
                [round(float(a), 6), round(float(p), 6)]
                for a, p in zip(report["actual"], report["predicted"], strict=True)
            ),
        )


TASKS: dict[str, type[Task]] = by_task((Multiclass, Multilabel, Regression))


def build_task(task_cfg: Mapping[str, Any], labels: LabelSpec) -> Task:
    """The Task of conf/task/<name>.yaml (name, metric, monitor, mode, figure and the task's knobs)."""
    knobs = dict(task_cfg)
    name = knobs.pop("name")
    if name not in TASKS:
        raise unknown_task(name)
    if labels.task != name:
        raise ValueError(f"the data's labels are for task={labels.task}, the config says task={name}")
    return TASKS[name](labels, **knobs)


def _write_csv(path: Path, header: list[str], rows: Iterable[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(header)
        writer.writerows(rows)
