"""Check 7 of `svt sanity`: are the gradients healthy, layer by layer, in the initialised model?

One training-mode forward and backward (dropout off) over a batch of real images gives, per layer:

    weight layers  gradient rms = ||dL/dW|| / sqrt(number of weights): the typical gradient of one weight
    relu           dead fraction: units never positive over the batch (they pass no gradient back)
    sigmoid, tanh  saturated fraction: outputs in the flat tails (sigmoid < 0.01 or > 0.99, |tanh| > 0.99)

(the types as the spec's layer list names them) and the verdict compares the first weight layer's
gradient rms with the last one's. The rms, not
the norm, so that layers of different sizes compare fairly. Measured at initialisation because that is
where vanishing and exploding gradients come from (depth, activation and init), whatever the learning
rate; checks 4-6 judge the learning rate.

    ratio < 1e-3   vanishing: the first layers learn a thousand times slower than the last
    ratio > 1e3    exploding: the first layers take steps a thousand times larger than the last
    nan            a gradient is not finite: something overflows
"""
from __future__ import annotations

import numpy as np

from benchmark.sanity.checks import CheckResult, working_copy
from benchmark.sides.probe import unit_stats
from benchmark.sides.scratch import watching
from scratch_nn.losses import build_loss

VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
DEAD_FRACTION = 0.5  # a ReLU layer with more than half its units dead is flagged
SATURATED_FRACTION = 0.5  # a sigmoid/tanh layer with more than half its outputs saturated is flagged


def layer_profile(model, x: np.ndarray, y: np.ndarray) -> list[dict]:
    """One row per weight, relu, sigmoid or tanh layer of a copy of `model` after one forward and
    backward on (x, y): {"layer", "type" (the class, ReLU), "grad_rms" | "dead" | "saturated"}."""
    model = working_copy(model, dropout=False)
    rows = []
    layers, kinds = dict(model.named_layers()), {entry.name: entry.spec.type for entry in model.spec.entries}

    def profile(name, output):  # every layer's output, inside blocks too
        stats, kind, layer = unit_stats(kinds[name], output), kinds[name], layers[name]
        if kind == "relu":  # shown by the built layer's class name: ReLU
            rows.append({"layer": name, "type": type(layer).__name__, "dead": stats["dead_fraction"]})
        elif kind in ("sigmoid", "tanh"):
            rows.append({"layer": name, "type": type(layer).__name__, "saturated": stats["saturated_fraction"]})
    with np.errstate(all="ignore"):
        with watching(model, profile):
            logits = model.forward(x)
        loss_fn = build_loss(model.spec)
        loss_fn.forward(logits, y)
        model.backward(loss_fn.backward(), input_grad=False)
        for name, layer in model.weight_layers():
            grad = layer.grads["weight"].astype(np.float64)
            rows.append({"layer": name, "type": type(layer).__name__, "weight": True,
                         "grad_rms": float(np.sqrt(np.mean(grad * grad)))})
    order = list(layers)  # the model's order, a block before its own layers
    return sorted(rows, key=lambda row: order.index(row["layer"]))


def gradient_ratio(rows: list[dict]) -> float:
    """Gradient rms of the first weight layer over that of the last; inf or 0 when the last is 0."""
    linear = [row["grad_rms"] for row in rows if row.get("weight")]
    first, last = linear[0], linear[-1]
    if not (np.isfinite(first) and np.isfinite(last)):
        return float("nan")
    if last == 0:
        return float("inf") if first > 0 else 0.0
    return first / last


