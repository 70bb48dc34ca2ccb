"""Seeded random streams: one independent generator per (seed, purpose, record, stream), so records are
planned and rendered order-free; plus draws in closed config ranges."""

from __future__ import annotations

import numpy as np

# SeedSequence spawn keys are fixed-length triples (purpose, index, stream): numpy pads
# short keys with zeros when mixing, so keys of different lengths could collide.
_PURPOSE_RECORD, _PURPOSE_LABELS, _PURPOSE_SPLITS = 0, 1, 2
_STREAM_PLAN, _STREAM_IMAGE, _STREAM_AUDIO, _STREAM_TEXT, _STREAM_LABEL = 0, 1, 2, 3, 4


def _rng(seed: int, purpose: int, index: int = 0, stream: int = 0) -> np.random.Generator:
    """Independent generator for (seed, purpose, index, stream): order-free and parallel-safe."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(purpose, index, stream)))


def _uniform(rng: np.random.Generator, bounds) -> float:
    """Uniform float in the closed config range [lo, hi]."""
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _randint(rng: np.random.Generator, bounds) -> int:
    """Uniform integer in the closed config range [lo, hi]."""
    lo, hi = bounds
    return int(rng.integers(lo, hi + 1))
