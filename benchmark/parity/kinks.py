"""Kink crossings: units whose input lies within rounding of a point where the derivative jumps.

ReLU's derivative is 1 above 0 and 0 below. A pre-activation that is 3e-8 in exact arithmetic can
come out as -1e-8 on one float32 side and +2e-8 on the other; both are right to rounding, yet the
unit passes its gradient on one side and blocks it on the other, and a whole row of a weight
gradient (one example's share of it) differs by far more than rounding. That is a kink crossing,
not a bug. When a comparison is out of its bound, the parity engine asks this module which units
of which layers took another branch than the float64 reference while lying within rounding of
the kink, recomputes the reference with those units moved to the scratch side's branch
(`torch_ref.forward_backward(..., nudges=...)`), and if scratch is then within its bound the row
says so ("kink crossing: 2 units of layers.3 (ReLU) within 3.1e-08 of 0") and does not break.

    found = crossings(kinds, scratch_inputs, exact_inputs, torch_inputs)   # layer -> Crossing
    nudges = {name: crossing.delta for name, crossing in found.items()}
    describe(found)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# layer kind -> the input value where its derivative jumps; both sides branch on `input > kink`
# (torch: threshold_backward(grad, result, 0) for relu, `self > 0` for leaky_relu and elu's backward).
KINKS = {"ReLU": 0.0, "LeakyReLU": 0.0, "ELU": 0.0}
# A unit lies within rounding of its kink when its exact input is within KINK_BAND times the
# rounding seen in that input tensor: torch's largest float32 error from float64 there, or one
# float32 ulp of the tensor's largest value, whichever is larger.
KINK_BAND = 10


@dataclass
class Crossing:
    """The units of one layer whose branch differs between scratch and the float64 reference."""

    layer: str
    kind: str
    units: int  # how many (example, unit) entries crossed
    nearest: float  # the largest distance from the kink among them, in the exact input
    delta: np.ndarray  # float64, the input's shape: scratch's input minus the exact one at those units, else 0


def layer_inputs(kinds: dict[str, str], x: np.ndarray, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer's input: x for the first, the previous layer's output for the others."""
    return dict(zip(kinds, [x, *(outputs[name] for name in list(kinds)[:-1])]))


def crossings(kinds: dict[str, str], scratch: dict[str, np.ndarray], exact: dict[str, np.ndarray],
              torch: dict[str, np.ndarray]) -> dict[str, Crossing]:
    """The kink crossings of every non-smooth layer, from each side's layer inputs (`layer_inputs`)."""
    found = {}
    for name, kind in kinds.items():
        if kind not in KINKS:
            continue
        kink = KINKS[kind]
        ours, reference = scratch[name].astype(np.float64), exact[name].astype(np.float64)
        rounding = max(float(np.max(np.abs(torch[name].astype(np.float64) - reference), initial=0.0)),
                       float(np.finfo(np.float32).eps) * float(np.max(np.abs(reference), initial=0.0)))
        distance = np.abs(reference - kink)
        crossed = ((ours > kink) != (reference > kink)) & (distance <= KINK_BAND * rounding)
        if crossed.any():
            found[name] = Crossing(name, kind, int(crossed.sum()), float(distance[crossed].max()),
                                   np.where(crossed, ours - reference, 0.0))
    return found


def describe(found: dict[str, Crossing]) -> str:
    """`kink crossing: 2 units of layers.3 (ReLU) within 3.1e-08 of 0`"""
    parts = [f"{crossing.units} unit{'s' * (crossing.units != 1)} of {crossing.layer} ({crossing.kind}) "
             f"within {crossing.nearest:.1e} of {KINKS[crossing.kind]:g}" for crossing in found.values()]
    return "kink crossing: " + ", ".join(parts)
