"""How two tensors are compared (the report that lists the comparisons is benchmark.parity.report).

For a pair (a = scratch, b = the reference: torch, or finite differences) we record

    max abs diff   max |a - b|
    rel error      max |a - b| / max( max(|a| + |b|),  rounding floor )
    cosine         <a, b> / (|a| |b|)   (1 when both are zero; shown, not judged)

The relative error is the cs231n measure |a - b| / (|a| + |b|) taken over the whole tensor (the
largest difference over the largest magnitude) instead of element by element: it is
`scratch_nn.gradcheck.relative_error`, the one measure the finite-difference referee uses too. Element by element
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
    absolute terms (benchmark.parity.referee.batch_sum_scale): rounding error follows the terms,
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
(benchmark.parity.referee.loss_free_names).

float64 is judged strictly: scratch against torch, relative error <= 1e-10 (TOLERANCES) for every
tensor (measured worst: 5e-13 over the test suite, the bias before BatchNorm1d; 5e-16 on MNIST).

float32 is judged against an exact reference. A fixed float32 tolerance cannot tell a bug from
rounding: late in training the softmax gradient p - onehot is a difference of nearly equal
numbers on both sides, and both carry relative errors of 1e-4 and more. So every float32 tensor
is also computed in float64 by torch from the same float32 weights, inputs and masks, and both
float32 sides are measured against it with the same measure (`scratch vs f64`, `torch vs f64`).
Scratch is right when it is as close to the exact answer as torch is:

    scratch vs f64  <=  EXACT_FACTOR * (torch vs f64)  +  EXACT_FLOOR_ULPS * eps(float32)

Two correct float32 implementations differ from the exact result by the same order of rounding
(a different summation order inside a product, another formula for the same quantity), so the
factor is small (measured over 200 seeded runs on MNIST: see `EXACT_FACTOR`); a real bug of
1e-3 (a derivative scaled by 1 + 1e-3) stands 1e4 above torch's error at initialisation. The
float32 TOLERANCES entry (1e-4) now only sets the measure's floors above.

Where a non-smooth unit (ReLU's 0) has its input within rounding of the kink, the two sides may
take different branches, and a whole gradient row differs: `benchmark.parity.kinks` finds such units
when a row is out of its bound and, if moving them to scratch's side in the reference explains
the difference, the row says so in `explained` and does not break.

Finite differences (FD_TOLERANCE) are judged at 1e-6, and their rounding noise,
FD_NOISE_MARGIN * eps * |f| / (2h) for the function f differenced, is an absolute allowance
(`atol`): a gradient element smaller than that noise says nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scratch_nn.gradcheck import relative_error

TOLERANCES = {"float32": 1e-4, "float64": 1e-10}
FD_TOLERANCE = 1e-6
FD_NOISE_MARGIN = 10  # the float64 rounding of f, amplified by 1/(2h), times this, is FD noise
ROUNDING_MARGIN = 10  # ulps of the largest tensor of a kind below which an absolute error always passes
SUM_MARGIN = 100  # ulps of the sum of |terms| of a parameter gradient below which an absolute error passes
SHOWN_VALUES = 4  # values from both sides printed for a break
# float32: scratch's error from the float64 reference may be EXACT_FACTOR times torch's own, plus
# EXACT_FLOOR_ULPS float32 ulps (relative). Most tensors of a correct pass are within 2-3 ulps on
# both sides, under the floor. Measured with `svt parity --seeds 0-19` on mnist-mlp, deep-relu-he,
# dropout-bn, adam and wide (10 steps), under OpenBLAS's Haswell and Sandybridge kernels: 0 breaks
# in 200 runs each; every row beyond 4x was a kink crossing or inherited rounding (Adam), explained.
EXACT_FACTOR = 4
EXACT_FLOOR_ULPS = 8


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
    exact_scratch: float = math.nan  # float32: scratch's rel error from the float64 reference (NaN: none)
    exact_torch: float = math.nan  # float32: torch's rel error from the same reference
    explained: str = ""  # why a row beyond its tolerance is no break, e.g. "kink crossing: ..."

    @property
    def judged(self) -> float:
        """What the tolerance bounds: scratch's error from the float64 reference in float32, else
        the relative error between the sides."""
        return self.rel_error if math.isnan(self.exact_torch) else self.exact_scratch

    @property
    def ok(self) -> bool:
        """Within tolerance (False for NaN), or explained; a row with tolerance inf is shown but not judged."""
        return bool(self.tolerance == np.inf or self.judged <= self.tolerance or self.explained)

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
            layer: str = "", reference_side: str = "torch", shown: bool = True) -> Comparison:
    """Compare scratch's `a` with the reference `b` (see the module docstring for the measures).

    An absolute error up to `atol` never breaks: the denominator is at least atol / tolerance.
    `shown=False` (a distance from the float64 reference, of which only the relative error is
    used) skips the cosine and the copies of both tensors.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return Comparison(name, layer, a.shape, np.inf, np.inf, np.nan, tolerance, a, b, reference_side)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    max_abs = float(np.max(np.abs(a64 - b64))) if a.size else 0.0
    rel_error = relative_error(a64, b64, floor=max(atol / tolerance, np.finfo(np.float64).tiny))
    if not (np.all(np.isfinite(a64)) and np.all(np.isfinite(b64))):
        rel_error = np.nan  # a NaN or inf on either side is never parity
    if not shown:
        return Comparison(name, layer, a.shape, max_abs, rel_error, np.nan, tolerance, a, b, reference_side)
    norms = np.linalg.norm(a64) * np.linalg.norm(b64)
    cosine = float(np.vdot(a64, b64) / norms) if norms > 0 else float(max_abs == 0)
    return Comparison(name, layer, a.shape, max_abs, rel_error, cosine, tolerance, a.copy(), b.copy(),
                      reference_side)


def compare_all(pairs: list[tuple], tolerance: float, dtype: str, reference_side: str = "torch",
                atol: float = 0.0, kind_floor: float | None = None, shown: bool = True) -> list[Comparison]:
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
        rows.append(compare(name, a, b, tolerance, floor, layer, reference_side, shown))
    return rows


def exact_bound(torch_error: float) -> float:
    """How far from the float64 reference scratch's float32 tensor may be, given torch's distance."""
    return EXACT_FACTOR * torch_error + EXACT_FLOOR_ULPS * float(np.finfo(np.float32).eps)


def compare_with_exact(versus_torch: list[tuple], scratch_exact: list[tuple], torch_exact: list[tuple],
                       kind_floor: float | None = None) -> list[Comparison]:
    """float32 rows: scratch against torch (shown), and each side against the float64 reference
    (judged: `exact_bound`). The three lists pair the same tensors in the same order, as
    `compare_all` takes them: (scratch, torch), (scratch, exact), (torch, exact)."""
    tolerance = TOLERANCES["float32"]  # sets the floors of the measure only
    rows = compare_all(versus_torch, tolerance, "float32", kind_floor=kind_floor)
    for row, own, theirs in zip(rows, compare_all(scratch_exact, tolerance, "float32", kind_floor=kind_floor,
                                                  shown=False),
                                compare_all(torch_exact, tolerance, "float32", kind_floor=kind_floor, shown=False)):
        row.exact_scratch, row.exact_torch = own.rel_error, theirs.rel_error
        row.tolerance = exact_bound(theirs.rel_error) if np.isfinite(theirs.rel_error) else 0.0
    return rows
