"""The fit's pictures: one fit drawn over a range wider than its data, a grid of fits, the tour.

    figure = fit_picture(fit)                    # target, points, both curves, extrapolation shaded
    figure = grid_picture(fits, titles, columns)  # one small panel per fit (--vary, the tour)

Scratch is drawn as a solid blue line, torch as an orange dashed one on top of it (two curves that
agree look like one dashed blue-orange line); the target in grey, the points as black dots.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from benchmark.fit.training import Fit
from benchmark.report.plots import COLORS, LINESTYLES, plt


def draw_fit(axis, fit: Fit, small: bool = False) -> None:
    """One fit on `axis`: the outside of the training interval shaded, the target, the points, both
    sides' curves, and a ReLU network's first-layer breakpoints (-b/w) as ticks on the x axis."""
    points, grid = fit.points, fit.grid
    axis.axvspan(grid[0], points.low, color="0.9", zorder=0)
    axis.axvspan(points.high, grid[-1], color="0.9", zorder=0, label=None if small else "extrapolation")
    if points.target is not None:
        axis.plot(grid, points.target(grid), color="0.55", linewidth=1.0, label="target")
    axis.plot(points.x[:, 0], points.y[:, 0], "k.", markersize=3 if small else 5, label="training points")
    for side in ("scratch", "torch"):
        axis.plot(grid, fit.curves[side], color=COLORS[side], linestyle=LINESTYLES[side] if side == "torch" else "-",
                  linewidth=1.4 if small else 2.0, label=f"{side} (loss {fit.final_losses[side]:.3g})")
    breakpoints = fit.breakpoints()
    if breakpoints is not None:
        shown = breakpoints[(breakpoints >= grid[0]) & (breakpoints <= grid[-1])]
        axis.plot(shown, np.full(len(shown), 0.0), "|", color="tab:red", markersize=8 if small else 14,
                  transform=axis.get_xaxis_transform(), label=None if small else "ReLU breakpoints -b/w")
    curve = fit.curves["scratch"][np.isfinite(fit.curves["scratch"])]
    values = np.concatenate([points.y[:, 0].astype(np.float64), curve])
    span = float(np.ptp(points.y)) or 1.0  # a curve far off the points is cut one span beyond them
    low, high = max(values.min(), points.y.min() - span), min(values.max(), points.y.max() + span)
    axis.set_ylim(low - 0.1 * span, high + 0.1 * span)
    axis.set_xlim(grid[0], grid[-1])


def fit_picture(fit: Fit) -> Figure:
    """The fit alone, with its legend and a title naming the network and the breakpoints."""
    figure, axis = plt.subplots(figsize=(9, 5))
    draw_fit(axis, fit)
    title = f"{fit.points.name}: {fit.points.formula}, fitted by {network_words(fit)}"
    inside = fit.breakpoints_inside()
    if inside is not None:
        title += f"\n{inside} breakpoints inside [{fit.points.low:g}, {fit.points.high:g}] for {fit.neurons()} neurons"
    axis.set(title=title, xlabel="x", ylabel="y")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def grid_picture(fits: list[Fit], titles: list[str], columns: int = 3, captions: list[str] | None = None) -> Figure:
    """A panel per fit, titled; with `captions`, each panel's one-line caption below it."""
    rows = -(-len(fits) // columns)
    height = 3.3 if captions else 2.8
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, height * rows), squeeze=False)
    for axis, fit, title, index in zip(axes.flat, fits, titles, range(len(fits))):
        draw_fit(axis, fit, small=True)
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=7)
        if captions:
            axis.text(0.5, -0.13, captions[index], transform=axis.transAxes, ha="center", va="top", fontsize=7.5,
                      wrap=True)
    for axis in list(axes.flat)[len(fits):]:
        axis.set_visible(False)
    handles = [plt.Line2D([], [], color=COLORS["scratch"], linewidth=2, label="scratch"),
               plt.Line2D([], [], color=COLORS["torch"], linestyle="--", linewidth=2, label="torch"),
               plt.Line2D([], [], color="0.55", label="target"),
               plt.Line2D([], [], color="k", marker=".", linestyle="", label="training points"),
               plt.Line2D([], [], color="tab:red", marker="|", linestyle="", markersize=10, label="ReLU breakpoint"),
               plt.Rectangle((0, 0), 1, 1, color="0.9", label="extrapolation")]
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (height * rows)), h_pad=2.4 if captions else 1.0)
    return figure


def network_words(fit: Fit) -> str:
    """`20:tanh,1`; a network of linear layers only, `5,1 (no activation)`; else the layer types."""
    from scratch_nn.spec.notation import layers_text

    layers = fit.spec.model.layers
    if all(layer.type == "linear" for layer in layers):
        return ",".join(str(layer.out_features) for layer in layers) + " (no activation)"
    return layers_text(fit.spec.model)


def loss_picture(fit: Fit) -> Figure:
    """The training loss of every step, both sides (log scale when every loss is positive)."""
    figure, axis = plt.subplots(figsize=(9, 3.5))
    for side in ("scratch", "torch"):
        axis.plot(fit.losses[side], color=COLORS[side], linestyle=LINESTYLES[side] if side == "torch" else "-",
                  linewidth=1.2, label=side)
    losses = np.asarray(fit.losses["scratch"] + fit.losses["torch"])
    if len(losses) and np.all(losses > 0):
        axis.set_yscale("log")
    axis.set(xlabel="step", ylabel=f"training loss ({fit.spec.model.loss})", title="Loss per step, both sides")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    return figure
