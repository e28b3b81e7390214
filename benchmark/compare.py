"""How two tensors are compared, and the report that lists the comparisons in order.

For a pair (a = scratch, b = the reference: torch, or finite differences) we record

    max abs diff   max |a - b|
    rel error      max |a - b| / max( max(|a| + |b|),  rounding floor )
    cosine         <a, b> / (|a| |b|)   (1 when both are zero; shown, not judged)

The relative error is the cs231n measure |a - b| / (|a| + |b|) taken over the whole tensor (the
largest difference over the largest magnitude) instead of element by element. Element by element
it is ill-conditioned: where both sides are rounding noise around zero (a float32 gradient of 1e-9
against 3e-9) it reads 0.5 although nothing is wrong, and such elements occur in every weight
gradient where terms cancel. Tensor-wise it is the error relative to the tensor's own scale, which
fails any difference above 1e-10 (float64) or 1e-4 (float32) of that scale.

Some tensors are rounding noise as a whole, because they are zero in exact arithmetic: the bias
gradient of a Linear followed by BatchNorm1d (the batch mean is subtracted, so the bias cannot
change the loss), or every gradient below an output layer with equal weights (init "constant":
the softmax gradient sums to zero over the classes). Noise against noise reads about 1. So an
absolute error below what the dtype can resolve always passes (the denominator is floored at
that allowance / tolerance); anything larger is judged relative to the tensor's own scale:
  - ROUNDING_MARGIN (10) ulps of the largest tensor of the same kind in the report (all gradients
    of one backward pass, all layer outputs, all `exp_avg`s, ...). In float64 that is 2e-15 of
    the largest gradient, so vanishing gradients are still judged sharply; in float32 1e-6 of it.
  - for a parameter gradient, a sum over the batch, also SUM_MARGIN (100) ulps of the sum of its
    absolute terms (benchmark.scratch_side.batch_sum_scale): rounding error follows the terms,
    not the result, and where they cancel (the bias before BatchNorm1d: measured up to 3 ulps
    of the terms, at batch 1024) it is all that is left. Where they do not cancel this floor is
    100 ulps of the result itself, far below the tolerances: it changes nothing there.

After optimiser steps (trajectories) the floor is the largest tensor of the kind itself: every
parameter is compared relative to the largest parameter, every `exp_avg` to the largest `exp_avg`.
Adam and RMSprop divide by sqrt(v) + eps, which turns the rounding noise of a gradient that is zero
in exact arithmetic (1e-20 in float64) into a step of lr * noise / eps, a million times larger, and
different on the two sides. A wrong update rule moves parameters by a fraction of the step, far
above 1e-10 of the parameters' scale, so it is still caught. The one parameter such noise moves
by whole steps, the bias before BatchNorm1d (with its optimiser states and that BatchNorm's
running_mean), is shown with tolerance inf, "n/a", under Adam, AdamW and RMSprop
(benchmark.scratch_side.loss_free_names).

Tolerances (TOLERANCES) hold for every tensor of a forward/backward pass: float64 1e-10, float32
1e-4. Measured worst: 5e-13 and 5e-7 over the test suite (the bias before BatchNorm1d), 5e-16
and 2e-7 on MNIST with the default spec. Trajectories in float32 widen a row's tolerance to
torch's own float32 error where that is larger (benchmark.parity.trajectory_parity says why). Finite differences (FD_TOLERANCE) are judged at 1e-6, and their rounding noise,
FD_NOISE_MARGIN * eps * |f| / (2h) for the function f differenced, is an absolute allowance
(`atol`): a gradient element smaller than that noise says nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.files import write_atomically

TOLERANCES = {"float32": 1e-4, "float64": 1e-10}
FD_TOLERANCE = 1e-6
FD_NOISE_MARGIN = 10  # the float64 rounding of f, amplified by 1/(2h), times this, is FD noise
ROUNDING_MARGIN = 10  # ulps of the largest tensor of a kind below which an absolute error always passes
SUM_MARGIN = 100  # ulps of the sum of |terms| of a parameter gradient below which an absolute error passes
SHOWN_VALUES = 4  # values from both sides printed for a break


@dataclass
class Comparison:
    """One row of a report: tensor `name` from both sides, and how far apart they are."""

    name: str  # e.g. "layers.0.weight.grad", "step 3/layers.0.weight.exp_avg"
    layer: str  # the layer's kind, e.g. "Linear", or "" when not one layer's
    shape: tuple[int, ...]
    max_abs: float
    rel_error: float
    cosine: float
    tolerance: float
    scratch: np.ndarray = field(repr=False)
    reference: np.ndarray = field(repr=False)
    reference_side: str = "torch"  # "torch" or "numerical" (finite differences)

    @property
    def ok(self) -> bool:
        """Within tolerance (False for NaN); a row with tolerance inf is shown but not judged."""
        return bool(self.tolerance == np.inf or self.rel_error <= self.tolerance)

    def values(self) -> str:
        """The few elements where the two sides differ most, for a message about a break."""
        a, b = np.ravel(self.scratch), np.ravel(self.reference)
        if a.shape != b.shape:
            return f"shapes differ: scratch {np.shape(self.scratch)}, {self.reference_side} {np.shape(self.reference)}"
        worst = np.sort(np.argsort(-np.abs(a.astype(np.float64) - b), kind="stable")[:SHOWN_VALUES])
        shown = ", ".join(f"[{i}] {a[i]:.8g} vs {b[i]:.8g}" for i in worst)
        return f"scratch vs {self.reference_side}: {shown}"


def scale(a: np.ndarray, b: np.ndarray) -> float:
    """max(|a| + |b|), the denominator of the tensor-wise relative error (0 for empty tensors)."""
    if np.shape(a) != np.shape(b) or np.size(a) == 0:
        return 0.0
    return float(np.max(np.abs(np.asarray(a, np.float64)) + np.abs(np.asarray(b, np.float64))))


def compare(name: str, a: np.ndarray, b: np.ndarray, tolerance: float, atol: float = 0.0,
            layer: str = "", reference_side: str = "torch") -> Comparison:
    """Compare scratch's `a` with the reference `b` (see the module docstring for the measures).

    An absolute error up to `atol` never breaks: the denominator is at least atol / tolerance.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return Comparison(name, layer, a.shape, np.inf, np.inf, np.nan, tolerance, a, b, reference_side)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    max_abs = float(np.max(np.abs(a64 - b64))) if a.size else 0.0
    denominator = max(scale(a64, b64), atol / tolerance, np.finfo(np.float64).tiny)
    rel_error = max_abs / denominator
    if not (np.all(np.isfinite(a64)) and np.all(np.isfinite(b64))):
        rel_error = np.nan  # a NaN or inf on either side is never parity
    norms = np.linalg.norm(a64) * np.linalg.norm(b64)
    cosine = float(np.vdot(a64, b64) / norms) if norms > 0 else float(max_abs == 0)
    return Comparison(name, layer, a.shape, max_abs, rel_error, cosine, tolerance, a.copy(), b.copy(),
                      reference_side)


