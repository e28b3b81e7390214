"""Trajectory parity: K optimiser steps of the scratch model and its torch twin, compared step by step.

    report = trajectory_parity(model, train_spec, batches)   # one step per (x, y) batch
    print(report.step_table()); report.ok

Each step is judged from synchronized state: the torch twin starts it from exactly the scratch
side's parameters, optimiser state (momentum_buffer, exp_avg, ...), buffers and lr, steps on the
same batch with the same dropout masks, and after the step every parameter, optimiser state,
buffer and the lr are compared (the loss is the one before the step). So a difference is always
one step's difference: a ReLU unit that crosses its kink at step 3 does not carry into steps 4-10.
In float32 a float64 twin, synchronized the same way, is the exact reference (benchmark.parity.compare).

Beside it the free-running drift is reported: a second torch twin that is never synchronized,
trained on the same batches, and its distance from the scratch model's parameters after each step
(`ParityReport.drift`), which grows as rounding differences compound (not judged).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from benchmark.parity import kinks
from benchmark.parity.compare import TOLERANCES, compare_all, compare_with_exact
from benchmark.parity.engine import (
    Passes,
    as_float64,
    explain_kinks,
    explain_locally,
    judge_pass,
    layer_kinds,
)
from benchmark.parity.referee import loss_free_names, targets_as
from benchmark.parity.report import ParityReport
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import Spec


def state_pairs(prefix: str, kinds: dict[str, str], a: dict, b: dict) -> list[tuple]:
    """Pair two states by name; a name on one side only is a break (NaN stands in for it). The
    kind of tensor: "param", the state ("exp_avg", ...) or buffer ("running_var", ...); None for
    the loss and lr."""
    pairs = []
    for name in [*a, *(key for key in b if key not in a)]:
        parts = name.split(".")  # layers, 0, weight[, exp_avg] | layers, 1, running_mean | lr | loss
        layer = ".".join(parts[:2])
        kind = None if len(parts) < 3 else "param" if len(parts) == 3 and parts[2] in ("weight", "bias") else parts[-1]
        pairs.append((f"{prefix}{name}", kinds.get(layer, ""), kind,
                      np.asarray(a.get(name, np.nan)), np.asarray(b.get(name, np.nan))))
    return pairs


class TorchStepper:
    """A torch side (`TorchSide`) twin of a scratch model, in `dtype`, stepped on NumPy batches;
    `step(..., start=state)` first loads a scratch state (synchronized step)."""

    def __init__(self, model, train_spec, dtype: str) -> None:
        spec = Spec(name="model", model=model.spec, train=train_spec)
        self.side = TorchSide(spec, model.state_dict(), dtype=dtype, training=model.training)
        self.loss_fn, self.dtype = self.side.loss_fn, dtype

    def step(self, x: np.ndarray, y: np.ndarray, masks: dict, step_scheduler: bool,
             start: dict | None = None, nudges: dict | None = None):
        """One training step; returns what the pass recorded and {"loss" before it, **state after it}."""
        side = self.side
        if start is not None:
            side.load_state(start)
        self.schedule = None if side.scheduler is None else copy.deepcopy(side.scheduler.state_dict())
        x, masks = x.astype(self.dtype), {name: mask.astype(self.dtype) for name, mask in masks.items()}
        y = targets_as(y, self.dtype)
        seen = side.probe(x, y, masks, nudges)
        side.update()
        if step_scheduler:
            side.end_epoch()
        return seen, {"loss": seen.loss, **side.state()}

    def loaded(self, start: dict):
        """Load `start` (a scratch state) and return a copy of the module as it then is."""
        self.side.load_state(start)
        return copy.deepcopy(self.side.module)

    def update(self, start: dict, grads: dict[str, np.ndarray], step_scheduler: bool) -> dict[str, np.ndarray]:
        """The last step's update alone: from `start`, the optimiser (and scheduler) step on the given
        gradients instead of computed ones. Returns the state after it, as `step` does (no loss)."""
        import torch

        side = self.side
        if side.scheduler is not None:
            side.scheduler.load_state_dict(self.schedule)
        side.load_state(start)
        for name, param in side.module.named_parameters():
            param.grad = torch.from_numpy(np.array(grads[name])).to(param.dtype)
        side.update()
        if step_scheduler:
            side.end_epoch()
        return side.state()

    def retry(self, *step_arguments, **step_keywords):
        """The last step again, from its start (`start` must be given again): the scheduler is
        set back to where that step found it."""
        if self.side.scheduler is not None:
            self.side.scheduler.load_state_dict(self.schedule)
        return self.step(*step_arguments, **step_keywords)


def parameter_drift(scratch: dict[str, np.ndarray], torch: dict[str, np.ndarray], names) -> float:
    """||w_scratch - w_torch|| / ||w_torch|| over all the named parameters together."""
    difference = sum(float(np.sum((scratch[name].astype(np.float64) - torch[name]) ** 2)) for name in names)
    norm = sum(float(np.sum(torch[name].astype(np.float64) ** 2)) for name in names)
    return math.sqrt(difference / norm) if norm else math.sqrt(difference)


def trajectory_parity(scratch_model, train_spec, batches: list[tuple[np.ndarray, np.ndarray]], *,
                      step_schedulers: bool = False, tolerance: float | None = None) -> ParityReport:
    """Train a copy of `scratch_model` for one step per batch, each step compared with its torch
    twin started from the same state (see the module docstring).

    Step k's rows: first its pass as `gradient_parity` judges it (`step k/layers.0.output`, ...,
    `step k/loss`, `step k/layers.0.weight.grad`, ...), then after the update every parameter,
    optimiser state (`step k/layers.0.weight.exp_avg`, ...) and `step k/lr`. Batches may differ in
    size (a short last batch). `step_schedulers` steps both lr schedulers after every step (in
    training they step once per epoch), so that a few steps cover a schedule. Rows of
    `loss_free_names` are shown with tolerance inf ("n/a"). `tolerance`: float64 only (default 1e-10).
    """
    model = copy.deepcopy(scratch_model)
    dtype, layers = model.spec.dtype, dict(model.named_layers())
    side = ScratchSide.around(model, train_spec)
    synced, free = TorchStepper(model, train_spec, dtype), TorchStepper(model, train_spec, dtype)
    exact = TorchStepper(model, train_spec, "float64") if dtype == "float32" else None
    tolerance = TOLERANCES["float64"] if tolerance is None else tolerance
    unjudged, names = loss_free_names(model, train_spec), [name for name, _ in model.named_parameters()]
    buffers = {name for name, _ in model.named_buffers()}  # judged in the pass rows, not again

    def updated(state: dict) -> dict:
        return {name: value for name, value in state.items() if name not in buffers and name != "loss"}

    report = ParityReport([], dtype)
    for step, (x, y) in enumerate(batches, start=1):
        prefix, start = f"step {step}/", side.state()
        scratch = side.probe(x, y)
        seen, torch_after = synced.step(x, y, scratch.masks, step_schedulers, start)
        exact_seen, exact_after = None, None
        if exact is None:  # torch's twin as before the step, when a row needs explaining (the next step
            def before(start=start):  # loads its own start again)
                return synced.loaded(start)
        else:
            exact_arguments = (x.astype(np.float64), y, as_float64(scratch.masks), step_schedulers,
                               as_float64(start))
            module64 = exact.loaded(exact_arguments[-1])  # the float64 twin before the step, for explanations
            exact_seen, exact_after = exact.step(*exact_arguments[:-1])

            def before(module64=module64):
                return copy.deepcopy(module64)
        passes = Passes(scratch, seen, exact_seen, before, synced.loss_fn)
        for row in judge_pass(passes, layers, x, y, train_spec.l1, tolerance):
            row.name = prefix + row.name
            report.rows.append(row)
        side.update()  # the gradients the pass left in the model: scratch.grads
        if step_schedulers:
            side.end_epoch()
        after = updated(side.state())
        if exact is None:
            rows = judge_float64_step(prefix, layers, tolerance, (x, scratch, seen, after, updated(torch_after)),
                                      lambda nudges: updated(synced.retry(x, y, scratch.masks, step_schedulers, start,
                                                                          nudges=nudges)[1]))
        else:
            rows = judge_float32_step(prefix, layers, unjudged, (x, scratch, seen, after, updated(torch_after)),
                                      (exact_seen, updated(exact_after)),
                                      lambda nudges: updated(exact.retry(*exact_arguments, nudges)[1]),
                                      lambda grads: updated(exact.update(as_float64(start), as_float64(grads),
                                                                         step_schedulers)))
        report.rows += unjudge(rows, prefix, unjudged)
        _, free_after = free.step(x, y, scratch.masks, step_schedulers)
        report.drift[f"step {step}"] = parameter_drift(after, free_after, names)
    return report


def unjudge(rows: list, prefix: str, unjudged: set[str]) -> list:
    """Rows of `loss_free_names` get tolerance inf: shown, not judged."""
    for row in rows:
        if row.name.removeprefix(prefix) in unjudged:
            row.tolerance = math.inf
    return rows


def judge_float64_step(prefix: str, layers: dict, tolerance: float, sides: tuple, nudged_step) -> list:
    """The state after one float64 step against torch's from the same state; rows out of tolerance
    are explained by the step pass's kink crossings and pooling ties (torch's step recomputed by
    `nudged_step(nudges)` -> state after), as the pass's own rows are."""
    x, scratch, seen, after, torch_after = sides
    kinds = layer_kinds(layers)

    def judge(torch_state):
        return compare_all(state_pairs(prefix, kinds, after, torch_state), tolerance, "float64", kind_floor=1.0)

    rows = judge(torch_after)
    explain_kinks(rows, lambda: kinks.crossings(layers, kinks.layer_inputs(kinds, x, scratch.outputs),
                                                kinks.layer_inputs(kinds, x, seen.outputs)),
                  lambda nudges: judge(nudged_step(nudges)))
    return rows


