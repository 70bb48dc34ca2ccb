"""The `label` field of the manifest, per task: what a valid label is, and how it becomes a target.

One class per task (`task.name`), used by the manifest (validation, stratified splits, the label
vocabulary or statistics of the training split) and by the DataModule (encoding and collation):

* multiclass: a class name (string); target = class index.
* multilabel: a list of class names, possibly empty; target = multi-hot vector over the classes.
* regression: a finite number; target = the number (the task may standardise it with `stats`).

`fit` runs on the training split and returns the label info stored in every modality's meta.json
(`classes`, plus `target_stats` for regression); `from_info` rebuilds the same spec for training.
"""

from __future__ import annotations

import math
import sys
from typing import Any, ClassVar, Iterable, Mapping

from fusion.tasks import by_task, unknown_task


class LabelError(ValueError):
    """The label of one record is invalid for the task (the manifest turns it into a rejection)."""


class LabelSpec:
    """Base class: `parse` validates a raw label, `fit` learns the label info from training labels."""

    task: ClassVar[str]
    dtype: ClassVar[str]  # torch dtype name of the collated targets

    def __init__(self, info: Mapping[str, Any] | None = None):
        self.info = dict(info or {})
        self.classes: list[str] = list(self.info.get("classes", []))
        self.index = {name: i for i, name in enumerate(self.classes)}

    @staticmethod
    def parse(value: Any) -> Any:
        """The label as given, if valid; raises LabelError with the reason."""
        raise NotImplementedError

    @staticmethod
    def stratum(label: Any) -> str:
        """The group a record without a split is stratified in."""
        raise NotImplementedError

    @classmethod
    def fit(cls, train_labels: Iterable[Any]) -> "LabelSpec":
        """The spec with the label info of the training split."""
        return cls({"classes": sorted({name for label in train_labels for name in cls._names(label)})})

    @staticmethod
    def _names(label: Any) -> Iterable[str]:
        return ()

    def unknown(self, label: Any) -> str | None:
        """Why a (val/test) label cannot be used with the fitted info, or None."""
        unseen = [name for name in self._names(label) if name not in self.index]
        if not unseen:
            return None
        return f"label '{unseen[0]}' does not occur in the training split"

    def encode(self, label: Any) -> Any:
        """The value a dataset item carries (plain Python, collated with `dtype`)."""
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        """Size of the model's output layer."""
        return len(self.classes)

    @property
    def placeholder(self) -> Any:
        """The target of a sample without a label (prediction on new data): zeros of the target's shape."""
        return [0.0] * len(self.classes) if self.dtype == "float" and self.classes else 0


class SingleLabel(LabelSpec):
    task = "multiclass"
    dtype = "long"

    @staticmethod
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise LabelError("missing or empty 'label' (a class name string is required)")
        return value

    @staticmethod
    def stratum(label: str) -> str:
        return label

    @staticmethod
    def _names(label: str) -> Iterable[str]:
        return (label,)

    def encode(self, label: str) -> int:
        return self.index[label]


class MultiLabel(LabelSpec):
    task = "multilabel"
    dtype = "float"

    @staticmethod
    def parse(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise LabelError("missing 'label' or not a list (a list of class names is required, [] for none)")
        if not all(isinstance(name, str) and name.strip() for name in value):
            raise LabelError("'label' must hold only non-empty class name strings")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise LabelError(f"label '{repeated[0]}' is listed twice")
        return value

    @staticmethod
    def stratum(label: list[str]) -> str:
        """Stratified by the alphabetically first label ('' for none): every class count stays
        proportional enough, while the label sets themselves are too many to stratify by."""
        return min(label, default="")

    @staticmethod
    def _names(label: list[str]) -> Iterable[str]:
        return label

    def encode(self, label: list[str]) -> list[float]:
        hot = [0.0] * len(self.classes)
        for name in label:
            hot[self.index[name]] = 1.0
        return hot


class Scalar(LabelSpec):
    task = "regression"
    dtype = "float"

    @staticmethod
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LabelError(f"'label' must be a number, got {'null' if value is None else type(value).__name__}")
        if isinstance(value, int) and abs(value) > sys.float_info.max:  # math.isfinite would raise OverflowError
            raise LabelError(f"'label' must be a finite number, got an integer of {len(str(abs(value)))} digits")
        if not math.isfinite(value):
            raise LabelError(f"'label' must be a finite number, got {value}")
        return value

    @staticmethod
    def stratum(label: float) -> str:
        """One stratum: a plain seeded random split with the configured fractions."""
        return ""

    @classmethod
    def fit(cls, train_labels: Iterable[float]) -> "Scalar":
        values = [float(v) for v in train_labels]
        n = len(values)
        mean = sum(values) / n if n else 0.0
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else 0.0
        stats = {"count": n, "mean": mean, "std": std, "min": min(values, default=0.0), "max": max(values, default=0.0)}
        return cls({"classes": [], "target_stats": stats})

    def unknown(self, label: float) -> str | None:
        return None

    def encode(self, label: float) -> float:
        return float(label)

    @property
    def num_outputs(self) -> int:
        return 1


LABEL_SPECS: dict[str, type[LabelSpec]] = by_task((SingleLabel, MultiLabel, Scalar), attr="task")


def label_spec(task: str) -> type[LabelSpec]:
    """The LabelSpec class of task.name."""
    try:
        return LABEL_SPECS[task]
    except KeyError:
        raise unknown_task(task) from None
