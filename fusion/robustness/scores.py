"""MultiBench's robustness scores (Liang et al., 2021, eval_scripts/robustness.py) of a metric-vs-level curve.

Relative robustness: the area under the curve (trapezoids over the levels as x). Effective robustness: the
summed gap, over the levels, to the reference (late-fusion) curve shifted to start at this curve's clean
value, sum(f - (lf + f[0] - lf[0])). MultiBench min-max normalises both across the methods of a table; these
are the raw values. For a metric that is minimised (task.mode=min, e.g. MAE) the relative area stays the
area of the metric (lower is better) and the effective score is negated, so that higher is better."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def relative_robustness(levels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area under values over levels."""
    x, y = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need one value per level and at least two levels; got {x.size} levels, {y.size} values")
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)))


def effective_robustness(values: Sequence[float], reference: Sequence[float], mode: str = "max") -> float:
    """sum(f - (lf + f[0] - lf[0])) at the same levels; negated for mode `min` so that higher is better."""
    f, lf = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if f.shape != lf.shape or f.size == 0:
        raise ValueError(f"the curve and the reference need the same levels; got {f.size} and {lf.size} values")
    gap = float(np.sum((f - f[0]) - (lf - lf[0])))  # the same sum, exactly 0 for identical curves
    return gap if mode == "max" else 0.0 - gap  # not -gap: identical curves give 0.0, not -0.0