def compare_all(pairs: list[tuple], tolerance: float, dtype: str, reference_side: str = "torch",
                atol: float = 0.0, kind_floor: float | None = None) -> list[Comparison]:
    """Compare each `(name, layer, kind, a, b[, atol])` in order, `a` from scratch, `b` the reference.

    `kind` ("grad", "output", "exp_avg", ...; None for a tensor on its own) sets the floor of the
    denominator: by default an error below ROUNDING_MARGIN ulps of `dtype` times the largest tensor
    of that kind passes; with `kind_floor` the denominator is at least that fraction of the largest
    tensor of the kind (trajectories use 1: relative to the largest of the kind). `atol`, for every
    pair or per pair, is a further absolute allowance (finite-difference noise, summation error).
    """
    largest: dict[str, float] = {}
    for _, _, kind, a, b, *_ in pairs:
        if kind is not None:
            largest[kind] = max(largest.get(kind, 0.0), scale(a, b))
    if kind_floor is None:
        kind_floor = ROUNDING_MARGIN * float(np.finfo(np.dtype(dtype)).eps) / tolerance
    rows = []
    for name, layer, kind, a, b, *own_atol in pairs:
        floor = max(atol, *own_atol, tolerance * kind_floor * largest.get(kind, 0.0))
        rows.append(compare(name, a, b, tolerance, floor, layer, reference_side))
    return rows


