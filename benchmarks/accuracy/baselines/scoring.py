"""What both baselines report, computed the same way: test accuracy and macro-F1, each modality alone, each one
removed.

A record with none of the modalities a prediction may use gets the majority class of the training split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
from sklearn.metrics import f1_score

from benchmarks.accuracy.baselines.rawdata import RawDataset


@dataclass
class BaselineResult:
    """One baseline run: accuracies (test split) and the seconds its training took."""

    test_acc: float
    val_acc: float
    test_f1_macro: float  # the fused model's F1 averaged over the classes (every class counts alike)
    alone: dict[str, float]  # modality -> test accuracy using only that modality
    without: dict[str, float]  # modality -> test accuracy with that modality removed from every record
    cpu_seconds: float = 0.0  # training + testing of the fused model
    wall_seconds: float = 0.0
    fit_seconds: float = 0.0  # wall clock of fitting alone
    fit_cpu_seconds: float = 0.0  # CPU time of fitting alone (what the time check compares)
    unimodal_cpu_seconds: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels)) if len(labels) else float("nan")


def macro_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of each class, averaged over the classes that occur in `labels` or `predictions` (as torchmetrics'
    macro average, which the project logs as test/f1_macro)."""
    seen = np.union1d(np.unique(labels), np.unique(predictions)).astype(int)
    if not len(seen):
        return float("nan")
    return float(f1_score(labels, predictions, labels=seen, average="macro", zero_division=0))


def majority_class(data: RawDataset) -> int:
    """The most frequent class of the training split (ties: the lowest index)."""
    return int(np.bincount(data.labels[data.split("train")], minlength=len(data.classes)).argmax())


def late_fusion(
    probabilities: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], fallback: int
) -> np.ndarray:
    """Argmax of the mean class probabilities over the modalities present in each record (`fallback` where none
    is); probabilities and present flags are per modality, [N, classes] and [N]."""
    modalities = list(probabilities)
    stacked = np.stack([probabilities[m] * present[m][:, None] for m in modalities])
    count = np.sum([present[m] for m in modalities], axis=0)
    predictions = stacked.sum(0).argmax(1)
    return np.where(count > 0, predictions, fallback)


def fusion_scores(
    probabilities: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], labels: np.ndarray, fallback: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Late fusion of per-modality probabilities: accuracy with all modalities, each alone, each removed."""

    def score(used: list[str]) -> float:
        return accuracy(late_fusion({m: probabilities[m] for m in used}, present, fallback), labels)

    held = list(probabilities)  # the modalities the dataset holds
    alone = {m: score([m]) for m in held}
    without = {m: score([o for o in held if o != m]) for m in held}
    return score(held), alone, without
