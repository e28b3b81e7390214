"""The report's figures: one function per plot, each taking plain tables or arrays and returning a
matplotlib Figure, or None when there is nothing to draw (a run stopped before that data existed).

The functions only draw; `benchmark.report.writer` computes the metrics, saves the PNGs and closes every
figure. Colours are fixed per side so every plot reads the same way: scratch blue, torch orange.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: files only, before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLORS = {"scratch": "tab:blue", "torch": "tab:orange"}
MARKERS = {"scratch": "o", "torch": "x"}  # identical curves overlap: the markers still show both
LINESTYLES = {"scratch": "-", "torch": "--"}  # for plots where colour already means something else
ALL_PARAMETERS = "all parameters as one vector (drift.csv: all)"


def _style(table: dict, side: str):
    """A side's colour, marker or line style: the side compared with torch is drawn as scratch is,
    whatever its name (`svt run --model` names it after the learner's file)."""
    return table.get(side, table["scratch"])


def _finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows whose `column` is a finite number (diverged runs log nan/inf losses)."""
    values = pd.to_numeric(frame[column], errors="coerce")
    return frame[np.isfinite(values)]


def _by_side(frame: pd.DataFrame, order: str):
    """(side, rows sorted by `order`) with torch last, so legends always read the same way."""
    for side in sorted(set(frame["side"]), key=lambda side: (side == "torch", str(side))):
        yield side, frame[frame["side"] == side].sort_values(order, kind="stable")


def _log_if_positive(axis, values) -> None:
    """Log y-scale when every value is > 0 (losses, norms, errors span decades)."""
    if len(values) and np.all(np.asarray(values, dtype=float) > 0):
        axis.set_yscale("log")


def loss_steps(steps: pd.DataFrame) -> Figure | None:
    """Training loss of every step, both sides overlaid: raw (thin) and an exponential moving average;
    a red line marks the first step whose loss was not finite (divergence)."""
    diverged = steps.loc[~np.isfinite(pd.to_numeric(steps["loss"], errors="coerce")), "step"]
    steps = _finite(steps, "loss")
    if steps.empty:
        return None
    figure, axis = plt.subplots(figsize=(10, 4))
    if len(diverged):
        axis.axvline(diverged.min(), color="tab:red", linewidth=1.5,
                     label=f"loss not finite (step {diverged.min()})")
    span = max(5, steps["step"].nunique() // 50)  # the average reaches back ~1/50 of the run
    for side, rows in _by_side(steps, "step"):
        color = _style(COLORS, side)
        axis.plot(rows["step"], rows["loss"], color=color, linewidth=0.5, alpha=0.3)
        smooth = rows["loss"].ewm(span=span).mean()
        axis.plot(rows["step"], smooth, color=color, linestyle=_style(LINESTYLES, side),
                  linewidth=1.6, label=f"{side} (EMA, span {span})")
    _log_if_positive(axis, steps["loss"])
    axis.set(xlabel="step", ylabel="training loss", title="Loss per step (raw and smoothed)")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    return figure


def epochs(per_epoch: pd.DataFrame) -> Figure | None:
    """Loss and accuracy per epoch, train (solid) and test (dashed), both sides."""
    if per_epoch.empty:
        return None
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for side, rows in _by_side(per_epoch, "epoch"):
        color = _style(COLORS, side)
        for split, style in (("train", "-"), ("test", "--")):
            for axis, column in ((loss_axis, f"{split}_loss"), (accuracy_axis, f"{split}_accuracy")):
                axis.plot(rows["epoch"], rows[column], style, marker=_style(MARKERS, side), markersize=5,
                          color=color, label=f"{side} {split}")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per epoch")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _annotate(axis, matrix: np.ndarray, skip_zero: bool) -> None:
    for (row, column), value in np.ndenumerate(matrix):
        if value or not skip_zero:
            axis.text(column, row, f"{value:d}", ha="center", va="center", fontsize=6.5)


def confusion(matrices: dict[str, np.ndarray]) -> Figure | None:
    """Each side's confusion matrix (row = true, column = predicted; log colour so the rare mistakes
    show), and the difference scratch - torch (first side - second) when both exist."""
    if not matrices:
        return None
    panels = list(matrices.items())
    if len(matrices) == 2:
        first, second = matrices
        panels.append((f"{first} - {second}", matrices[first] - matrices[second]))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4.4), squeeze=False)
    for index, (axis, (title, matrix)) in enumerate(zip(axes[0], panels)):
        if index == 2:  # the difference
            limit = max(1, int(np.abs(matrix).max()))
            image = axis.imshow(matrix, cmap="RdBu_r", norm=TwoSlopeNorm(0, -limit, limit))
        else:
            image = axis.imshow(np.ma.masked_equal(matrix, 0), cmap="Blues",
                                norm=LogNorm(1, max(2, matrix.max())))
        _annotate(axis, matrix, skip_zero=True)
        figure.colorbar(image, ax=axis, shrink=0.75)
        axis.set(title=title, xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10))
    figure.tight_layout()
    return figure


def grad_norms(layers: pd.DataFrame) -> Figure | None:
    """Gradient norm of every weight over training, log scale: vanishing gradients show as lines
    far below the others, exploding ones as lines that climb. Colour = depth, line style = side."""
    rows = _finite(layers[layers["parameter"].astype(str).str.endswith("weight")], "grad_norm")
    if rows.empty:
        return None
    parameters = list(dict.fromkeys(rows["parameter"]))  # in order of appearance = depth
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(parameters)))
    figure, axis = plt.subplots(figsize=(10, 4.2))
    for (parameter, side), group in rows.sort_values("step").groupby(["parameter", "side"], sort=False):
        axis.plot(group["step"], group["grad_norm"], color=colors[parameters.index(parameter)],
                  linestyle=_style(LINESTYLES, side), linewidth=1.2,
                  label=parameter if side != "torch" else None)
    _log_if_positive(axis, rows["grad_norm"])
    for side, _ in _by_side(rows, "step"):
        axis.plot([], [], "k", linestyle=_style(LINESTYLES, side), label=side)
    axis.set(xlabel="step", ylabel="gradient norm ||dL/dW||", title="Gradient norm per weight")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, ncol=2 if len(parameters) > 8 else 1, loc="center left", bbox_to_anchor=(1, 0.5))
    figure.tight_layout()
    return figure


def parity_drift(parity: pd.DataFrame, drift: pd.DataFrame) -> Figure | None:
    """Left: worst relative gradient error at each check. Right: weight drift ||w_s - w_t|| / ||w_t||
    per weight, and over all parameters as one vector (drift.csv's `all` row). Both log scale."""
    parity, drift = _finite(parity, "rel_error"), _finite(drift, "drift")
    if parity.empty and drift.empty:
        return None
    figure, (parity_axis, drift_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not parity.empty:
        # float32 checks are judged by each side's distance from a float64 reference: plot both (a
        # correct scratch runs along torch's line); float64 has no such columns: scratch vs torch.
        columns = [(column, label, colour) for column, label, colour in (
            ("scratch_vs_f64", "scratch vs f64", "tab:red"), ("torch_vs_f64", "torch vs f64", "tab:blue"))
            if column in parity and parity[column].notna().any()] or [("rel_error", "scratch vs torch", "tab:red")]
        for column, label, colour in columns:
            worst = parity.groupby("step")[column].max()
            parity_axis.plot(worst.index, worst.to_numpy(), marker="o", markersize=3, color=colour, label=label)
            _log_if_positive(parity_axis, worst)
        parity_axis.legend(fontsize=7)
    parity_axis.set(xlabel="step", ylabel="max relative error", title="Gradient parity (worst tensor)")
    if not drift.empty:
        weights = drift[drift["parameter"].astype(str).str.endswith("weight")]
        for parameter, rows in weights.sort_values("step").groupby("parameter", sort=False):
            drift_axis.plot(rows["step"], rows["drift"], linewidth=0.9, alpha=0.7, label=parameter)
        # drift.csv's `all` row: every parameter as one vector (not the largest single tensor's drift)
        together = drift[drift["parameter"] == "all"].sort_values("step")
        drift_axis.plot(together["step"], together["drift"], "k-", linewidth=2, label=ALL_PARAMETERS)
        _log_if_positive(drift_axis, drift["drift"])
        drift_axis.legend(fontsize=7)
    drift_axis.set(xlabel="step", ylabel="relative drift", title="Weight drift, scratch vs torch")
    for axis in (parity_axis, drift_axis):
        axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def units(per_layer: pd.DataFrame) -> Figure | None:
    """Fraction of dead (never positive) and of saturated units per activation layer over training;
    colour = layer, line style = side; a statistic recorded for no layer gets no panel."""
    panels = [(column, title) for column, title in (("dead_fraction", "Dead units"),
                                                    ("saturated_fraction", "Saturated units"))
              if not _finite(per_layer, column).empty]
    if not panels:
        return None
    layers = list(dict.fromkeys(per_layer["layer"]))
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
    figure, axes = plt.subplots(1, len(panels), figsize=(10, 3.6), sharey=True, squeeze=False)
    for axis, (column, title) in zip(axes[0], panels):
        rows = _finite(per_layer, column).sort_values("step")
        for layer, side in ((layer, side) for layer in layers for side in rows["side"].unique()):
            group = rows[(rows["layer"] == layer) & (rows["side"] == side)]
            if group.empty:
                continue
            axis.plot(group["step"], group[column], color=colors[layers.index(layer)],
                      linestyle=_style(LINESTYLES, side), label=f"{layer} ({group['activation'].iloc[0]}) {side}")
        axis.set(xlabel="step", title=title, ylim=(-0.02, 1.02))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction of units")
    figure.tight_layout()
    return figure


def mosaic(tiles: np.ndarray, columns: int) -> np.ndarray:
    """(N, 28, 28) tiles in one image, `columns` across, one nan pixel between them (drawn blank)."""
    count, height, width = tiles.shape
    rows = -(-count // columns)
    canvas = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = row * (height + 1), column * (width + 1)
        canvas[top:top + height, left:left + width] = tile
    return canvas


def first_layer(weights: dict[str, np.ndarray], count: int = 32, columns: int = 8) -> Figure | None:
    """The first `count` units' input weights as 28x28 images, one grid per side (red +, blue -,
    each unit scaled by its own largest |weight|, so the patterns compare and the scale does not).
    A first conv layer's weight (out, in, kH, kW) shows each filter (one per input channel) as a kH x kW image."""
    weights = {side: w for side, w in weights.items() if w is not None and (w.ndim == 2 and w.shape[1] == 784
                                                                          or w.ndim == 4)}
    if not weights:
        return None
    tiles = {side: w.reshape(-1, *w.shape[2:]) if w.ndim == 4 else w.reshape(-1, 28, 28) for side, w in weights.items()}
    shown = min(count, *(len(tile) for tile in tiles.values()))
    columns = min(columns, shown)
    rows = -(-shown // columns)
    figure, axes = plt.subplots(1, len(tiles), figsize=(5 * len(tiles), 5 * rows / columns + 0.5), squeeze=False)
    for axis, (side, stack) in zip(axes[0], tiles.items()):
        scaled = stack[:shown].astype(np.float64)
        scaled /= np.maximum(np.abs(scaled).max(axis=(1, 2), keepdims=True), 1e-12)  # each unit in [-1, 1]
        axis.imshow(mosaic(scaled, columns), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        axis.set_axis_off()
        axis.set_title(f"{side}: {'filters' if weights[side].ndim == 4 else 'units'} 0-{shown - 1}", fontsize=10)
    figure.tight_layout()
    return figure


def feature_maps(maps: dict[str, dict[str, np.ndarray]], columns: int = 8) -> Figure | None:
    """One test digit's feature maps after each conv layer, one row of mosaics per side and layer
    (each channel scaled to its own range, grey: low, black: high)."""
    panels = [(f"{side}: {layer}, {len(planes)} channels", planes) for side, layers in maps.items()
              for layer, planes in layers.items()]
    if not panels:
        return None
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 1.8 * len(panels)), squeeze=False)
    for axis, (title, planes) in zip(axes[:, 0], panels):
        planes = planes.astype(np.float64)
        low, high = planes.min(axis=(1, 2), keepdims=True), planes.max(axis=(1, 2), keepdims=True)
        axis.imshow(mosaic((planes - low) / np.maximum(high - low, 1e-12), min(columns, len(planes))), cmap="gray_r",
                    vmin=0, vmax=1, interpolation="nearest")
        axis.set_axis_off()
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def gallery(images: np.ndarray, groups: list[tuple[str, list[tuple[int, str]]]],
            columns: int = 8) -> Figure | None:
    """Test images in titled groups; each group is (title, [(image index, caption), ...])."""
    groups = [(title, tiles) for title, tiles in groups if tiles]
    if not groups:
        return None
    heights = [-(-len(tiles) // columns) for _, tiles in groups]
    figure = plt.figure(figsize=(10, 1.5 * sum(heights) + 0.3 * len(groups)), layout="constrained")
    subfigures = np.atleast_1d(figure.subfigures(len(groups), 1, height_ratios=heights))
    for subfigure, (title, tiles), rows in zip(subfigures, groups, heights):
        axes = subfigure.subplots(rows, columns, squeeze=False)
        for axis in axes.flat:
            axis.set_axis_off()
        for axis, (index, caption) in zip(axes.flat, tiles):
            axis.imshow(np.reshape(images[index], (28, 28)), cmap="gray_r", vmin=0, vmax=255)
            axis.set_title(caption, fontsize=6.5, linespacing=1.1)
        subfigure.suptitle(title, fontsize=10, fontweight="bold")
    return figure


def to_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes, reduced to a 256-colour palette: plots have few colours, and this
    makes them about 2.5x smaller, so the committed example report stays small."""
    import io

    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    palette = Image.open(buffer).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="png", optimize=True)
    return buffer.getvalue()
