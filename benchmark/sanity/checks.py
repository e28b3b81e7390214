"""The training-sanity checks of `svt sanity`, one function per check, each returning a CheckResult.

    check_initial_loss, check_gradients, check_parity          1-3, before any training
    check_overfit, check_uses_input, check_loss_decreases      4-6, training
    benchmark.sanity.health.check_gradient_health                     7, gradients layer by layer

Every check works on copies: the model given is never changed. Training uses the spec's optimiser and
learning rate (`train_step`) with NumPy's floating-point warnings silenced: a diverging run is
reported as a FAIL naming the step, not as a screen of RuntimeWarnings.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from scratch_nn.losses import build_loss
from scratch_nn.optim import build_optimizer
from scratch_nn.spec import TrainSpec
from scratch_nn.train import train_step

CROSS_ENTROPY_TOLERANCE = 0.5  # logits of rms s add about s^2 / 2 to ln(C): 0.5 allows s up to 1
MSE_TOLERANCE = 1.0  # logits of rms s add about s^2 to 1/C: 1.0 allows the same s up to 1
OVERFIT_STEPS = 200
UNSTABLE_FACTOR = 1.5  # an overfit loss ending above 1.5x its minimum overshoots
USES_INPUT_STEPS = 100
USES_INPUT_MARGIN = 0.20  # held-out accuracy, real inputs minus zero inputs
DECREASE_WINDOW = 10  # steps averaged at the end of the loss curve
DECREASE_FRACTION = 0.10  # the end must be at least 10% below the start
SPIKE_FACTOR = 3.0  # a loss above 3x the first one on the way is an overshoot


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
# Training helpers (the step itself is scratch_nn.train.train_step)


def working_copy(model, dropout: bool = True):
    """A deep copy of `model` in training mode; `dropout=False` turns its Dropout layers off only
    (BatchNorm keeps using batch statistics)."""
    model = copy.deepcopy(model).train()
    for layer, layer_spec in zip(model.layers, model.spec.layers):
        if layer_spec.type == "dropout":
            layer.training = dropout
    return model


def train(model, train_spec: TrainSpec, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Train `model` in place on `batches` with the spec's optimiser; the losses, one per step.
    Stops after the first non-finite loss (which is the last one returned)."""
    loss_fn = build_loss(model.spec)
    optimizer = build_optimizer(train_spec, model.named_parameters())
    losses = []
    with np.errstate(all="ignore"):
        for x, y in batches:
            losses.append(train_step(model, loss_fn, optimizer, x, y, train_spec.l1)[0])
            if not math.isfinite(losses[-1]):
                break
    return losses


