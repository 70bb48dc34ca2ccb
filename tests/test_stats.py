"""fusion/tracking/stats.py against values computed by hand (closed forms of Student's t, binomial sums)."""

import math

import pytest

from fusion.tracking.stats import (
    binomial_upper_tail,
    mcnemar_exact,
    paired_bootstrap,
    summarise,
    t_cdf,
    t_quantile,
    welch_difference,
)

T975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # df=2 closed form: (2p-1)·sqrt(2 / (4p(1-p))) = 4.3027
T975_DF1 = math.tan(math.pi * 0.475)  # df=1 is Cauchy: tan(pi (p - 1/2)) = 12.706


def test_t_quantile_matches_the_closed_forms():
    assert t_quantile(0.975, 2) == pytest.approx(T975_DF2, abs=1e-9)
    assert t_quantile(0.975, 1) == pytest.approx(T975_DF1, abs=1e-8)
    assert t_quantile(0.025, 2) == pytest.approx(-T975_DF2, abs=1e-9)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)  # the normal limit
    assert t_cdf(0.0, 5) == pytest.approx(0.5)


def test_summary_of_three_seeds_by_hand():
    s = summarise([0.70, 0.72, 0.74])
    half = T975_DF2 * 0.02 / math.sqrt(3)  # std = sqrt((0.02² + 0 + 0.02²) / 2) = 0.02
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.72), pytest.approx(0.02))
    assert (s.low, s.high) == (pytest.approx(0.72 - half), pytest.approx(0.72 + half))
    assert s.text() == "0.720 ± 0.020 [0.670, 0.770] (n=3)"
    single = summarise([0.5])
    assert (single.n, single.low, single.high) == (1, 0.5, 0.5) and single.text() == "0.500 (n=1)"


def test_welch_difference_by_hand():
    d = welch_difference([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    # var(a)/3 = 1/3, var(b) = 0: df = (1/3)² / ((1/3)² / 2) = 2, se = sqrt(1/3)
    half = T975_DF2 * math.sqrt(1 / 3)
    assert d.estimate == pytest.approx(1.0)
    assert (d.low, d.high) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert not d.significant  # the interval [-1.48, 3.48] holds 0
    assert math.isnan(welch_difference([1.0], [0.0, 1.0]).low)


def test_binomial_upper_tail_by_hand():
    """P(X >= k), X ~ Binomial(n, p), against the sum of its terms (and the edges)."""
    for k, n, p in ((3, 10, 0.1), (20, 211, 0.1), (7, 8, 0.5), (1, 1, 0.3), (40, 60, 0.7)):
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_upper_tail(k, n, p) == pytest.approx(exact, rel=1e-9)
    assert binomial_upper_tail(0, 5, 0.2) == 1.0 and binomial_upper_tail(5, 5, 1.0) == 1.0
    assert binomial_upper_tail(1, 5, 0.0) == 0.0
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_upper_tail(6, 5, 0.5)


def test_mcnemar_exact_by_hand():
    a = [1, 1, 1, 1, 1, 0, 1, 0]
    b = [0, 0, 0, 0, 1, 1, 1, 0]
    # only a right: 4 records, only b right: 1; p = 2 · P(X <= 1), X ~ Bin(5, 1/2) = 2 · (1 + 5) / 32
    assert mcnemar_exact(a, b) == (1, 4, pytest.approx(12 / 32))
    assert mcnemar_exact([1, 0], [1, 0]) == (0, 0, 1.0)
    only_a = [1] * 10
    assert mcnemar_exact(only_a, [0] * 10)[2] == pytest.approx(2 / 2**10)


def test_paired_bootstrap_by_hand():
    same = paired_bootstrap([1, 0, 1], [1, 0, 1], resamples=200, seed=0)
    assert (same.estimate, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    better = paired_bootstrap([1, 1, 1], [0, 0, 0], resamples=200, seed=0)
    assert (better.low, better.high, better.p_value, better.significant) == (1.0, 1.0, 0.0, True)
    # Two records with differences 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the
    # 95% percentile interval is [0, 1] and p = 2 · min(P(d <= 0), P(d >= 0)) = 2 · 1/4.
    two = paired_bootstrap([1, 1], [1, 0], resamples=20000, seed=1)
    assert (two.estimate, two.low, two.high) == (0.5, 0.0, 1.0)
    assert two.p_value == pytest.approx(0.5, abs=0.03)
    assert paired_bootstrap([1, 1], [1, 0], resamples=500, seed=3) == paired_bootstrap([1, 1], [1, 0], 500, 3)
    with pytest.raises(ValueError, match="same non-empty records"):
        paired_bootstrap([1, 0], [1], resamples=10, seed=0)