def problems(rows: list[dict], ratio: float) -> list[str]:
    """Each problem found, in plain words, with what to try."""
    found = []
    squashing = [row["type"] for row in rows if row["type"] in ("Sigmoid", "Tanh")]
    if np.isnan(ratio):
        found.append("Non-finite gradients: the forward or backward pass overflows (inf or nan). Look for huge "
                     "weights or inputs; lower the learning rate; use an init that scales with fan-in.")
    elif ratio > EXPLODING_RATIO:
        found.append(f"Exploding gradients: the first layer's gradients are {ratio:.1e} times the last layer's, so "
                     "the early weights take huge steps while the late ones barely move. Use an init that keeps the "
                     "scale (kaiming_* for ReLU, xavier_* for tanh), add batch-norm, or lower the learning rate.")
    elif zero := [row["layer"] for row in rows if row.get("grad_rms") == 0]:
        found.append(f"No gradient: the weights of {', '.join(zero)} get a gradient of exactly 0, so they never "
                     "change. With all-zero weights (init zeros) or units that all output 0, nothing flows back: "
                     "use a random init (kaiming_* for ReLU, xavier_* for tanh/sigmoid).")
    elif ratio < VANISHING_RATIO:
        why = {"Sigmoid": "each sigmoid passes back at most 1/4 of the gradient, and small weights shrink it further",
               "Tanh": "each tanh's slope is at most 1, and small weights shrink the gradient further",
               None: "each layer scales the gradient by its weights and its activation's slope"}[
                   squashing[0] if squashing else None]
        found.append(f"Vanishing gradients: the first layer's gradients are {ratio:.1e} times the last layer's, so "
                     f"the first layers barely learn: {why}, layer after layer. Use ReLU with He init (kaiming_*), "
                     "or batch-norm before each activation, or fewer layers.")
    dead = [row for row in rows if row.get("dead", 0) > DEAD_FRACTION]
    if dead:
        worst = max(dead, key=lambda row: row["dead"])
        found.append(f"Dead ReLUs: {worst['dead']:.0%} of the units of {worst['layer']} never fire on this batch "
                     "and get no gradient. Use He init with zero biases, a lower learning rate, or leaky_relu.")
    saturated = [row for row in rows if row.get("saturated", 0) > SATURATED_FRACTION]
    if saturated:
        worst = max(saturated, key=lambda row: row["saturated"])
        found.append(f"Saturated units: {worst['saturated']:.0%} of the outputs of {worst['layer']} "
                     f"({worst['type']}) sit in the flat tails, where the slope is nearly 0. Use smaller initial "
                     "weights (xavier_*), batch-norm before the activation, or ReLU.")
    return found


def check_gradient_health(model, x: np.ndarray, y: np.ndarray) -> CheckResult:
    """7. Vanishing or exploding gradients, dead ReLUs, saturated sigmoid/tanh units (see the module)."""
    rows = layer_profile(model, x, y)
    ratio = gradient_ratio(rows)
    dead = max([row["dead"] for row in rows if "dead" in row], default=0.0)
    saturated = max([row["saturated"] for row in rows if "saturated" in row], default=0.0)
    measured = f"grad ratio {ratio:.1e}"
    if any("dead" in row for row in rows):
        measured += f", dead {dead:.0%}"
    if any("saturated" in row for row in rows):
        measured += f", saturated {saturated:.0%}"
    expected = f"ratio in [1e-3, 1e3], dead/sat <= {max(DEAD_FRACTION, SATURATED_FRACTION):.0%}"
    values = {"gradient_ratio": ratio, "max_dead_fraction": dead, "max_saturated_fraction": saturated, "layers": rows}
    found = problems(rows, ratio)
    message = " ".join(found) if found else "gradients reach the first layer at a healthy scale"
    return CheckResult("gradient health", not found, measured, expected, message, values)


def profile_table(rows: list[dict]) -> list[dict]:
    """The profile as table rows for `benchmark.commands.describe.format_table`."""
    return [{"layer": row["layer"], "type": row["type"],
             "grad rms": f"{row['grad_rms']:.1e}" if "grad_rms" in row else "",
             "dead": f"{row['dead']:.0%}" if "dead" in row else "",
             "saturated": f"{row['saturated']:.0%}" if "saturated" in row else ""} for row in rows]
