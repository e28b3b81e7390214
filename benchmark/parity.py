"""Parity: do the scratch MLP and its torch twin compute the same thing, tensor by tensor?

    report = gradient_parity(model, x, y, numerical=True)   # one batch, forward and backward
    report = trajectory_parity(model, train_spec, batches)  # k optimiser steps in lockstep
    report = compare_layer(MyLayer(), torch_layer)          # your own layer (torch_layer=None: FD)
    print(report.table()); print(report.verdict()); report.ok, report.first_break

`gradient_parity` copies the scratch model's weights and buffers into a fresh `torch_ref` twin and
runs one batch through both, the torch side with the dropout masks the scratch side drew. In order
it compares each layer's output (pre-activations, activations, ...), batch-norm running statistics,
the loss, then backwards layer by layer each parameter gradient and the gradient with respect to the
layer's input. The first tensor out of tolerance is the break (see `benchmark.compare` for the
measures and the tolerances: relative error 1e-10 in float64, 1e-4 in float32). With
`numerical=True` a second referee, central finite differences in float64, checks every parameter
gradient of the scratch model at sampled coordinates, so that a bug both sides share cannot hide.

`trajectory_parity` steps both optimisers on the same batches and masks and compares, after every
step, every parameter, every optimiser state (momentum_buffer, exp_avg, ...), the batch-norm
buffers and the learning rate. L1 (`l1`) adds l1 * sum|W| over Linear weights to both losses.

The models given are never changed: the engine works on copies. torch is imported inside the
functions that use it, so that `svt --help` does not load it (benchmark/cli.py).

    svt parity [--spec NAME|FILE | --layers ...] [--dtype float64] [--steps K] [--batch N] [--dump FILE.npz]

runs both on real MNIST batches (those the first epoch of training would see), prints the tables
and a one-line verdict, and exits 0 on parity, 1 on a break, 2 on bad input.
"""
from __future__ import annotations

import argparse
import copy
import math
from dataclasses import replace

import numpy as np

from benchmark.compare import SUM_MARGIN, TOLERANCES, ParityReport, compare_all
from benchmark.errors import UserError, check_output_file, check_size
from benchmark.scratch_side import (batch_sum_scale, layer_numerical_parity, loss_free_names, numerical_parity,
                                    scratch_pass)

BASELINE_FACTOR = 10  # float32 trajectories: scratch may be this many times as far from torch as torch is from float64


def pass_pairs(scratch, reference, kinds: dict[str, str], x: np.ndarray, dtype: str) -> list[tuple]:
    """(name, layer kind, kind of tensor, scratch, reference[, atol]) in the order things are
    computed: forward layer by layer (with batch-norm buffers), the loss, then backward from the last
    layer to the first. A parameter gradient's atol is SUM_MARGIN ulps of the sum of the absolute
    terms it adds up (`batch_sum_scale`)."""
    pairs, layer_inputs = [], dict(zip(kinds, [x, *scratch.outputs.values()]))
    for layer, kind in kinds.items():
        pairs.append((f"{layer}.output", kind, "output", scratch.outputs[layer], reference.outputs[layer]))
        pairs += [(name, kind, name.rpartition(".")[2], value, reference.buffers[name])
                  for name, value in scratch.buffers.items() if name.rpartition(".")[0] == layer]
    pairs.append(("loss", "", None, scratch.loss, reference.loss))
    for layer, kind in reversed(kinds.items()):
        terms = batch_sum_scale(layer_inputs[layer], scratch.outputs[layer], scratch.grad_outputs[layer])
        atol = SUM_MARGIN * float(np.finfo(np.dtype(dtype)).eps) * terms
        pairs += [(f"{name}.grad", kind, "grad", value, reference.grads[name], atol)
                  for name, value in scratch.grads.items() if name.rpartition(".")[0] == layer]
        pairs.append((f"{layer}.grad_input", kind, "grad", scratch.grad_inputs[layer], reference.grad_inputs[layer]))
    return pairs


def twin(scratch_model, dtype: str | None = None):
    """A `torch_ref` model with the scratch model's spec, weights, buffers and train/eval mode,
    in the model's dtype or in `dtype` (floating-point state cast to it)."""
    from torch_ref import build_model, load_from_numpy

    dtype = dtype or scratch_model.spec.dtype
    module = build_model(replace(scratch_model.spec, dtype=dtype))
    load_from_numpy(module, {key: value.astype(dtype) if value.dtype.kind == "f" else value
                             for key, value in scratch_model.state_dict().items()})
    return module.train(scratch_model.training)


