"""Kink crossings: units whose input lies within rounding of a point where the derivative jumps.

ReLU's derivative is 1 above 0 and 0 below. A pre-activation that is 3e-8 in exact arithmetic can
come out as -1e-8 on one float32 side and +2e-8 on the other; both are right to rounding, yet the
unit passes its gradient on one side and blocks it on the other, and a whole row of a weight
gradient (one example's share of it) differs by far more than rounding. That is a kink crossing,
not a bug. When a comparison is out of its bound, the parity engine asks this module which units
of which layers took another branch than the reference while lying within rounding of the kink,
recomputes the reference with those units moved to the scratch side's branch
(`torch_ref.forward_backward(..., nudges=...)`), and if scratch is then within its bound the row
says so ("kink crossing: 2 units of layers.3 (ReLU) within 3.1e-08 of 0") and does not break.

Max-pooling ties are the same thing for a window: two elements equal up to rounding, and each
side's gradient goes to the one it found larger (of exactly equal ones both take the first, as
torch). A window whose two picks differ while their values, in the reference's input, lie within
rounding of each other has crossed a tie; the reference is recomputed with that window's elements
set to scratch's values, so that it picks as scratch did ("2 windows of layers.5 (MaxPool2d) with
maxima tied within 1.1e-16").

The reference is the float64 run in float32 (`exact`, with torch's float32 run setting the
rounding) and torch itself in float64 (`torch=None`: the rounding is the two sides' own distance,
which the rows of the layers before have already judged).

    found = crossings(layers, scratch_inputs, exact_inputs, torch_inputs)   # layer -> Crossing
    nudges = {name: crossing.delta for name, crossing in found.items()}
    describe(found)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# layer kind -> the input values where its derivative jumps; both sides branch on `input > kink`
# (torch: threshold_backward(grad, result, 0) for relu, `self > 0` for leaky_relu and elu's backward)
# or, for hardtanh_backward, on `min_val < self < max_val`: its kinks are its layer's two settings.
KINKS = {"ReLU": (0.0,), "LeakyReLU": (0.0,), "ELU": (0.0,), "Hardtanh": None}

# A unit lies within rounding of its kink when its exact input is within KINK_BAND times the
# rounding seen in that input tensor: torch's largest float32 error from float64 there, or one
# float32 ulp of the tensor's largest value, whichever is larger (float64: the largest distance
# between the two sides' inputs, or one float64 ulp). A pooling tie: the two picks' values, likewise.
KINK_BAND = 10


@dataclass
class Crossing:
    """The units of one layer whose branch differs between scratch and the float64 reference."""

    layer: str
    kind: str
    units: int  # how many (example, unit) entries crossed
    nearest: float  # the largest distance from the kink among them, in the exact input
    delta: np.ndarray  # float64, the input's shape: scratch's input minus the exact one at those units, else 0
    points: tuple[float, ...] = ()  # the kinks (ReLU: 0; Hardtanh: min_val, max_val); () for a pooling tie


def kink_points(layer) -> tuple[float, ...]:
    """Where the layer's derivative jumps: KINKS, or for Hardtanh its min_val and max_val."""
    points = KINKS[type(layer).__name__]
    return (float(layer.min_val), float(layer.max_val)) if points is None else points


def list_position(name: str) -> tuple[str, int, str]:
    """"layers.3.body.2" -> ("layers.3.body", 2, "layers.3"): the list a layer is in, its index there,
    and the block that holds that list ("" for the model's own list; "layers.5.branches.1" -> "layers.5")."""
    prefix, _, index = name.rpartition(".")
    parts = prefix.split(".")
    if prefix == "layers":
        return prefix, int(index), ""
    return prefix, int(index), ".".join(parts[:-2] if parts[-2] == "branches" else parts[:-1])


def layer_inputs(kinds: dict[str, str], x: np.ndarray, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer's input (`kinds` in the model's order, blocks before their layers): x for the first
    layer, the previous layer of its list's output for the others, and for the first layer of a
    block's list (body, shortcut, branch) the block's own input."""
    inputs = {}
    for name in kinds:
        prefix, index, block = list_position(name)
        inputs[name] = outputs[f"{prefix}.{index - 1}"] if index else (inputs[block] if block else x)
    return inputs


def layer_grad_outputs(kinds: dict[str, str], grad_inputs: dict[str, np.ndarray], grad_logits: np.ndarray,
                       outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer's dL/d(output): the next layer of its list's dL/d(input); for the last layer of the
    model dL/dlogits, of a body or shortcut the block's own dL/d(output) (the sum passes it to both),
    of a branch its channels' slice of the concat's dL/d(output)."""
    grad_outs: dict[str, np.ndarray] = {}
    for name in kinds:  # a block comes before its layers, so its own entry is there when they need it
        prefix, index, block = list_position(name)
        if f"{prefix}.{index + 1}" in kinds:
            grad_outs[name] = grad_inputs[f"{prefix}.{index + 1}"]
        elif not block:
            grad_outs[name] = grad_logits
        elif prefix.split(".")[-2] != "branches":
            grad_outs[name] = grad_outs[block]
        else:  # after the channels of the branches before this one (their last layers' outputs)
            before = [outputs[key] for key in kinds if list_position(key)[2] == block and
                      f"{list_position(key)[0]}.{list_position(key)[1] + 1}" not in kinds and
                      int(list_position(key)[0].rpartition(".")[2]) < int(prefix.rpartition(".")[2])]
            start = sum(output.shape[1] for output in before)
            grad_outs[name] = grad_outs[block][:, start:start + outputs[name].shape[1]]
    return grad_outs


