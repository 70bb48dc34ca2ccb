"""What every record of a benchmark dataset is before anything is rendered: label, split, missing modalities.

Cheap and deterministic (no file is written), so the tests check the design's proportions on thousands of
plans. Every random draw comes from a generator of its own, keyed by (dataset, seed, record, stream), so a
record does not change when another one does, and the builders may render records in any order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

MODALITIES = ("text", "image", "audio")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
MISSING_FRACTION = 0.08  # each modality is absent from this share of records, independently
ID_PREFIX = "r"
# Generator streams of one record: one per modality plus the plan's own draws.
STREAMS = {"plan": 0, "text": 1, "image": 2, "audio": 3}
_PURPOSE_LABELS, _PURPOSE_SPLITS, _PURPOSE_RECORD, _PURPOSE_POOLS, _PURPOSE_NOISE = 0, 1, 2, 3, 4
# Where label noise reaches (plan_records' label_noise): the labels a user annotated; the test split keeps the true
# class, so test accuracy measures the truth.
NOISY_SPLITS = ("train", "val")


@dataclass(frozen=True)
class RecordPlan:
    """One record: its index, id, class index (what its content shows), split, which modalities it lacks, and the
    wrong class its manifest gives where label noise reached it."""

    index: int
    id: str
    label: int
    split: str
    missing: frozenset[str]
    given: int | None = None

    def has(self, modality: str) -> bool:
        return modality not in self.missing

    @property
    def manifest_label(self) -> int:
        """The class the manifest names: the true one, or the wrong one label noise gave."""
        return self.label if self.given is None else self.given


def rng_for(dataset: str, seed: int, purpose: int, index: int = 0, stream: int = 0) -> np.random.Generator:
    """An independent generator for (dataset, seed, purpose, index, stream); keys have a fixed length so that
    numpy's zero padding of short spawn keys cannot make two of them collide."""
    key = (zlib.crc32(dataset.encode("utf-8")), purpose, index, stream)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def pick(rng: np.random.Generator, items: Sequence):
    """One of `items`, uniformly."""
    return items[int(rng.integers(len(items)))]


def record_rng(dataset: str, seed: int, index: int, stream: str) -> np.random.Generator:
    """The generator of one record's `stream` (plan, text, image or audio)."""
    return rng_for(dataset, seed, _PURPOSE_RECORD, index, STREAMS[stream])


def balanced_labels(dataset: str, seed: int, records: int, classes: int) -> np.ndarray:
    """Class indices in a seeded order, each class `records / classes` times (counts differ by at most one)."""
    return rng_for(dataset, seed, _PURPOSE_LABELS).permutation(np.arange(records) % classes)


def class_shares(classes: int, ratio: float = 1.0) -> np.ndarray:
    """Each class's share of the records: equal with `ratio` 1, else falling geometrically from the first class to
    the last, which is `ratio` times rarer (the long-tailed profile of Cui et al., 2019, "Class-Balanced Loss")."""
    if ratio < 1:
        raise ValueError(f"the class ratio (most / least frequent) must be >= 1, got {ratio}")
    shares = float(ratio) ** (-np.arange(classes) / max(classes - 1, 1))
    return shares / shares.sum()


def long_tail_labels(dataset: str, seed: int, records: int, classes: int, ratio: float) -> np.ndarray:
    """Class indices in a seeded order, class c about `records * class_shares(classes, ratio)[c]` times (largest
    remainders; every class at least once where there are as many records as classes). Ratio 1 is
    `balanced_labels`, draw for draw."""
    if ratio == 1:
        return balanced_labels(dataset, seed, records, classes)
    exact = records * class_shares(classes, ratio)
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: records - counts.sum()]] += 1
    if records >= classes:
        for rare in np.flatnonzero(counts == 0):
            counts[counts.argmax()] -= 1
            counts[rare] = 1
    return rng_for(dataset, seed, _PURPOSE_LABELS).permutation(np.repeat(np.arange(classes), counts))