def layer_kinds(model) -> dict[str, str]:
    return {name: type(layer).__name__ for name, layer in model.named_layers()}


def gradient_parity(scratch_model, x: np.ndarray, y: np.ndarray, *, l1: float = 0.0,
                    masks: dict[str, np.ndarray] | None = None, numerical: bool = False,
                    tolerance: float | None = None) -> ParityReport:
    """Compare one forward and backward of `scratch_model` (a scratch_nn MLP) and its torch twin.

    x (N, input_size) in the model's dtype, y (N,) int64 class labels. `masks` ({"layers.3": mask})
    fixes the dropout masks of both sides; without it the scratch side draws them from (a copy of)
    its generator, and torch applies the same. `numerical=True` appends the finite-difference
    referee's rows. `tolerance` defaults to TOLERANCES[dtype]. The model is not changed.
    """
    from torch_ref import build_loss, forward_backward

    model = copy.deepcopy(scratch_model)  # its generator too: the caller's draws are not consumed
    module = twin(model)
    tolerance = TOLERANCES[model.spec.dtype] if tolerance is None else tolerance
    scratch = scratch_pass(model, x, y, l1, masks or {})
    reference = forward_backward(module, build_loss(model.spec), x, y, l1, scratch.masks)
    dtype = model.spec.dtype
    pairs = pass_pairs(scratch, reference, layer_kinds(model), x, dtype)
    report = ParityReport(compare_all(pairs, tolerance, dtype), dtype)
    if numerical:
        report = report + numerical_parity(scratch_model, x, y, l1=l1, masks=scratch.masks)
    return report


# ---------------------------------------------------------------------------------------------
# Trajectory: k optimiser steps in lockstep


def scratch_state(model, optimizer) -> dict[str, np.ndarray]:
    """Parameters, optimiser states ("layers.0.weight.exp_avg"), buffers and "lr" of the scratch side."""
    state = {}
    for name, value in model.named_parameters():
        state[name] = value.copy()
        state.update({f"{name}.{key}": np.array(entry) for key, entry in optimizer.state.get(name, {}).items()
                      if entry is not None})
    state.update({name: value.copy() for name, value in model.named_buffers()})
    state["lr"] = np.array(optimizer.lr)
    return state


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


class TorchSide:
    """A torch twin of a scratch model with its optimiser and scheduler, in `dtype`."""

    def __init__(self, model, train_spec, dtype: str) -> None:
        import torch_ref

        self.module = twin(model, dtype)
        self.optimizer = torch_ref.build_optimizer(train_spec, self.module)
        self.scheduler = torch_ref.build_scheduler(train_spec, self.optimizer)
        self.loss_fn, self.dtype, self.l1 = torch_ref.build_loss(model.spec), dtype, train_spec.l1

    def step(self, x: np.ndarray, y: np.ndarray, masks: dict, step_scheduler: bool) -> dict[str, np.ndarray]:
        """One training step; returns the loss before it and the state after it."""
        import torch_ref

        x, masks = x.astype(self.dtype), {name: mask.astype(self.dtype) for name, mask in masks.items()}
        reference = torch_ref.forward_backward(self.module, self.loss_fn, x, y, self.l1, masks)
        self.optimizer.step()
        if step_scheduler and self.scheduler is not None:
            self.scheduler.step()
        return {"loss": reference.loss, **torch_ref.training_state(self.module, self.optimizer)}


