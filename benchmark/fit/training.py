"""Train both sides on a function's points and keep what the pictures and the report need.

    result = fit_both(spec, points, checks=10)   # a Fit: losses per step, parity checks, the curves
    result.final_losses["scratch"], result.curves["torch"], result.breakpoints()

Both sides start from the same weights (the scratch side draws them from a generator of the spec's
seed; the torch side loads them), see the same batches in the same order (the whole set at once
when the spec's batch_size is 0, the fit's default; else a permutation per epoch from the same
generator, as `svt run`), and take turns step by step. At evenly spaced steps the parity engine
compares one forward and backward of the scratch model's current weights with its torch twin
(`gradient_parity`, the verdict `svt run` and `svt parity` give).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from benchmark.data.functions import Points
from benchmark.parity.engine import gradient_parity
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import Spec

SIDES = ("scratch", "torch")
GRID_POINTS = 401
MARGIN = 0.5  # the picture reaches this fraction of the interval beyond each end: extrapolation
KINKED = ("relu", "leaky_relu")  # activations whose units bend at one point, -b/w


@dataclass
class Fit:
    """One fit of both sides: the loss of every step, the parity checks, the learned curves."""

    spec: Spec
    points: Points
    losses: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    checks: list[dict] = field(default_factory=list)  # {"step", "ok", "verdict"}
    grid: np.ndarray | None = None  # (G,) float64, wider than the interval
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (G,) float64
    final_losses: dict[str, float] = field(default_factory=dict)  # side -> loss on every point, after training
    weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # side -> parameters, after training
    seconds: float = 0.0  # training both sides, parity checks included

    @property
    def steps(self) -> int:
        return len(self.losses["scratch"])

    def loss_gap(self) -> float:
        """|scratch - torch| / |torch| of the final losses."""
        scratch, torch = self.final_losses["scratch"], self.final_losses["torch"]
        return abs(scratch - torch) / max(abs(torch), np.finfo(np.float64).tiny)

    def curve_gap(self) -> float:
        """max |scratch(x) - torch(x)| over the picture's range."""
        return float(np.max(np.abs(self.curves["scratch"] - self.curves["torch"])))

    def inside(self) -> np.ndarray:
        """Which grid points lie in the training interval."""
        return (self.grid >= self.points.low) & (self.grid <= self.points.high)

    def parity_ok(self) -> bool:
        return all(check["ok"] for check in self.checks)

    def neurons(self) -> int:
        """The first layer's units."""
        return self.spec.model.layers[0].out_features

    def breakpoints(self, side: str = "scratch") -> np.ndarray | None:
        """Where the first layer's ReLU units bend, x = -b/w (sorted; units with w = 0 never bend),
        or None when the first layer is not followed by a ReLU."""
        layers = self.spec.model.layers
        if len(layers) < 2 or layers[1].type not in KINKED:
            return None
        weight, bias = self.weights[side]["layers.0.weight"][:, 0], self.weights[side]["layers.0.bias"]
        bending = weight != 0
        return np.sort(-bias[bending] / weight[bending]).astype(np.float64)

    def breakpoints_inside(self, side: str = "scratch") -> int | None:
        found = self.breakpoints(side)
        return None if found is None else int(np.count_nonzero((found > self.points.low) & (found < self.points.high)))

    def one_linear_neuron(self) -> bool:
        """The network is one Linear(1, 1): y = w x + b."""
        return len(self.spec.model.layers) == 1

    def least_squares(self) -> tuple[float, float]:
        """(slope, intercept) of the least-squares line through the points (float64)."""
        slope, intercept = np.polyfit(self.points.x[:, 0].astype(np.float64), self.points.y[:, 0].astype(np.float64), 1)
        return float(slope), float(intercept)


def check_steps(total: int, count: int) -> set[int]:
    """`count` steps spread evenly over 0 .. total - 1, the first and the last included."""
    return set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()) if count else set()


