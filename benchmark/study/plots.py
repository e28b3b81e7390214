"""The study's figures: one function per plot, each taking plain tables and returning a Figure or None.

Colours follow `benchmark.report.plots`: scratch blue, torch orange. Accuracies are in percent.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.plots import COLORS, MARKERS, plt
from benchmark.study.stats import Spread

SIDES = ("scratch", "torch")


def per_seed(accuracy: pd.DataFrame) -> Figure | None:
    """Each seed's test accuracy on both sides, joined by a line per seed: lines that slope the same
    way in every seed mean a real difference; lines that cross every which way mean the seed's noise.

    `accuracy`: one row per seed, columns seed, scratch, torch (percent)."""
    if accuracy.empty:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for row in accuracy.itertuples(index=False):
        axis.plot([0, 1], [row.scratch, row.torch], color="gray", alpha=0.6, linewidth=1)
        axis.annotate(f"seed {row.seed}", (1, row.torch), xytext=(6, 0), textcoords="offset points",
                      fontsize=7, va="center", color="dimgray")
    for position, side in enumerate(SIDES):
        axis.scatter(np.full(len(accuracy), position), accuracy[side], color=COLORS[side], marker=MARKERS[side],
                     s=40, zorder=3, label=side)
    axis.set_xticks([0, 1], SIDES)
    axis.set_xlim(-0.3, 1.45)
    axis.set(ylabel="test accuracy (%)", title="Test accuracy per seed, both sides")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def differences(values: np.ndarray, spread: Spread, margin: float) -> Figure | None:
    """The paired differences scratch - torch (pp) per seed as dots over their histogram, their mean
    with its 95% CI, zero, and the equivalence margin."""
    if len(values) == 0:
        return None
    figure, axis = plt.subplots(figsize=(9, 3.6))
    axis.axvspan(-margin, margin, color="tab:green", alpha=0.08, label=f"margin ±{margin:g} pp")
    for edge in (-margin, margin):
        axis.axvline(edge, color="tab:green", linestyle="--", linewidth=1)
    axis.axvline(0, color="black", linewidth=0.8)
    extent = max(margin, float(np.max(np.abs(values)))) * 1.3
    axis.hist(values, bins=np.linspace(-extent, extent, 27), color="lightgray", edgecolor="gray")
    axis.yaxis.get_major_locator().set_params(integer=True)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(values))  # fixed: the same picture every time
    height = axis.get_ylim()[1]
    axis.scatter(values, height * (0.5 + jitter), color="black", s=18, zorder=3, label="one seed")
    if spread.n >= 2:
        axis.axvspan(spread.low, spread.high, ymin=0.85, ymax=0.95, color="tab:purple", alpha=0.5,
                     label="95% CI of the mean")
        axis.axvline(spread.mean, color="tab:purple", linewidth=2, label=f"mean {spread.mean:+.3f} pp")
    axis.set_xlim(-extent, extent)
    axis.set(xlabel="test accuracy, scratch - torch (pp)", ylabel="seeds",
             title="Paired differences per seed, their mean and 95% CI, and the margin")
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def epoch_bands(epochs: pd.DataFrame) -> Figure | None:
    """Test accuracy per epoch per side over the seeds: the mean, a band of +-1 standard deviation
    and, fainter, the range from the lowest seed to the highest.

    `epochs`: one row per seed, epoch and side, with test_accuracy (percent)."""
    if epochs.empty:
        return None
    figure, axis = plt.subplots(figsize=(9, 3.8))
    for side in SIDES:
        rows = epochs[epochs["side"] == side]
        if rows.empty:
            continue
        by_epoch = rows.groupby("epoch")["test_accuracy"]
        mean, std = by_epoch.mean(), by_epoch.std(ddof=1).fillna(0.0)
        low, high = by_epoch.min(), by_epoch.max()
        axis.fill_between(mean.index, low, high, color=COLORS[side], alpha=0.10)
        axis.fill_between(mean.index, mean - std, mean + std, color=COLORS[side], alpha=0.25)
        axis.plot(mean.index, mean, color=COLORS[side], marker=MARKERS[side], label=f"{side} (mean, ±1 sd, range)")
    axis.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy per epoch over the seeds")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