def trajectory_parity(scratch_model, train_spec, batches: list[tuple[np.ndarray, np.ndarray]], *,
                      step_schedulers: bool = False, tolerance: float | None = None) -> ParityReport:
    """Train copies of `scratch_model` and its torch twin for one step per batch, in lockstep.

    Both sides get the same (x, y) and the dropout masks the scratch side draws; after step k the
    report has `step k/loss` (before the step) and `step k/<name>` for every parameter, optimiser
    state (`layers.0.weight.exp_avg`, ...), buffer, and `lr`. Batches may differ in size (a short
    last batch). `step_schedulers` steps both lr schedulers after every step (in training they step
    once per epoch), so that a few steps cover a schedule. Rows of `loss_free_names` are shown
    with tolerance inf ("n/a").

    float32: a row's tolerance is max(1e-4, BASELINE_FACTOR x torch's own float32 error), its
    distance from a float64 torch run from the same start. Adam and RMSprop divide by sqrt(v) + eps,
    which turns gradient elements near zero, known to few float32 digits, into full-size steps:
    torch float32 is ~5e-4 from float64 after one RMSprop step with momentum (measured on MNIST).
    Two float32 implementations cannot agree better than each agrees with the exact result; on
    MNIST scratch and torch float32 differ by up to 3x torch's own error (RMSprop), hence 10.
    Float64 trajectories are judged at 1e-10 with no widening: they are where exactness is shown.
    """
    from scratch_nn import optim, schedulers

    model = copy.deepcopy(scratch_model)
    dtype = model.spec.dtype
    optimizer = optim.build_optimizer(train_spec, dict(model.named_parameters()))
    scheduler = schedulers.build_scheduler(train_spec, optimizer)
    sides = [TorchSide(model, train_spec, dtype)] + [TorchSide(model, train_spec, "float64")] * (dtype == "float32")
    tolerance = TOLERANCES[dtype] if tolerance is None else tolerance
    kinds, unjudged, rows = layer_kinds(model), loss_free_names(model, train_spec), []
    for step, (x, y) in enumerate(batches, start=1):
        scratch = scratch_pass(model, x, y, train_spec.l1)
        optimizer.step(scratch.grads)
        if step_schedulers and scheduler is not None:
            scheduler.step()
        states = [{"loss": scratch.loss, **scratch_state(model, optimizer)}]
        states += [side.step(x, y, scratch.masks, step_schedulers) for side in sides]
        rows += judge_step(f"step {step}/", kinds, states, tolerance, dtype, unjudged)
    return ParityReport(rows, dtype)


def judge_step(prefix: str, kinds: dict[str, str], states: list[dict], tolerance: float, dtype: str,
               unjudged: set[str]) -> list:
    """Compare scratch's state (states[0]) with torch's (states[1]); with a float64 torch state
    (states[2]) widen each row's tolerance to BASELINE_FACTOR x torch's own distance from it."""
    rows = compare_all(state_pairs(prefix, kinds, states[0], states[1]), tolerance, dtype, kind_floor=1.0)
    exact = {} if len(states) < 3 else {
        row.name: row.rel_error
        for row in compare_all(state_pairs(prefix, kinds, states[1], states[2]), tolerance, dtype, kind_floor=1.0)}
    for row in rows:
        row.tolerance = max(row.tolerance, BASELINE_FACTOR * exact.get(row.name, 0.0))
        if row.name.removeprefix(prefix) in unjudged:
            row.tolerance = math.inf
    return rows


# ---------------------------------------------------------------------------------------------
# One layer of your own


