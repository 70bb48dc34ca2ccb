"""What each task (multiclass, multilabel, regression) makes of the latent groups: the record's label, the
split strata, the task's config checks and its lines of the summary."""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import numpy as np

from fusion.data.sample.bayes import bayes_optimal_accuracy
from fusion.data.sample.config import MODALITIES
from fusion.data.sample.rng import _PURPOSE_RECORD, _STREAM_LABEL, _rng
from fusion.tasks import TASK_NAMES, by_task


class _Target:
    """What a task makes of the latent groups: the label of each record and its summary."""

    name = ""

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        """Task-specific config checks (the class tables are checked for every task)."""

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        """(group each clean modality shows, the plan's label fields); ``class_index`` is the
        balanced class of the record (the multiclass label)."""
        raise NotImplementedError

    @staticmethod
    def strata(c: Mapping, class_indices: np.ndarray) -> tuple[np.ndarray, int]:
        """What write_splits stratifies by, and the number of strata (default: one)."""
        return np.zeros_like(class_indices), 1

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        """(label statistics, Bayes-optimal figures) for the summary."""
        raise NotImplementedError

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        raise NotImplementedError

    @classmethod
    def bayes_line(cls, summary: Mapping) -> str:
        return f"  bayes-optimal accuracy: not computed for {cls.name} labels (multiclass only)"


class _Multiclass(_Target):
    """One class per record, revealed pairwise by the modalities (the package docstring's design)."""

    name = "multiclass"

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        shown = {mod: int(c[mod]["groups"][class_index]) for mod in MODALITIES}
        return shown, {"class_index": class_index, "label": c["class_names"][class_index]}

    @staticmethod
    def strata(c: Mapping, class_indices: np.ndarray) -> tuple[np.ndarray, int]:
        return class_indices, len(c["class_names"])

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        return (
            {"classes": {name: sum(p["label"] == name for p in plans) for name in c["class_names"]}},
            {"bayes_optimal_accuracy": bayes_optimal_accuracy(c)},
        )

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [f"  classes:       {_kv(summary['classes'])}"]

    @classmethod
    def bayes_line(cls, summary: Mapping) -> str:
        return "  bayes-optimal accuracy: " + ", ".join(
            f"{k} {v:.3f}" for k, v in summary["bayes_optimal_accuracy"].items()
        )


class _Multilabel(_Target):
    """1..max_labels genres per record; genre g is group g of every modality."""

    name = "multilabel"

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        ml = c["multilabel"]
        genres = list(ml["genres"])
        if len(set(genres)) != len(genres) or not all(isinstance(g, str) and g for g in genres):
            raise ValueError("multilabel.genres must hold unique non-empty names")
        _check_one_per_group("multilabel.genres", len(genres), n_groups)
        if not 1 <= int(ml["max_labels"]) <= min(len(MODALITIES), len(genres)):
            raise ValueError(f"multilabel.max_labels must lie in [1, {min(len(MODALITIES), len(genres))}]")

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        """k genres uniform in 1..max_labels; each genre shown by one modality, the others repeat one."""
        ml = c["multilabel"]
        rng = _rng(c["seed"], _PURPOSE_RECORD, index, _STREAM_LABEL)
        k = int(rng.integers(1, int(ml["max_labels"]) + 1))
        genres = sorted(int(g) for g in rng.choice(len(ml["genres"]), size=k, replace=False))
        shown = genres + [int(g) for g in rng.choice(genres, size=len(MODALITIES) - k)]
        order = rng.permutation(len(MODALITIES))
        return (
            {mod: shown[int(j)] for mod, j in zip(MODALITIES, order, strict=True)},
            {"genres": genres, "label": [str(ml["genres"][g]) for g in genres]},
        )

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        genres = c["multilabel"]["genres"]
        return (
            {
                "classes": {name: sum(name in p["label"] for p in plans) for name in genres},
                "label_sizes": dict(sorted(Counter(len(p["label"]) for p in plans).items())),
            },
            {},
        )

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [
            f"  genres:        {_kv(summary['classes'])} (records carrying each)",
            f"  labels/record: {_kv(summary['label_sizes'])}",
        ]


class _Regression(_Target):
    """A score: the sum of the three modalities' group values plus noise, clipped to the range."""

    name = "regression"

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        rg = c["regression"]
        _check_one_per_group("regression.group_values", len(rg["group_values"]), n_groups)
        lo, hi = rg["range"]
        if not lo < hi or float(rg["noise_std"]) < 0 or int(rg["decimals"]) < 0:
            raise ValueError("regression: need range lo < hi, noise_std >= 0 and decimals >= 0")

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        rg = c["regression"]
        values = [float(v) for v in rg["group_values"]]
        rng = _rng(c["seed"], _PURPOSE_RECORD, index, _STREAM_LABEL)
        groups = {mod: int(rng.integers(len(values))) for mod in MODALITIES}
        score = sum(values[g] for g in groups.values()) + float(rng.normal(0.0, float(rg["noise_std"])))
        score = round(float(np.clip(score, *rg["range"])), int(rg["decimals"])) + 0.0  # no -0.0
        return groups, {"latent_groups": groups, "label": score}

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        scores = np.array([p["label"] for p in plans], dtype=float)
        stats = {"mean": scores.mean(), "std": scores.std(), "min": scores.min(), "max": scores.max()}
        return (
            {
                "score": {k: round(float(v), 3) for k, v in stats.items()},
                "sign": {"negative": int((scores < 0).sum()), "non_negative": int((scores >= 0).sum())},
            },
            {},
        )

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [f"  score:         {_kv(summary['score'])}; sign {_kv(summary['sign'])}"]


def _check_one_per_group(key: str, count: int, n_groups: Mapping[str, int]) -> None:
    if any(n != count for n in n_groups.values()):
        raise ValueError(
            f"{key} needs one entry per group of every modality: {count} given, groups per modality {dict(n_groups)}"
        )


_TARGETS = by_task((_Multiclass, _Multilabel, _Regression))


def _target(c: Mapping) -> type[_Target]:
    """The task of the sample config (``task``; multiclass when absent)."""
    name = c.get("task", "multiclass")
    if name not in _TARGETS:
        raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
    return _TARGETS[name]


def _kv(counts: Mapping) -> str:
    """'a=1 b=2' rendering of a count dict."""
    return " ".join(f"{k}={v}" for k, v in counts.items())
