"""Statistics for honest comparisons over seeds: mean ± std, Student-t intervals, the paired bootstrap and
McNemar's exact test over the same test records, and the fusion gain over the best single modality.

Pure Python + NumPy (SciPy is only a dev dependency): the t quantile is found from the regularised incomplete
beta function, so compare and the report need nothing beyond the runtime packages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n-1) and the two-sided t-interval of the mean over n repeats."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        """'0.712 ± 0.015 [0.675, 0.749] (n=3)'; one repeat has no spread: '0.712 (n=1)'."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return (
            f"{self.mean:.{digits}f} ± {self.std:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] "
            f"(n={self.n})"
        )


@dataclass(frozen=True)
class Difference:
    """An estimate of a − b with its interval and p-value (nan where the test does not give one)."""

    estimate: float
    low: float
    high: float
    p_value: float = float("nan")

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def _betacf(a: float, b: float, x: float, max_iter: int = 300, eps: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided p-value of k successes in n trials against rate p
    (I_p(k, n - k + 1), the regularised incomplete beta)."""
    if not 0 <= k <= n:
        raise ValueError(f"binomial_upper_tail needs 0 <= k <= n, got k={k}, n={n}")
    if k == 0 or p >= 1.0:
        return 1.0
    if p <= 0.0:
        return 0.0
    return betainc(float(k), float(n - k + 1), p)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf, to 1e-12)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
        if high - low < 1e-12:
            break
    return 0.5 * (low + high)


def summarise(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean ± sample std and the t-interval mean ± t_{(1+c)/2, n-1}·std/√n; with n=1 the interval is the value."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise ValueError("summarise needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, float("nan"), mean, mean)
    std = float(x.std(ddof=1))
    half = t_quantile((1.0 + confidence) / 2.0, x.size - 1) * std / math.sqrt(x.size)
    return Summary(int(x.size), mean, std, mean - half, mean + half)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """mean(a) − mean(b) with Welch's t-interval (unequal variances, Welch–Satterthwaite df): e.g. the fusion
    gain over the best single modality across seeds. Needs two repeats on each side for an interval."""
    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    estimate = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Difference(estimate, float("nan"), float("nan"))
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0.0:
        return Difference(estimate, estimate, estimate, 0.0 if estimate else 1.0)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = t_quantile((1.0 + confidence) / 2.0, df) * se
    p = 2.0 * (1.0 - t_cdf(abs(estimate) / se, df))
    return Difference(estimate, estimate - half, estimate + half, p)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int, seed: int, confidence: float = 0.95
) -> Difference:
    """mean(a − b) over the same records, with the percentile interval of `resamples` bootstrap resamples of
    the records (seeded: reruns give the same interval) and the two-sided bootstrap p-value
    2·min(P*(d ≤ 0), P*(d ≥ 0)). a, b: per-record scores (e.g. 1 correct / 0 wrong, averaged over seeds)."""
    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"paired_bootstrap needs the same non-empty records on both sides, got {x.size} and {y.size}")
    d = x - y
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    p = min(1.0, 2.0 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return Difference(float(d.mean()), float(low), float(high), p)


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """McNemar's exact test on paired right/wrong outcomes: (b01, b10, p) where b01 counts records only b got
    right, b10 those only a got right, and p = min(1, 2·P(X ≤ min(b01, b10))) for X ~ Binomial(b01+b10, ½)."""
    a, b = np.asarray(list(a_correct), dtype=bool), np.asarray(list(b_correct), dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar_exact needs the same records on both sides, got {a.size} and {b.size}")
    only_b, only_a = int((~a & b).sum()), int((a & ~b).sum())
    n = only_a + only_b
    if n == 0:
        return only_b, only_a, 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return only_b, only_a, min(1.0, 2.0 * tail)