def compare_layer(scratch_layer, torch_layer=None, input_shape: tuple[int, ...] = (8, 5),
                  dtype: str = "float64", seed: int = 0, tolerance: float | None = None) -> ParityReport:
    """Check a scratch-style layer (forward/backward/params/grads) against torch or finite differences.

    The layer sees x ~ N(0, 1) of `input_shape` and a random upstream gradient g, i.e. the loss
    sum(forward(x) * g). With `torch_layer` (e.g. `nn.Linear(5, 3, dtype=torch.float64)`, same
    parameter names) the scratch parameters and buffers are copied into it and the report compares
    the output, the buffers, every parameter gradient and the input gradient. With None, central
    finite differences in float64 judge the input gradient and every parameter gradient (at up
    to 12 coordinates each; needs dtype "float64" and a layer that is deterministic given
    `next_mask`). The scratch layer is run (its caches, grads and buffers change).

        report = compare_layer(MySwish(), None, input_shape=(16, 10))
        print(report.table()); assert report.ok, report.verdict()
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape).astype(dtype)
    if torch_layer is None:
        return layer_numerical_parity(scratch_layer, x, rng)
    import torch
    from torch_ref import load_from_numpy

    load_from_numpy(torch_layer, {**scratch_layer.params, **scratch_layer.buffers})
    output = scratch_layer.forward(x.copy())
    grad_out = rng.standard_normal(output.shape).astype(dtype)
    grad_input = scratch_layer.backward(grad_out)
    if getattr(scratch_layer, "mask", None) is not None and hasattr(torch_layer, "next_mask"):
        torch_layer.next_mask = torch.from_numpy(np.array(scratch_layer.mask))
    inputs = torch.from_numpy(x.copy()).requires_grad_()
    torch_output = torch_layer(inputs)
    torch_output.backward(torch.from_numpy(grad_out))
    kind, torch_params = type(scratch_layer).__name__, dict(torch_layer.named_parameters())
    pairs = [("output", kind, "output", output, torch_output.detach().numpy())]
    pairs += [(name, kind, name, value, getattr(torch_layer, name).numpy()) for name, value in scratch_layer.buffers.items()]
    pairs += [(f"{name}.grad", kind, "grad", value, torch_params[name].grad.numpy())
              for name, value in scratch_layer.grads.items()]
    pairs.append(("grad_input", kind, "grad", grad_input, inputs.grad.numpy()))
    return ParityReport(compare_all(pairs, TOLERANCES[dtype] if tolerance is None else tolerance, dtype), dtype)


# ---------------------------------------------------------------------------------------------
# `svt parity`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `svt parity`: the shared model options, plus steps, batch, dump and data folder."""
    from benchmark.data import add_data_dir_argument
    from benchmark.specargs import add_model_arguments

    add_model_arguments(parser)
    group = parser.add_argument_group("parity")
    group.add_argument("--steps", type=int, default=10, metavar="K",
                       help="optimiser steps compared in lockstep after the gradient check (default: 10)")
    group.add_argument("--batch", type=int, default=None, metavar="N",
                       help="examples per batch (default: the spec's batch_size)")
    group.add_argument("--dump", metavar="FILE.npz", default=None,
                       help="write every compared tensor of both sides to this .npz (keys scratch/..., torch/...)")
    add_data_dir_argument(group)


def mnist_batches(spec, batch: int, count: int, data_dir: str | None):
    """The scratch model of `spec` and the first `count` training batches of its first epoch, drawn
    as in training: one generator(seed) gives the init, then the epoch's permutation."""
    from benchmark.data import as_inputs, as_labels, load_mnist
    from scratch_nn.model import MLP

    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(spec.train.seed)
    model = MLP(spec.model, rng)
    order = rng.permutation(len(mnist.train_labels))
    batches = []
    for start in range(0, count * batch, batch):
        chosen = order[start:start + batch]
        batches.append((as_inputs(mnist.train_images[chosen], spec.model.dtype), as_labels(mnist.train_labels[chosen])))
    return model, batches


def run(args: argparse.Namespace) -> int:
    """Gradient parity (with the finite-difference referee) on a real MNIST batch, then --steps
    optimiser steps in lockstep; exit 0 on parity, 1 on a break, 2 on bad input."""
    from benchmark.data import TRAIN_IMAGES
    from benchmark.specargs import spec_from_args

    spec = spec_from_args(args)
    batch = spec.train.batch_size if args.batch is None else args.batch
    if args.steps < 0:
        raise UserError(f"--steps must be 0 or more, got {args.steps}")
    check_size("--batch" if args.batch is not None else "the spec's batch_size", batch,
               TRAIN_IMAGES // max(args.steps, 1), f"the {TRAIN_IMAGES} MNIST training images" if args.steps < 2
               else f"1/{args.steps} of the {TRAIN_IMAGES} MNIST training images (--steps {args.steps}: distinct batches)")
    if batch < 2 and any(layer.batch_norm for layer in spec.model.layers):
        raise UserError(f"--batch {batch}: batch norm needs at least 2 examples per batch in training")
    if args.dump:
        check_output_file(args.dump, "--dump")
    model, batches = mnist_batches(spec, batch, max(args.steps, 1), args.data_dir)
    print(f"parity: spec {spec.name}, {spec.model.dtype}, batch {batch}, {args.steps} steps of {spec.train.optimizer}")
    gradient = gradient_parity(model, *batches[0], l1=spec.train.l1, numerical=True)
    print(gradient.table())
    report = gradient
    if args.steps:
        trajectory = trajectory_parity(model, spec.train, batches[:args.steps])
        print(f"\ntrajectory: {args.steps} steps in lockstep (parameters, optimiser state, buffers, lr)")
        print(trajectory.step_table())
        report = gradient + trajectory
    if args.dump:
        report.dump(args.dump)
        print(f"\nwrote {len(report.arrays())} arrays to {args.dump}")
    print(report.verdict())
    return 0 if report.ok else 1
