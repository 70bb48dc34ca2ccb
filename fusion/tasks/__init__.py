"""The tasks a run can learn (`task.name`) and the dataset splits: the one registry every layer reads.

Each task has a label spec (`fusion.tasks.labels`: what a valid label is, how it becomes a target), an
objective (`fusion.tasks.objectives`: loss, metrics, test report) and a synthetic-label recipe for the
bundled sample (`fusion.data.sample`); each of those keys its classes with :func:`by_task`, which fails
unless they cover exactly ``TASK_NAMES``, so a task is added here first and cannot be half-registered.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

SPLITS = ("train", "val", "test")
TASK_NAMES = ("multiclass", "multilabel", "regression")
# With a heads' vote (model.predict_with_heads), every evaluation metric is also logged per view, e.g.
# test/acc_fused (the fused head alone) and test/acc_vote (fusion/training/module.py).
VOTE_VIEWS = ("fused", "vote")

T = TypeVar("T")


def by_task(classes: Iterable[T], attr: str = "name") -> dict[str, T]:
    """``{task name: class}`` for one per-task family, in ``TASK_NAMES`` order; raises when a task is missing
    or unknown (the family and ``TASK_NAMES`` disagree)."""
    found = {getattr(cls, attr): cls for cls in classes}
    if set(found) != set(TASK_NAMES):
        raise ValueError(f"per-task classes {sorted(found)} do not match fusion.tasks.TASK_NAMES {list(TASK_NAMES)}")
    return {name: found[name] for name in TASK_NAMES}


def unknown_task(name: object) -> ValueError:
    """The error for a `task.name` that is not registered."""
    return ValueError(f"unknown task {name!r} (task=...); available: {', '.join(TASK_NAMES)}")
