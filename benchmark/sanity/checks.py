"""The training-sanity checks of `svt sanity`, one function per check, each returning a CheckResult.

    check_initial_loss, check_gradients, check_parity          1-3, before any training (here)
    check_overfit, check_uses_input, check_loss_decreases      4-6, training (benchmark.sanity.training)
    check_gradient_health                                      7, gradients layer by layer (benchmark.sanity.health)

Every check works on copies: the model given is never changed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from scratch_nn.losses import build_loss

CROSS_ENTROPY_TOLERANCE = 0.5  # logits of rms s add about s^2 / 2 to ln(C): 0.5 allows s up to 1
MSE_TOLERANCE = 1.0  # logits of rms s add about s^2 to 1/C: 1.0 allows the same s up to 1


@dataclass(frozen=True)
class CheckResult:
    """One check: what was measured, what was expected, PASS or FAIL, and what it means."""

    name: str
    passed: bool
    measured: str  # the figure, for people: "2.389"
    expected: str  # the expectation, for people: "ln(10) = 2.303 +- 0.5"
    message: str  # what the outcome means; for a FAIL also what to try
    values: dict = field(default_factory=dict)  # the raw figures, for --json
    note: str = ""  # a caveat worth showing even with a PASS


# ---------------------------------------------------------------------------------------------
# What every check uses


def working_copy(model, dropout: bool = True):
    """A deep copy of `model` in training mode; `dropout=False` turns its Dropout layers off only
    (BatchNorm keeps using batch statistics)."""
    model = copy.deepcopy(model).train()
    for (_, layer), entry in zip(model.named_layers(), model.spec.entries):  # inside blocks too
        if entry.spec.type == "dropout":
            layer.training = dropout
    return model

# ---------------------------------------------------------------------------------------------
# 1-3: before any training


def expected_initial_loss(model_spec) -> tuple[float, float, str]:
    """The loss of an untrained net whose logits are near zero, its tolerance and a label.

    Cross-entropy: ln(C) (label smoothing does not change it: a uniform guess is equally far from
    every class). MSE on one-hot targets: mean (z - t)^2 with z = 0 is 1/C.
    """
    classes = model_spec.output_size
    if model_spec.loss == "mse":
        expected, tolerance, formula = 1.0 / classes, MSE_TOLERANCE, f"1/{classes}"
    else:
        expected, tolerance, formula = math.log(classes), CROSS_ENTROPY_TOLERANCE, f"ln({classes})"
    return expected, tolerance, f"{formula} = {expected:.3f} +- {tolerance:g}"


def check_initial_loss(model, x: np.ndarray, y: np.ndarray) -> CheckResult:
    """1. The mean loss of the untrained model over (x, y), in training mode with dropout off."""
    expected, tolerance, label = expected_initial_loss(model.spec)
    with np.errstate(all="ignore"):
        loss = float(build_loss(model.spec).forward(working_copy(model, dropout=False).forward(x), y))
    passed = abs(loss - expected) <= tolerance  # False for NaN
    if passed:
        message = "the untrained net spreads its guesses evenly over the classes, as it should"
    elif loss > expected:
        message = ("the untrained net is confidently wrong: its logits are too large. The output layer "
                   "(or an earlier one) starts with weights that are too big: use an init that scales "
                   "with fan-in (kaiming_* for ReLU, xavier_* for tanh/sigmoid) or shrink the last layer.")
    else:
        message = ("the untrained net already predicts the labels: check that the labels do not leak "
                   "into the inputs, and that the loss is averaged over the batch.")
    return CheckResult("initial loss", passed, f"{loss:.3f}", label, message,
                       {"loss": loss, "expected": expected, "tolerance": tolerance})


def suspect_layers(model, broken: set[str]) -> str:
    """Layers that can hold a backward bug, given the parameters whose gradients are wrong: from the
    deepest layer with a wrong gradient up to the next layer whose gradient is right."""
    named = model.named_layers()  # in the model's order, a block before its own layers
    names = [name for name, _ in named]
    with_params = [index for index, (_, layer) in enumerate(named) if layer.params]
    deepest = max(names.index(name) for name in broken)
    right = [index for index in with_params if index > deepest]
    end = right[0] if right else len(names)
    return ", ".join(f"{names[index]} ({type(named[index][1]).__name__})" for index in range(deepest, end))


def check_gradients(model, x: np.ndarray, y: np.ndarray, l1: float = 0.0) -> CheckResult:
    """2. Analytic gradients against central finite differences, on a float64 copy of the model,
    sampled coordinates of every parameter tensor, a small batch, dropout masks held fixed
    (`benchmark.parity.referee.numerical_parity`, the parity engine's second referee)."""
    from benchmark.parity.compare import FD_TOLERANCE
    from benchmark.parity.referee import numerical_parity
    from benchmark.sides.scratch import scratch_pass

    masks = scratch_pass(working_copy(model), x, y).masks  # one draw per Dropout layer, then held fixed
    report = numerical_parity(model, x, y, l1=l1, masks=masks)
    # the worst row the tolerance judged: a row explained by a kink of the loss (its central
    # difference straddles ReLU's 0 or a max-pool tie) is counted, not shown as the measure
    judged = [row for row in report.rows if not row.explained] or report.rows
    worst = max((row.rel_error for row in judged), key=lambda error: np.nan_to_num(error, nan=np.inf))
    kinks = sum(bool(row.explained) for row in report.rows)
    expected = f"rel error <= {FD_TOLERANCE:g}"
    values = {"worst_rel_error": worst, "tolerance": FD_TOLERANCE, "tensors": len(report.rows),
              "explained_by_kinks": kinks}
    if report.ok:
        measured = f"rel error {worst:.1e}" + (f", {kinks} at kinks" if kinks else "")
        detail = (f"; {kinks} tensor{'s' * (kinks != 1)} sampled across a kink of the loss, where the backward "
                  "lies between the one-sided slopes (`svt parity` shows them)" if kinks else "")
        return CheckResult("gradient check", True, measured, expected,
                           f"backward agrees with finite differences on {len(report.rows)} parameter tensors "
                           f"(float64 copy){detail}", values)
    broken = {row.name.removeprefix("fd/").removesuffix(".grad").rpartition(".")[0]
              for row in report.rows if not row.ok}
    message = (f"backward disagrees with finite differences ({report.first_break.name.removeprefix('fd/')}: "
               f"rel error {report.first_break.rel_error:.1e}): a backward formula is wrong. The error enters "
               f"in one of: {suspect_layers(model, broken)}; compare its backward with the derivative of its "
               f"forward, and check it with scratch_nn.gradcheck.check_layer_gradients.")
    return CheckResult("gradient check", False, f"rel error {worst:.1e}", expected, message, values)


def check_parity(model, x: np.ndarray, y: np.ndarray, l1: float = 0.0) -> CheckResult:
    """3. One batch through the model and its torch twin: every output, the loss and every gradient
    (`benchmark.parity.engine.gradient_parity`)."""
    import torch

    from benchmark.parity.engine import gradient_parity

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one batch of small tensors: a thread pool only adds latency and contention
    try:
        report = gradient_parity(model, x, y, l1=l1)
    finally:
        torch.set_num_threads(threads)
    worst = report.worst  # a model always has rows to compare
    float32 = model.spec.dtype == "float32"  # then judged against a float64 reference (benchmark.parity.compare)
    measured = (f"vs f64 {worst.exact_scratch:.1e} (torch {worst.exact_torch:.1e})" if float32
                else f"rel error {worst.rel_error:.1e}")
    expected = "as close to float64 as torch (float32)" if float32 else f"rel error <= {worst.tolerance:g} (float64)"
    values = {"worst_rel_error": worst.rel_error, "worst_tensor": worst.name, "tolerance": worst.tolerance,
              "scratch_vs_f64": worst.exact_scratch if float32 else None,
              "torch_vs_f64": worst.exact_torch if float32 else None, "tensors": len(report.rows)}
    if report.ok:
        return CheckResult("parity with torch", True, measured, expected,
                           f"{len(report.rows)} tensors agree with the torch twin", values)
    message = (f"the scratch model and its torch twin part ways: {report.verdict()}. The first tensor "
               "that differs names the layer to look at; `svt parity` shows every tensor.")
    return CheckResult("parity with torch", False, measured, expected, message, values)
