"""Standardisation statistics that are the same on every machine: exactly rounded sums, fixed precision.

`math.fsum` does not depend on the order or the SIMD width of a summation (numpy's and torch's reductions do, and
a parallel torch reduction depends on the thread count), and rounding to a fixed number of significant digits
keeps meta.json byte-identical when inputs differ in their last bits."""

from __future__ import annotations

import math

import numpy as np

MIN_STD = 1e-6  # a constant input is divided by this instead of zero


def exact_mean_std(values: np.ndarray, digits: int) -> tuple[float, float]:
    """Mean and (n-1) standard deviation of all values, rounded to `digits` significant digits."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = math.fsum(values) / max(values.size, 1)
    var = math.fsum((values - mean) ** 2) / max(values.size - 1, 1)
    return significant(mean, digits), max(significant(math.sqrt(var), digits), MIN_STD)


def significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")
