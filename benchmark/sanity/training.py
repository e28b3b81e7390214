"""Checks 4-6 of `svt sanity`: does the net learn? Each trains a copy of the model with the spec's
optimiser and learning rate (the scratch side's step, `benchmark.sides.scratch.ScratchSide`), with
NumPy's floating-point warnings silenced: a diverging run is reported as a FAIL naming the step.

    check_overfit          4  32 images learnt by heart
    check_uses_input       5  real images beat all-zero images on held-out accuracy
    check_loss_decreases   6  the loss goes down over the first steps of real training
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from benchmark.sanity.checks import CheckResult, working_copy
from benchmark.sides.scratch import ScratchSide
from scratch_nn.spec import TrainSpec

OVERFIT_STEPS = 200
UNSTABLE_FACTOR = 1.5  # an overfit loss ending above 1.5x its minimum overshoots
USES_INPUT_STEPS = 100
USES_INPUT_MARGIN = 0.20  # held-out accuracy, real inputs minus zero inputs
DECREASE_WINDOW = 10  # steps averaged at the end of the loss curve
DECREASE_FRACTION = 0.10  # the end must be at least 10% below the start
SPIKE_FACTOR = 3.0  # a loss above 3x the first one on the way is an overshoot

# ---------------------------------------------------------------------------------------------
# Training helpers


def train(model, train_spec: TrainSpec, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Train `model` in place on `batches` with the spec's optimiser (the run's scratch side,
    `ScratchSide.around`); the losses, one per step. The layers' modes are left as they are (a
    working copy may have its dropout off). Stops after the first non-finite loss (the last one returned)."""
    side = ScratchSide.around(model, train_spec)
    losses = []
    with np.errstate(all="ignore"):
        for x, y in batches:
            side.forward(x, y)
            side.backward()
            side.update()
            losses.append(side.loss_value())
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
# 4-6: training


def memorise(model, train_spec: TrainSpec, x: np.ndarray, y: np.ndarray,
             max_steps: int) -> tuple[float, list[float]]:
    """Train a copy of `model` (dropout off) on the one batch (x, y) until it gets every image right,
    at most `max_steps` steps; the best training accuracy seen and the losses, one per step."""
    side = ScratchSide.around(working_copy(model, dropout=False), train_spec)
    best, losses = 0.0, []
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            side.forward(x, y)
            side.backward()
            side.update()
            loss = side.loss_value()
            losses.append(loss)
            if not math.isfinite(loss):
                break
            best = max(best, float(np.mean(side.logits.argmax(axis=1) == y)))
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
