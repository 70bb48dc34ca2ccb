"""The best accuracy any classifier can reach on a dataset whose modalities each reveal a *group* of classes.

Each modality m maps class c to a group g_m(c); when m is present and informative it reveals g_m(c) and
nothing else, otherwise it reveals nothing. Given the modalities that are informative, the candidates are the
classes agreeing with every revealed group; the Bayes-optimal guess is the most frequent candidate, right with
probability (its share) / (the candidates' shares): 1 / (number of candidates) with balanced classes. Averaging
over classes and over the presence law of
`plan.draw_missing` gives the figures written to dataset.json. Real signals are never perfectly informative,
so with `informative` = 1 for a modality the figure is an upper bound.
"""

from __future__ import annotations

from itertools import combinations, product
from typing import Mapping, Optional, Sequence

from benchmarks.accuracy.datasets.plan import MISSING_FRACTION, MODALITIES


def presence_law(fraction: float = MISSING_FRACTION) -> dict[frozenset[str], float]:
    """P(exactly this set of modalities is present) under plan.draw_missing (all-missing re-drawn to one present)."""
    law: dict[frozenset[str], float] = {}
    for flags in product((True, False), repeat=len(MODALITIES)):
        present = frozenset(m for m, here in zip(MODALITIES, flags, strict=True) if here)
        law[present] = law.get(present, 0.0) + _probability(flags, 1.0 - fraction)
    everything_missing = law.pop(frozenset())
    for modality in MODALITIES:
        law[frozenset([modality])] += everything_missing / len(MODALITIES)
    return law


def _probability(flags: Sequence[bool], p_true: float) -> float:
    out = 1.0
    for flag in flags:
        out *= p_true if flag else 1.0 - p_true
    return out


def candidate_classes(groups: Mapping[str, Sequence[int]], revealed: Sequence[str], label: int) -> list[int]:
    """The classes that agree with `label` on the groups of every revealed modality."""
    classes = len(next(iter(groups.values())))
    return [other for other in range(classes) if all(groups[m][other] == groups[m][label] for m in revealed)]


def hit_rate(groups: Mapping[str, Sequence[int]], revealed: Sequence[str], shares: Sequence[float]) -> float:
    """P(the Bayes-optimal guess is right) when exactly `revealed` tell their groups: over the classes c (drawn
    with `shares`), the chance that c is the guess, i.e. the most frequent of its candidates (ties split)."""
    total = 0.0
    for label, share in enumerate(shares):
        rivals = [shares[c] for c in candidate_classes(groups, revealed, label)]
        if share >= max(rivals):
            total += share / rivals.count(share)
    return total


def bayes_accuracy(
    groups: Mapping[str, Sequence[int]],
    informative: Mapping[str, float],
    used: Sequence[str],
    fraction: float = MISSING_FRACTION,
    shares: Optional[Sequence[float]] = None,
) -> float:
    """Bayes-optimal accuracy of a classifier that sees only the modalities `used`; `shares`: each class's share
    of the records (None: balanced)."""
    classes = len(next(iter(groups.values())))
    shares = [1.0 / classes] * classes if shares is None else [float(v) for v in shares]
    total = 0.0
    for present, p_present in presence_law(fraction).items():
        seen = [m for m in used if m in present]
        for flags in product((True, False), repeat=len(seen)):
            revealed = [m for m, here in zip(seen, flags, strict=True) if here]
            p_flags = 1.0
            for m, here in zip(seen, flags, strict=True):
                p_flags *= informative[m] if here else 1.0 - informative[m]
            total += p_present * p_flags * hit_rate(groups, revealed, shares)
    return total


def expectations(
    groups: Mapping[str, Sequence[int]],
    informative: Mapping[str, float],
    fraction: float = MISSING_FRACTION,
    shares: Optional[Sequence[float]] = None,
) -> dict[str, float]:
    """Bayes-optimal accuracy for every non-empty subset of modalities, keyed like `text+image`."""
    return {
        "+".join(subset): round(bayes_accuracy(groups, informative, subset, fraction, shares), 4)
        for size in range(1, len(MODALITIES) + 1)
        for subset in combinations(MODALITIES, size)
    }