def fit_both(spec: Spec, points: Points, checks: int = 10) -> Fit:
    """Train both sides of `spec` on `points` for `spec.train.epochs` epochs, the parity engine at
    `checks` steps; then each side's curve over the grid and its final loss on every point."""
    rng = np.random.default_rng(spec.train.seed)
    scratch = ScratchSide(spec, rng)
    torch_side = TorchSide(spec, scratch.model.state_dict())
    threads = torch_side.torch.get_num_threads()
    torch_side.torch.set_num_threads(1)  # tensors of a few hundred numbers: a pool only adds latency, and on
    try:  # a busy machine its waiting threads made a step of 5 units 30 ms instead of 0.1 ms
        return train_and_finish(spec, points, checks, rng, scratch, torch_side)
    finally:
        torch_side.torch.set_num_threads(threads)


def train_and_finish(spec: Spec, points: Points, checks: int, rng: np.random.Generator, scratch: ScratchSide,
                     torch_side: TorchSide) -> Fit:
    """`fit_both`'s loop over the epochs and batches, then `finish`."""
    result = Fit(spec, points)
    count = len(points)
    batch = min(spec.train.batch_size or count, count)
    per_epoch = -(-count // batch)
    checked = check_steps(spec.train.epochs * per_epoch, checks)
    start = time.perf_counter()
    with np.errstate(all="ignore"):  # a diverging fit shows in its losses (the --vary grid may hold one)
        for _ in range(spec.train.epochs):
            order = np.arange(count) if batch == count else rng.permutation(count)
            for first in range(0, count, batch):
                chosen = order[first:first + batch]
                x, y = (points.x, points.y) if batch == count else (points.x[chosen], points.y[chosen])
                if result.steps in checked:
                    report = gradient_parity(scratch.model, x, y, l1=spec.train.l1)
                    result.checks.append({"step": result.steps, "ok": report.ok, "verdict": report.verdict()})
                train_step(scratch, torch_side, x, y, result.losses)
            scratch.end_epoch()
            torch_side.end_epoch()
    result.seconds = time.perf_counter() - start
    finish(result, scratch, torch_side)
    return result


def train_step(scratch: ScratchSide, torch_side: TorchSide, x: np.ndarray, y: np.ndarray, losses: dict) -> None:
    """One step of each side on (x, y), scratch first; the loss before the update is recorded."""
    scratch.train()
    scratch.forward(x, y)
    scratch.backward()
    scratch.update()
    masks = scratch.masks() or None
    torch_side.train()
    torch_side.forward(*torch_side.batch(x, y), masks)
    torch_side.backward()
    torch_side.update()
    losses["scratch"].append(scratch.loss_value())
    losses["torch"].append(torch_side.loss_value())


def finish(result: Fit, scratch: ScratchSide, torch_side: TorchSide) -> None:
    """Each side, in eval mode: its curve over the grid, its loss on every point, its weights."""
    points, dtype = result.points, result.spec.model.dtype
    width = points.high - points.low
    result.grid = np.linspace(points.low - MARGIN * width, points.high + MARGIN * width, GRID_POINTS)
    grid = result.grid.reshape(-1, 1).astype(dtype)
    torch = torch_side.torch
    scratch.train(False)
    torch_side.train(False)
    with np.errstate(all="ignore"):
        result.curves["scratch"] = scratch.infer(grid)[:, 0].astype(np.float64)
        result.final_losses["scratch"] = float(scratch.loss_fn.forward(scratch.infer(points.x), points.y))
    result.curves["torch"] = torch_side.infer(torch.from_numpy(grid))[:, 0].numpy().astype(np.float64)
    with torch.inference_mode():
        outputs = torch_side.infer(torch.from_numpy(points.x))
        result.final_losses["torch"] = float(torch_side.loss_fn(outputs, torch.from_numpy(points.y)))
    result.weights = {"scratch": scratch.weights(), "torch": torch_side.weights()}