def crossings(layers: dict, scratch: dict[str, np.ndarray], exact: dict[str, np.ndarray],
              torch: dict[str, np.ndarray] | None = None) -> dict[str, Crossing]:
    """The kink crossings and pooling ties of every non-smooth layer (`layers`: name -> scratch
    layer), from each side's layer inputs (`layer_inputs`). `torch=None`: float64, `exact` is torch."""
    found = {}
    for name, layer in layers.items():
        kind = type(layer).__name__
        if kind not in KINKS and kind != "MaxPool2d":
            continue
        ours, reference = scratch[name].astype(np.float64), exact[name].astype(np.float64)
        largest = float(np.max(np.abs(reference[np.isfinite(reference)]), initial=0.0))
        if torch is None:
            rounding = max(float(np.max(np.abs(ours - reference), initial=0.0)),
                           float(np.finfo(np.float64).eps) * largest)
        else:
            rounding = max(float(np.max(np.abs(torch[name].astype(np.float64) - reference), initial=0.0)),
                           float(np.finfo(np.float32).eps) * largest)
        crossing = (tie_crossing if kind == "MaxPool2d" else kink_crossing)(name, layer, ours, reference, rounding)
        if crossing is not None:
            found[name] = crossing
    return found


def passes_gradient(layer, x: np.ndarray) -> np.ndarray:
    """The branch each unit takes, as both sides' backward decides it: `x > kink` (ReLU, LeakyReLU,
    ELU), `min_val < x < max_val` (Hardtanh: at max_val itself the gradient is blocked)."""
    if type(layer).__name__ == "Hardtanh":
        return (x > layer.min_val) & (x < layer.max_val)
    return x > KINKS[type(layer).__name__][0]


def kink_crossing(name: str, layer, ours: np.ndarray, reference: np.ndarray, rounding: float) -> Crossing | None:
    """The units on the other branch of a kink than the reference's, within rounding of it."""
    points = kink_points(layer)
    distance = np.min([np.abs(reference - point) for point in points], axis=0)  # to the nearest kink
    crossed = (passes_gradient(layer, ours) != passes_gradient(layer, reference)) & (distance <= KINK_BAND * rounding)
    if not crossed.any():
        return None
    return Crossing(name, type(layer).__name__, int(crossed.sum()), float(distance[crossed].max()),
                    np.where(crossed, ours - reference, 0.0), points)


def tie_crossing(name: str, pool, ours: np.ndarray, reference: np.ndarray, rounding: float) -> Crossing | None:
    """The windows whose picks differ while the two picked values (in the reference's input) are
    within rounding of each other; the delta sets those windows to scratch's values."""
    picked, picked_reference = pool.winners(ours), pool.winners(reference)
    values = pool.window_values(reference)
    gap = np.abs(np.take_along_axis(values, picked[None].astype(np.intp), 0)[0]
                 - np.take_along_axis(values, picked_reference[None].astype(np.intp), 0)[0])
    with np.errstate(invalid="ignore"):
        crossed = (picked != picked_reference) & (gap <= KINK_BAND * rounding)
    if not crossed.any():
        return None
    members = pool.window_members(reference.shape, crossed)
    return Crossing(name, "MaxPool2d", int(crossed.sum()), float(gap[crossed].max()),
                    np.where(members, ours - reference, 0.0))


def describe(found: dict[str, Crossing]) -> str:
    """`kink crossing: 2 units of layers.3 (ReLU) within 3.1e-08 of 0, 1 window of layers.5 (MaxPool2d) ...`"""
    parts = []
    for crossing in found.values():
        if crossing.kind == "MaxPool2d":
            parts.append(f"{crossing.units} window{'s' * (crossing.units != 1)} of {crossing.layer} (MaxPool2d) "
                         f"with maxima tied within {crossing.nearest:.1e}")
        else:
            points = " or ".join(f"{point:g}" for point in crossing.points)
            parts.append(f"{crossing.units} unit{'s' * (crossing.units != 1)} of {crossing.layer} ({crossing.kind}) "
                         f"within {crossing.nearest:.1e} of {points}")
    return "kink crossing: " + ", ".join(parts)