def deal_by_class(
    rng: np.random.Generator, labels: Sequence[int], fractions: Mapping[str, float] = SPLIT_FRACTIONS
) -> dict[str, dict[int, np.ndarray]]:
    """Per class, a seeded shuffle of the indices of `labels` cut by the split fractions: split -> class -> indices.
    Every split gets every class (as far as the class has members)."""
    labels = np.asarray(labels)
    shares = np.cumsum([float(fractions[s]) for s in SPLITS]) / sum(float(fractions[s]) for s in SPLITS)
    dealt: dict[str, dict[int, np.ndarray]] = {s: {} for s in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(shares * len(members)).astype(int)
        for split, part in zip(SPLITS, np.split(members, cuts[:-1]), strict=True):
            dealt[split][int(label)] = part
    return dealt


def stratified_splits(dataset: str, seed: int, labels: np.ndarray) -> list[str]:
    """The split of every record, stratified by class."""
    out = [""] * len(labels)
    for split, by_class in deal_by_class(rng_for(dataset, seed, _PURPOSE_SPLITS), labels).items():
        for part in by_class.values():
            for i in part:
                out[int(i)] = split
    return out


def mislabel(dataset: str, seed: int, index: int, label: int, classes: int, noise: float) -> int | None:
    """With probability `noise`, another class than `label`, drawn uniformly (symmetric label noise); else None."""
    rng = rng_for(dataset, seed, _PURPOSE_NOISE, index)
    if rng.random() >= noise:
        return None
    other = int(rng.integers(classes - 1))
    return other + (other >= label)


def draw_missing(rng: np.random.Generator, fraction: float = MISSING_FRACTION) -> frozenset[str]:
    """Each modality missing with probability `fraction`; when all would be, one drawn at random stays."""
    missing = {m for m in MODALITIES if rng.random() < fraction}
    if len(missing) == len(MODALITIES):
        missing.discard(MODALITIES[int(rng.integers(len(MODALITIES)))])
    return frozenset(missing)


def presence_probability(fraction: float = MISSING_FRACTION) -> float:
    """P(a given modality is present) under draw_missing: 1 - fraction, plus its share of the all-missing re-draw."""
    return 1.0 - fraction + fraction ** len(MODALITIES) / len(MODALITIES)


def record_id(index: int, records: int) -> str:
    """`r0001`-style ids, zero-padded to the width of the record count."""
    return f"{ID_PREFIX}{index + 1:0{max(4, len(str(records)))}d}"


def plan_records(
    dataset: str,
    seed: int,
    records: int,
    classes: int,
    missing_fraction: float = MISSING_FRACTION,
    class_ratio: float = 1.0,
    label_noise: float = 0.0,
) -> list[RecordPlan]:
    """Every record's plan: labels (balanced, or long-tailed with `class_ratio` > 1), stratified splits, missing
    modalities, and with `label_noise` > 0 that share of the NOISY_SPLITS' records given a wrong class."""
    if records < 1:
        raise ValueError(f"records must be >= 1, got {records}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    labels = long_tail_labels(dataset, seed, records, classes, class_ratio)
    splits = stratified_splits(dataset, seed, labels)
    return [
        RecordPlan(
            index=i,
            id=record_id(i, records),
            label=int(labels[i]),
            split=splits[i],
            missing=draw_missing(record_rng(dataset, seed, i, "plan"), missing_fraction),
            given=(
                mislabel(dataset, seed, i, int(labels[i]), classes, label_noise)
                if label_noise and splits[i] in NOISY_SPLITS
                else None
            ),
        )
        for i in range(records)
    ]


def split_pools(dataset: str, seed: int, source_labels: Sequence[int]) -> dict[str, dict[int, np.ndarray]]:
    """Indices of a labelled source collection (e.g. sklearn's digits) dealt per class into disjoint train / val /
    test pools, so a test record never shows a source item a training record shows (no leak through duplicates)."""
    return deal_by_class(rng_for(dataset, seed, _PURPOSE_POOLS), source_labels)