def cycle_batches(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int):
    """`steps` mini-batches taken in order from (x, y), wrapping around."""
    for step in range(steps):
        chosen = np.arange(step * batch_size, (step + 1) * batch_size) % len(y)
        yield x[chosen], y[chosen]


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Eval-mode accuracy; a model with non-finite logits predicts nothing right (NaN -> 0)."""
    with np.errstate(all="ignore"):
        logits = model.eval().forward(x)
    model.train()
    if not np.all(np.isfinite(logits)):
        return 0.0
    return float(np.mean(logits.argmax(axis=1) == y))


def diverged(losses: list[float], train_spec: TrainSpec) -> str:
    """The message for a loss that became non-finite, naming the step; "" if it stayed finite."""
    if not losses or math.isfinite(losses[-1]):
        return ""
    return (f"the loss became {losses[-1]} at step {len(losses)}: the updates overflow. Lower the "
            f"learning rate (try --lr {train_spec.lr / 10:g}, then smaller).")


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
    names = [name for name, _ in model.named_layers()]
    with_params = [index for index, (_, layer) in enumerate(model.named_layers()) if layer.params]
    deepest = max(names.index(name) for name in broken)
    right = [index for index in with_params if index > deepest]
    end = right[0] if right else len(names)
    return ", ".join(f"{names[index]} ({type(model.layers[index]).__name__})" for index in range(deepest, end))


def check_gradients(model, x: np.ndarray, y: np.ndarray, l1: float = 0.0) -> CheckResult:
    """2. Analytic gradients against central finite differences, on a float64 copy of the model,
    sampled coordinates of every parameter tensor, a small batch, dropout masks held fixed
    (`benchmark.parity.scratch_pass.numerical_parity`, the parity engine's second referee)."""
    from benchmark.parity.compare import FD_TOLERANCE
    from benchmark.parity.scratch_pass import numerical_parity, scratch_pass

    masks = scratch_pass(working_copy(model), x, y).masks  # one draw per Dropout layer, then held fixed
    report = numerical_parity(model, x, y, l1=l1, masks=masks)
    worst = max((row.rel_error for row in report.rows), key=lambda error: np.nan_to_num(error, nan=np.inf))
    expected = f"rel error <= {FD_TOLERANCE:g}"
    values = {"worst_rel_error": worst, "tolerance": FD_TOLERANCE, "tensors": len(report.rows)}
    if report.ok:
        return CheckResult("gradient check", True, f"rel error {worst:.1e}", expected,
                           f"backward agrees with finite differences on {len(report.rows)} parameter tensors "
                           "(float64 copy)", values)
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


# ---------------------------------------------------------------------------------------------
# 4-6: training


def memorise(model, train_spec: TrainSpec, x: np.ndarray, y: np.ndarray,
             max_steps: int) -> tuple[float, list[float]]:
    """Train a copy of `model` (dropout off) on the one batch (x, y) until it gets every image right,
    at most `max_steps` steps; the best training accuracy seen and the losses, one per step."""
    model = working_copy(model, dropout=False)
    loss_fn, optimizer = build_loss(model.spec), build_optimizer(train_spec, model.named_parameters())
    best, losses = 0.0, []
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            loss, logits = train_step(model, loss_fn, optimizer, x, y, train_spec.l1)
            losses.append(loss)
            if not math.isfinite(loss):
                break
            best = max(best, float(np.mean(logits.argmax(axis=1) == y)))
            if best == 1.0:
                break
    return best, losses


def unstable(losses: list[float]) -> bool:
    """The steps overshoot: the loss became non-finite, shot up above SPIKE_FACTOR times its first
    value, or ended above UNSTABLE_FACTOR times the lowest value it reached."""
    return (not math.isfinite(losses[-1]) or max(losses) > SPIKE_FACTOR * losses[0]
            or losses[-1] > UNSTABLE_FACTOR * min(losses))


def overshoot_message(first: list[float], retry: list[float], lr: float, lower_lr: float) -> str:
    """Why memorising failed at the spec's `lr`, where it overshot, and again at `lower_lr`."""
    def outcome(losses: list[float]) -> str:
        if not math.isfinite(losses[-1]):
            return f"the loss became {losses[-1]} at step {len(losses)}"
        if unstable(losses):
            return f"the loss jumped (up to {max(losses):.3g}, from {losses[0]:.3g}; {losses[-1]:.3g} at the end)"
        return f"the loss was still {losses[-1]:.3g} after {len(losses)} steps"

    if unstable(retry):
        advice = f"The steps overshoot: lower the learning rate (try --lr {lower_lr / 10:g} and smaller)"
    else:
        advice = "Try a learning rate between the two, or add batch-norm, which makes the learning rate less critical"
    return f"at the spec's lr {lr:g} {outcome(first)}; at lr {lower_lr:g} {outcome(retry)}. {advice}."


def check_overfit(model, train_spec: TrainSpec, x: np.ndarray, y: np.ndarray,
                  max_steps: int = OVERFIT_STEPS) -> CheckResult:
    """4. Can the net learn the one batch (x, y) by heart, 100% training accuracy within `max_steps`
    steps? With the spec's optimiser and learning rate, and dropout off (a regulariser fights the
    memorising asked for here). If the loss overshoots (see `unstable`), once more at lr / 10: one
    batch seen again and again, with momentum, takes larger effective steps than training does."""
    best, losses = memorise(model, train_spec, x, y, max_steps)
    first = losses
    slower = replace(train_spec, lr=train_spec.lr / 10) if best < 1.0 and unstable(losses) else None
    if slower is not None:
        best, losses = memorise(model, slower, x, y, max_steps)
    lr_used = f" at lr {slower.lr:g}" if slower else ""
    values = {"accuracy": best, "steps": len(losses), "final_loss": losses[-1], "batch": len(y),
              "lr": (slower or train_spec).lr}
    measured, expected = f"{best:.0%} after {len(losses)} steps{lr_used}", f"100% within {max_steps} steps"
    if best == 1.0:
        note = "" if slower is None else (f"at the spec's lr {train_spec.lr:g} the loss jumped "
                                          f"(up to {max(first):.3g}, "
                                          f"from {first[0]:.3g}; {first[-1]:.3g} at the end): lower the lr if "
                                          "real training is unstable too")
        return CheckResult("overfit one batch", True, measured, expected,
                           f"the net learnt {len(y)} images by heart{lr_used} (loss {losses[-1]:.3g}): it has "
                           "the capacity and the optimiser works", values, note)
    if slower is not None:
        problem = overshoot_message(first, losses, train_spec.lr, slower.lr)
    else:
        problem = (f"after {len(losses)} steps the net still gets {1 - best:.0%} of the {len(y)} images it "
                   f"trains on wrong (loss {losses[0]:.3g} -> {losses[-1]:.3g}). If the loss barely moved, the "
                   "learning rate is too low or the gradients vanish (see gradient health); if it got stuck, "
                   "units may have died from too large a step. Use a random init: with init zeros/constant "
                   "all units stay identical and cannot tell inputs apart.")
    return CheckResult("overfit one batch", False, measured, expected, problem, values)


def check_uses_input(model, train_spec: TrainSpec, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                     y_val: np.ndarray, steps: int = USES_INPUT_STEPS,
                     margin: float = USES_INPUT_MARGIN) -> CheckResult:
    """5. Two copies trained alike for `steps` steps, one on (x, y), one on all-zero inputs with
    the same labels; on held-out (x_val, y_val) the first must be ahead by `margin` in accuracy.
    The zero-input model can learn no more than the class frequencies (about 11% on MNIST)."""
    real, blind = working_copy(model), working_copy(model)
    batch_size = train_spec.batch_size
    real_losses = train(real, train_spec, cycle_batches(x, y, batch_size, steps))
    train(blind, train_spec, cycle_batches(np.zeros_like(x), y, batch_size, steps))
    real_accuracy, blind_accuracy = accuracy(real, x_val, y_val), accuracy(blind, np.zeros_like(x_val), y_val)
    gap = real_accuracy - blind_accuracy
    values = {"accuracy_real_inputs": real_accuracy, "accuracy_zero_inputs": blind_accuracy, "steps": steps,
              "train_images": len(y), "held_out_images": len(y_val), "margin": margin}
    measured = f"{real_accuracy:.0%} vs {blind_accuracy:.0%} on zeros"
    expected = f"ahead by >= {margin:.0%} (held-out)"
    if gap >= margin:
        return CheckResult("uses its input", True, measured, expected,
                           "trained on real images the net beats a copy that saw only zeros: it reads its input",
                           values)
    message = diverged(real_losses, train_spec) or (
        f"after {steps} steps the net trained on real images is no better than a copy that saw only "
        "zeros, which can learn nothing but the class frequencies: it does not use its input. Check that "
        "inputs reach the model (not all zero, scaled to about [0, 1]) and match their labels; if the "
        "loss barely moves, see overfit one batch and gradient health.")
    return CheckResult("uses its input", False, measured, expected, message, values)


def check_loss_decreases(model, train_spec: TrainSpec, batches: list[tuple[np.ndarray, np.ndarray]],
                         window: int = DECREASE_WINDOW, fraction: float = DECREASE_FRACTION) -> CheckResult:
    """6. The first len(batches) steps of real training: every loss finite, none above SPIKE_FACTOR
    times the first, and the mean of the last `window` at least `fraction` below the first (the
    untrained net's loss)."""
    losses = train(working_copy(model), train_spec, batches)
    start, end, peak = losses[0], float(np.mean(losses[-window:])), int(np.argmax(losses))
    values = {"losses": losses, "start": start, "end": end, "steps": len(batches)}
    expected = f"finite, end <= {1 - fraction:.0%} of start"
    problem = diverged(losses, train_spec)
    if problem:
        measured = f"{losses[-1]} at step {len(losses)}"
        return CheckResult("loss goes down", False, measured, expected, problem, values)
    measured = f"{start:.3f} -> {end:.3f} in {len(losses)} steps"
    if losses[peak] > SPIKE_FACTOR * start:
        message = (f"the loss shot up to {losses[peak]:.3g} at step {peak + 1} (from {start:.3g}): the steps "
                   f"overshoot. Lower the learning rate (try --lr {train_spec.lr / 10:g}).")
    elif end > (1 - fraction) * start:
        change = f"fell by only {1 - end / start:.1%}" if end < start else "did not fall"
        message = (f"the loss {change} in {len(losses)} steps: the net learns too slowly or not at all. Raise "
                   "the learning rate, or see gradient health for vanishing gradients.")
    else:
        return CheckResult("loss goes down", True, measured, expected,
                           "the training loss falls over the first steps and stays finite", values)
    return CheckResult("loss goes down", False, measured, expected, message, values)
