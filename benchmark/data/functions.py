"""The points a fit trains on: a built-in target function on an interval, or the user's CSV file.

    points = load_points(spec.data, dtype="float64")   # Points: x, y (N, 1), the interval, the target
    points.x, points.y                                  # the training points, in the model's dtype
    points.target(grid)                                 # the noiseless function (None for a CSV file)

A built-in target is sampled at `samples` evenly spaced points of [low, high]; `noise` adds
Gaussian noise of that standard deviation to y, drawn from a generator of the data's own `seed`.
A CSV file holds one point per line, `x,y`, with an optional header line first (two cells that are
not numbers, before any point); blank lines are skipped; its interval is its x range.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core.errors import UserError
from scratch_nn.spec.data_spec import FUNCTION_TARGETS, DataSpec


def plateau(x: np.ndarray) -> np.ndarray:
    """A wide plateau at 0, then a sharp bend at x = 1 up to 1: 1 / (1 + exp(-8 (x - 1))). A ReLU
    network must place its few breakpoints right at the bend; a tanh unit has that shape itself."""
    return 1.0 / (1.0 + np.exp(-8.0 * (x - 1.0)))


TARGETS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {  # name -> (function, its formula)
    "line": (lambda x: 0.5 * x + 1.0, "0.5 x + 1"),
    "parabola": (lambda x: x * x / 3.0 - 1.0, "x^2 / 3 - 1"),
    "sin": (np.sin, "sin x"),
    "abs": (np.abs, "|x|"),
    "step": (lambda x: np.where(x < 0.0, -1.0, 1.0), "-1 for x < 0, else 1"),
    "plateau": (plateau, "1 / (1 + exp(-8 (x - 1)))"),
}
assert tuple(TARGETS) == FUNCTION_TARGETS, "scratch_nn.spec.data_spec.FUNCTION_TARGETS names these targets"


@dataclass(frozen=True)
class Points:
    """The training points (N, 1) in the model's dtype, their interval, and the target if built in."""

    x: np.ndarray
    y: np.ndarray
    low: float
    high: float
    name: str  # "sin", or the CSV file's name
    formula: str  # "sin x", or "points of FILE"
    target: Callable[[np.ndarray], np.ndarray] | None

    def __len__(self) -> int:
        return len(self.x)


def load_points(data: DataSpec, dtype: str) -> Points:
    """The points `data` names, as (N, 1) arrays of `dtype`."""
    if data.is_file:
        x, y = read_csv_points(data.source)
        name, formula, target, low, high = Path(data.source).name, f"points of {data.source}", None, x.min(), x.max()
    else:
        function, formula = TARGETS[data.source]
        x = np.linspace(data.low, data.high, data.samples)
        y = function(x) + (np.random.default_rng(data.seed).normal(0.0, data.noise, len(x)) if data.noise else 0.0)
        name, target, low, high = data.source, function, data.low, data.high
    return Points(as_column(x, dtype), as_column(y, dtype), float(low), float(high), name, formula, target)


def as_column(values, dtype: str) -> np.ndarray:
    """(N,) values as an (N, 1) array of `dtype`: N examples of one number each."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1).astype(dtype)


def read_csv_points(path: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y (float64) of a CSV file of `x,y` lines; a header line is allowed first. A bad line is
    refused with its number and what was wrong."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: a BOM (spreadsheets) is not a cell
            rows = list(csv.reader(file))
    except FileNotFoundError:
        raise UserError(f"--target {path!r}: no such file; give a CSV file of x,y lines or one of the built-in "
                        f"targets: {', '.join(FUNCTION_TARGETS)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--target {path!r} cannot be read: {error}") from None
    points = []
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue  # a blank line
        if len(cells) != 2:
            raise UserError(f"{path}, line {number}: expected two columns x,y, got {len(cells)} ({','.join(row)!r})")
        values = [_number(cell) for cell in cells]
        if None in values:
            if not points and values == [None, None]:
                continue  # the header line, e.g. x,y (only before the first point)
            bad = cells[values.index(None)]
            raise UserError(f"{path}, line {number}: {bad!r} is not a finite number (a line holds x,y, e.g. 0.5,1.25)")
        points.append(values)
    if len(points) < 2:
        raise UserError(f"{path}: {len(points)} point(s); a fit needs at least 2 lines x,y")
    array = np.array(points)
    if array[:, 0].min() == array[:, 0].max():
        raise UserError(f"{path}: every x is {array[0, 0]:g}; a fit needs at least two different x")
    return array[:, 0], array[:, 1]


def _number(cell: str) -> float | None:
    """The cell as a finite float, or None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
