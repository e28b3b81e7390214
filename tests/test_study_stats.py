"""The study's statistics against SciPy computed independently, on known paired samples.

Each expected value is computed here from the formula with scipy.stats' t quantiles and the
paired t-test (ttest_rel), not by calling the module under test, so a wrong degree of freedom, a
population instead of a sample deviation, or a swapped one-sided alternative fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.study import stats as study_stats

# Test accuracies (%) of ten seeds, scratch and torch of the same seed side by side.
SCRATCH = np.array([98.41, 98.47, 98.35, 98.50, 98.44, 98.39, 98.52, 98.30, 98.45, 98.43])
TORCH = np.array([98.44, 98.40, 98.38, 98.46, 98.47, 98.41, 98.49, 98.36, 98.42, 98.40])


def expected_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    n = len(values)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean() - half, values.mean() + half


def test_describe_is_the_t_interval_of_the_mean():
    spread = study_stats.describe(SCRATCH)
    low, high = expected_interval(SCRATCH, 0.95)
    assert spread.n == 10
    assert spread.mean == pytest.approx(98.426, abs=1e-12)
    assert spread.std == pytest.approx(np.sqrt(np.sum((SCRATCH - SCRATCH.mean()) ** 2) / 9), rel=1e-12)
    assert (spread.low, spread.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_paired_difference_matches_scipys_paired_t_test():
    statistics = study_stats.compare({"scratch": SCRATCH, "torch": TORCH}, {"scratch": SCRATCH, "torch": TORCH},
                                     margin=0.2)
    difference = SCRATCH - TORCH
    low, high = expected_interval(difference, 0.95)
    assert statistics.accuracy_difference.mean == pytest.approx(difference.mean(), abs=1e-12)
    assert statistics.accuracy_difference.low == pytest.approx(low, rel=1e-9)
    assert statistics.accuracy_difference.high == pytest.approx(high, rel=1e-9)
    assert statistics.difference_p_value == pytest.approx(stats.ttest_rel(SCRATCH, TORCH).pvalue, rel=1e-12)
    assert statistics.mean_abs_difference == pytest.approx(np.abs(difference).mean(), rel=1e-12)


@pytest.mark.parametrize("margin", [0.02, 0.05, 0.2])
def test_equivalence_is_two_one_sided_t_tests(margin):
    difference = SCRATCH - TORCH
    n, standard_error = len(difference), difference.std(ddof=1) / math.sqrt(len(difference))
    p_lower = stats.t.sf((difference.mean() + margin) / standard_error, n - 1)  # H0: mean <= -margin
    p_upper = stats.t.cdf((difference.mean() - margin) / standard_error, n - 1)  # H0: mean >= +margin
    test = study_stats.equivalence(difference, margin)
    assert test.p_lower == pytest.approx(p_lower, rel=1e-9)
    assert test.p_upper == pytest.approx(p_upper, rel=1e-9)
    assert test.p_value == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    low, high = expected_interval(difference, 0.90)  # TOST at 0.05 <-> the 90% CI inside the margin
    assert test.equivalent == (-margin < low and high < margin)


def test_a_clear_offset_is_not_equivalent_and_is_a_difference():
    offset = SCRATCH - TORCH + 0.3  # every seed: scratch ahead by about 0.3 pp
    statistics = study_stats.compare({"scratch": SCRATCH + 0.3, "torch": TORCH},
                                     {"scratch": SCRATCH, "torch": TORCH}, margin=0.2)
    assert not statistics.equivalence.equivalent and statistics.equivalence.p_value > 0.5
    assert statistics.difference_p_value == pytest.approx(stats.ttest_1samp(offset, 0).pvalue, rel=1e-12)
    assert study_stats.difference_text(statistics).startswith("scratch is higher")
    assert study_stats.equivalence_text(statistics.equivalence).startswith("not shown equivalent within ±0.2 pp")


def test_small_differences_read_as_equivalent_and_within_the_seed_spread():
    statistics = study_stats.compare({"scratch": SCRATCH, "torch": TORCH}, {"scratch": SCRATCH, "torch": TORCH},
                                     margin=0.2)
    assert statistics.equivalence.equivalent
    assert study_stats.equivalence_text(statistics.equivalence).startswith("equivalent within ±0.2 pp (p ")
    assert study_stats.difference_text(statistics).startswith("no difference shown")
    pairs = [abs(a - b) for i, a in enumerate(SCRATCH) for b in SCRATCH[i + 1:]]
    assert statistics.seed_to_seed["scratch"] == pytest.approx(np.mean(pairs), rel=1e-12)
    assert statistics.mean_abs_difference < np.mean(pairs)
    assert study_stats.spread_text(statistics).startswith("the sides differ less than two seeds of the same side do")


def test_identical_sides_in_every_seed():
    """float64 runs: the same predictions in every seed, differences all zero (t undefined)."""
    statistics = study_stats.compare({"scratch": SCRATCH, "torch": SCRATCH}, {"scratch": TORCH, "torch": TORCH},
                                     margin=0.2)
    assert statistics.accuracy_difference == study_stats.Spread(10, 0.0, 0.0, 0.0, 0.0)
    assert statistics.equivalence.equivalent and statistics.equivalence.p_value == 0.0
    assert statistics.difference_p_value == 1.0
    constant = study_stats.equivalence(np.full(5, 0.5), margin=0.2)  # always 0.5 pp apart: outside the margin
    assert not constant.equivalent and constant.p_value == 1.0


def test_fewer_than_two_seeds_give_no_interval():
    assert math.isnan(study_stats.describe([98.4]).low) and study_stats.describe([98.4]).mean == 98.4
    assert study_stats.describe([]).n == 0
    test = study_stats.equivalence([0.01], margin=0.2)
    assert not test.equivalent and math.isnan(test.p_value)
    assert "fewer than 2 seeds" in study_stats.equivalence_text(test)
