"""The statistics of `svt study`: is the scratch - torch difference larger than the seed's own spread?

    spread = describe(values)                        # n, mean, standard deviation, 95% CI (t distribution)
    test = equivalence(differences, margin=0.2)      # two one-sided t-tests (TOST) at +-margin
    statistics = compare(accuracy, loss, margin)     # everything the study reports, from per-seed values

Each seed gives a *pair* of results: both sides trained from the same initial weights on the same
batches. The paired differences d_i = scratch_i - torch_i remove what the seed does to both sides
alike, so their mean and its confidence interval answer "do the implementations differ?" far more
sharply than two separate intervals would.

Every quantile and p-value comes from SciPy (`scipy.stats.t.interval`, `scipy.stats.ttest_1samp`),
none is written by hand. Equivalence (Schuirmann's TOST): the two null hypotheses mean <= -margin
and mean >= +margin are each tested one-sided; the larger p-value is the test's p-value, and the
difference is shown equivalent within +-margin when it is below alpha (0.05). That is the same
as the 90% confidence interval of the mean difference lying inside (-margin, +margin).

When every difference is the same number (float64 runs: identical predictions in every seed), the
t statistic is undefined (zero spread); the interval is then that one point, and the verdict
follows from whether the point lies inside the margin, with p reported as 0 or 1.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # the equivalence test's level: TOST at 0.05 <-> a 90% interval inside the margin


@dataclass(frozen=True)
class Spread:
    """n values: their mean, sample standard deviation (ddof=1) and 95% confidence interval of the mean."""

    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided t-tests of the mean difference against -margin and +margin."""

    margin: float
    p_lower: float      # H0: mean <= -margin
    p_upper: float      # H0: mean >= +margin
    p_value: float      # max of the two
    equivalent: bool    # p_value < ALPHA


@dataclass(frozen=True)
class StudyStatistics:
    """What a study reports, over the seeds that finished (accuracies in percent, losses as they are)."""

    accuracy: dict[str, Spread]        # side -> spread of test accuracy (%)
    loss: dict[str, Spread]            # side -> spread of test loss
    accuracy_difference: Spread        # scratch - torch per seed, in percentage points
    loss_difference: Spread
    difference_p_value: float          # paired t-test, H0: mean difference = 0 (accuracy)
    equivalence: Equivalence           # accuracy difference against +-margin pp
    mean_abs_difference: float         # mean over seeds of |scratch_i - torch_i| (pp)
    seed_to_seed: dict[str, float]     # side -> mean |a_i - a_j| over pairs of seeds i < j (pp)


def describe(values) -> Spread:
    """Mean, standard deviation and the t-distribution 95% interval of the mean of `values`."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    std = float(values.std(ddof=1))
    if std == 0.0:
        return Spread(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Spread(n, mean, std, float(low), float(high))


def equivalence(differences, margin: float) -> Equivalence:
    """TOST of the mean of `differences` against the interval (-margin, +margin)."""
    differences = np.asarray(differences, dtype=np.float64)
    if len(differences) < 2:
        return Equivalence(margin, math.nan, math.nan, math.nan, False)
    if np.all(differences == differences[0]):  # zero spread: t undefined, the mean is exact
        inside = -margin < differences[0] < margin
        p_value = 0.0 if inside else 1.0
        return Equivalence(margin, p_value, p_value, p_value, inside)
    p_lower = float(stats.ttest_1samp(differences, -margin, alternative="greater").pvalue)
    p_upper = float(stats.ttest_1samp(differences, margin, alternative="less").pvalue)
    p_value = max(p_lower, p_upper)
    return Equivalence(margin, p_lower, p_upper, p_value, p_value < ALPHA)


def difference_p_value(differences) -> float:
    """Two-sided paired t-test of mean difference = 0 (as scipy.stats.ttest_rel on the pairs)."""
    differences = np.asarray(differences, dtype=np.float64)
    if len(differences) < 2:
        return math.nan
    if np.all(differences == differences[0]):
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def mean_pairwise_distance(values) -> float:
    """Mean |a_i - a_j| over all pairs i < j: how far apart two seeds of one side typically land."""
    pairs = list(itertools.combinations(np.asarray(values, dtype=np.float64), 2))
    return float(np.mean([abs(a - b) for a, b in pairs])) if pairs else math.nan


def compare(accuracy: dict[str, list[float]], loss: dict[str, list[float]], margin: float) -> StudyStatistics:
    """The study's statistics from per-seed values, seeds in the same order on both sides.

    `accuracy[side]` are test accuracies in percent, `loss[side]` test losses; `margin` in percentage
    points of accuracy.
    """
    accuracy_difference = np.subtract(accuracy["scratch"], accuracy["torch"])
    loss_difference = np.subtract(loss["scratch"], loss["torch"])
    return StudyStatistics(
        accuracy={side: describe(values) for side, values in accuracy.items()},
        loss={side: describe(values) for side, values in loss.items()},
        accuracy_difference=describe(accuracy_difference),
        loss_difference=describe(loss_difference),
        difference_p_value=difference_p_value(accuracy_difference),
        equivalence=equivalence(accuracy_difference, margin),
        mean_abs_difference=float(np.mean(np.abs(accuracy_difference))) if len(accuracy_difference) else math.nan,
        seed_to_seed={side: mean_pairwise_distance(values) for side, values in accuracy.items()},
    )


def p_text(p_value: float) -> str:
    """p as people write it: 'p = 0.031', 'p < 0.001'."""
    if math.isnan(p_value):
        return "p undefined"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def equivalence_text(test: Equivalence) -> str:
    """'equivalent within ±0.2 pp (p = 0.004)' or 'not shown equivalent within ±0.2 pp (p = 0.31)'."""
    if math.isnan(test.p_value):
        return f"not shown equivalent within ±{test.margin:g} pp (fewer than 2 seeds)"
    words = "equivalent" if test.equivalent else "not shown equivalent"
    return f"{words} within ±{test.margin:g} pp ({p_text(test.p_value)})"


def difference_text(statistics: StudyStatistics) -> str:
    """Whether the mean paired difference is distinguishable from zero, in words."""
    spread = statistics.accuracy_difference
    if spread.n < 2:
        return "one seed: no interval"
    interval = f"95% CI {spread.low:+.3f} to {spread.high:+.3f} pp"
    if spread.low <= 0.0 <= spread.high:
        return f"no difference shown ({interval} contains 0; {p_text(statistics.difference_p_value)})"
    higher = "higher" if spread.mean > 0 else "lower"
    return f"scratch is {higher} ({interval}; {p_text(statistics.difference_p_value)}, paired t-test)"


def spread_text(statistics: StudyStatistics) -> str:
    """The scratch-torch difference against how far apart two seeds of the same side land:
    mean |scratch_i - torch_i| against the mean |a_i - a_j| of the sides' seed pairs."""
    same_side = [value for value in statistics.seed_to_seed.values() if not math.isnan(value)]
    if not same_side:
        return "one seed: no seed-to-seed spread"
    typical = float(np.mean(same_side))
    comparison = "less" if statistics.mean_abs_difference < typical else "more"
    return (f"the sides differ {comparison} than two seeds of the same side do "
            f"({statistics.mean_abs_difference:.3f} vs {typical:.3f} pp)")