@dataclass
class ParityReport:
    """Comparisons in the order they were computed; the first one out of tolerance is the break."""

    rows: list[Comparison]
    dtype: str

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def first_break(self) -> Comparison | None:
        return next((row for row in self.rows if not row.ok), None)

    @property
    def worst(self) -> Comparison | None:
        """The row with the largest relative error relative to its tolerance."""
        return max(self.rows, key=lambda row: np.nan_to_num(row.rel_error / row.tolerance, nan=np.inf), default=None)

    def __add__(self, other: ParityReport) -> ParityReport:
        return ParityReport(self.rows + other.rows, self.dtype)

    def table(self) -> str:
        """One line per tensor: tensor, layer, shape, max abs diff, rel error, cosine, ok ("n/a": not judged)."""
        width = max([len(row.name) for row in self.rows] + [6])
        layer_width = max([len(row.layer) for row in self.rows] + [5])
        lines = [f"{'tensor':<{width}}  {'layer':<{layer_width}} {'shape':<12} {'max abs diff':>12} "
                 f"{'rel error':>10} {'cosine':>10}  ok"]
        for row in self.rows:
            shape = "x".join(map(str, row.shape)) or "scalar"
            verdict = "n/a" if row.tolerance == np.inf else "ok" if row.ok else "BREAK"
            lines.append(f"{row.name:<{width}}  {row.layer:<{layer_width}} {shape:<12} {row.max_abs:>12.3e} "
                         f"{row.rel_error:>10.2e} {row.cosine:>10.7f}  {verdict}")
        return "\n".join(lines)

    def step_table(self) -> str:
        """For trajectories ("step k/..." rows): one line per step, its number of tensors and its
        worst tensor (relative to its tolerance)."""
        steps: dict[str, list[Comparison]] = {}
        for row in self.rows:
            steps.setdefault(row.name.partition("/")[0], []).append(row)
        lines = [f"{'step':<8} {'tensors':>7}  {'worst tensor':<34} {'max abs diff':>12} {'rel error':>10} "
                 f"{'tolerance':>10}  ok"]
        for step, rows in steps.items():
            worst, ok = ParityReport(rows, self.dtype).worst, all(row.ok for row in rows)
            lines.append(f"{step:<8} {len(rows):>7}  {worst.name.partition('/')[2]:<34} {worst.max_abs:>12.3e} "
                         f"{worst.rel_error:>10.2e} {worst.tolerance:>10.1e}  {'ok' if ok else 'BREAK'}")
        return "\n".join(lines)

    def records(self) -> list[dict]:
        """The rows as plain dicts (name, layer, shape, max_abs, rel_error, cosine, tolerance, ok), for a
        pandas DataFrame or JSON."""
        return [{"name": row.name, "layer": row.layer, "shape": list(row.shape), "max_abs": row.max_abs,
                 "rel_error": row.rel_error, "cosine": row.cosine, "tolerance": row.tolerance, "ok": row.ok}
                for row in self.rows]

    def verdict(self) -> str:
        """One line: parity with the worst error, or the first break with a few values of both sides."""
        broken = self.first_break
        if broken is None:
            sides = dict.fromkeys(row.reference_side for row in self.rows)  # "torch", "numerical", in order
            worst = {side: ParityReport([row for row in self.rows if row.reference_side == side], self.dtype).worst
                     for side in sides}
            detail = "".join(f"; worst vs {side}: rel error {row.rel_error:.2e} <= {row.tolerance:.1e} ({row.name})"
                             for side, row in worst.items())
            unjudged = sum(row.tolerance == np.inf for row in self.rows)
            shown = f" ({unjudged} not judged)" if unjudged else ""
            return f"parity: {len(self.rows)} tensors within tolerance{shown} ({self.dtype}){detail}"
        layer = f" ({broken.layer})" if broken.layer else ""
        return (f"BREAK at {broken.name}{layer}: rel error {broken.rel_error:.3e} > {broken.tolerance:g}, "
                f"max abs diff {broken.max_abs:.3e}; {broken.values()}")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every compared tensor from both sides: "scratch/<name>" and "torch/<name>" (or "numerical/")."""
        arrays = {}
        for row in self.rows:
            arrays[f"scratch/{row.name}"] = row.scratch
            arrays[f"{row.reference_side}/{row.name}"] = row.reference
        return arrays

    def dump(self, path: str | Path) -> None:
        """Write `arrays()` to an .npz atomically: a temporary file in the same folder, then os.replace."""
        arrays = self.arrays()
        write_atomically(path, lambda file: np.savez(file, **arrays))
