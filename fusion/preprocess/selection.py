"""Which tokens depend on the label: Pearson's chi-squared test of independence between a token's presence in a
training text and the text's label. A long text is mostly words any class could hold; keeping only the tokens
that tell classes apart leaves a model nothing to learn the texts by heart with (docs/results.md, "Long texts")."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import torch

__all__ = ["ClassCounts", "label_groups", "dependence_p_values"]


def label_groups(labels: Sequence[Any]) -> tuple[list[str], list[list[str]]] | None:
    """The classes and each record's classes: a class name (multiclass) is one, a list (multilabel) any number;
    None for numbers (regression), which have no classes to count a token in."""
    if all(isinstance(label, str) for label in labels):
        groups = [[label] for label in labels]
    elif all(isinstance(label, (list, tuple)) for label in labels):
        groups = [list(dict.fromkeys(label)) for label in labels]
    else:
        return None
    return sorted({name for group in groups for name in group}), groups


class ClassCounts:
    """Texts seen, texts holding each token, and the same per class, counted one text at a time (no text kept);
    ``exclusive`` while every text has exactly one class."""

    def __init__(self, classes: list[str]):
        self.classes = classes
        self.column = {name: k for k, name in enumerate(classes)}
        self.texts = 0
        self.exclusive = True
        self.holding: Counter = Counter()
        self.sizes = [0] * len(classes)
        self.per_class: list[Counter] = [Counter() for _ in classes]

    def add(self, tokens: set[str], group: list[str]) -> None:
        self.texts += 1
        self.exclusive = self.exclusive and len(group) == 1
        self.holding.update(tokens)
        for name in group:
            self.sizes[self.column[name]] += 1
            self.per_class[self.column[name]].update(tokens)


def dependence_p_values(counts: ClassCounts, tokens: list[str]) -> list[float]:
    """P-value of each of ``tokens`` under independence of its presence and the label. One class a text
    (``counts.exclusive``): one test on the classes × present/absent table, with classes - 1 degrees of freedom.
    Otherwise one 2 × 2 test per class (with it or not), and the smallest p-value times the number of classes
    (Bonferroni), at most 1. With no class at all (multilabel records that all hold none) nothing depends on
    it: 1."""
    if not counts.classes:
        return [1.0] * len(tokens)
    present = torch.tensor([[c[t] for c in counts.per_class] for t in tokens], dtype=torch.float64).reshape(
        len(tokens), len(counts.classes)
    )  # texts of each class holding the token
    sizes = torch.tensor(counts.sizes, dtype=torch.float64)
    texts = float(counts.texts)
    with_token = torch.tensor([counts.holding[t] for t in tokens], dtype=torch.float64)[:, None]
    if counts.exclusive:
        terms = _pearson(present, with_token * sizes / texts) + _pearson(
            sizes - present, (texts - with_token) * sizes / texts
        )
        return _chi2_survival(terms.sum(1), len(counts.classes) - 1).tolist()
    outside = texts - sizes
    cells = (
        (present, with_token * sizes / texts),
        (with_token - present, with_token * outside / texts),
        (sizes - present, (texts - with_token) * sizes / texts),
        (outside - with_token + present, (texts - with_token) * outside / texts),
    )
    statistic = sum(_pearson(observed, expected) for observed, expected in cells)
    p = _chi2_survival(statistic, 1).min(1).values * len(counts.classes)
    return p.clamp(max=1.0).tolist()


def _pearson(observed: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """(observed - expected)² / expected per cell; 0 for a cell that expects nothing (an empty class)."""
    terms = (observed - expected) ** 2 / expected.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(expected > 0, terms, torch.zeros_like(terms))


def _chi2_survival(statistic: torch.Tensor, degrees: int) -> torch.Tensor:
    """P(X >= statistic) for X chi-squared with ``degrees`` degrees of freedom (1 where there are none)."""
    if degrees < 1:
        return torch.ones_like(statistic)
    return torch.special.gammaincc(torch.tensor(degrees / 2, dtype=torch.float64), statistic / 2)