def judge_float32_step(prefix: str, layers: dict, unjudged: set[str], sides: tuple, exact: tuple,
                       nudged_step, update_alone) -> list:
    """The state after one float32 step judged against the float64 twin's step from the same state,
    `exact` = (recorded, state after). Rows out of bound: kink crossings of that step's pass (the
    reference recomputed by `nudged_step(nudges)` -> state after), then the update rule alone
    (`update_alone(grads)` -> the state float64 makes of a side's own gradients, which the step's
    pass rows have judged)."""
    x, scratch, seen, after, torch_after = sides
    exact_seen, exact_after = exact
    kinds = layer_kinds(layers)

    def judge(scratch_reference, torch_reference=exact_after):
        return unjudge(compare_with_exact(state_pairs(prefix, kinds, after, torch_after),
                                          state_pairs(prefix, kinds, after, scratch_reference),
                                          state_pairs(prefix, kinds, torch_after, torch_reference), kind_floor=1.0),
                       prefix, unjudged)

    rows = judge(exact_after)

    def find():
        return kinks.crossings(layers, kinks.layer_inputs(kinds, x, scratch.outputs),
                               kinks.layer_inputs(kinds, x.astype(np.float64), exact_seen.outputs),
                               kinks.layer_inputs(kinds, x, seen.outputs))

    explain_kinks(rows, find, lambda nudges: judge(nudged_step(nudges)))
    explain_locally(rows, lambda: judge(update_alone(scratch.grads), update_alone(seen.grads)))
    return rows
