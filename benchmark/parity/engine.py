"""Parity: do the scratch model and its torch twin compute the same thing, tensor by tensor?

    report = gradient_parity(model, x, y, numerical=True)   # one batch, forward and backward
    report = trajectory_parity(model, train_spec, batches)  # k optimiser steps (benchmark.parity.trajectory)
    report = compare_layer(MyLayer(), torch_layer)          # your own layer (torch_layer=None: FD)
    print(report.table()); print(report.verdict()); report.ok, report.first_break

`gradient_parity` copies the scratch model's weights and buffers into a fresh `torch_ref` twin and
runs one batch through both, the torch side with the dropout masks the scratch side drew. In order
it compares each layer's output (pre-activations, activations, ...), batch-norm running statistics,
the loss, then backwards layer by layer each parameter gradient and the gradient with respect to the
layer's input. The first tensor out of tolerance is the break. float64 is judged strictly against
torch (relative error 1e-10); float32 against a float64 torch run from the same float32 weights,
inputs and masks: scratch must be as close to it as torch's float32 is (benchmark.parity.compare), and a
row out of that bound because a ReLU unit sat within rounding of 0 is explained, not broken
(benchmark.parity.kinks). With `numerical=True` a second referee, central finite differences in float64,
checks every parameter gradient of the scratch model at sampled coordinates, so that a bug both
sides share cannot hide.

The models given are never changed: the engine works on copies. torch is imported inside the
functions that use it, so that `svt --help` does not load it (benchmark/commands/cli.py).

`svt parity` (benchmark/commands/parity.py) runs the engine on real MNIST batches.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmark.parity import kinks
from benchmark.parity.compare import SUM_MARGIN, TOLERANCES, compare_all, compare_with_exact
from benchmark.parity.referee import batch_sum_scale, layer_numerical_parity, numerical_parity, targets_as
from benchmark.parity.report import ParityReport
from benchmark.sides.scratch import scratch_pass
from benchmark.sides.torch import twin
from scratch_nn.gradcheck import checked_input_gradient


def sum_allowances(scratch, kinds: dict[str, str], x: np.ndarray, dtype: str) -> dict[str, float]:
    """Per layer, SUM_MARGIN ulps of the sum of the absolute terms its parameter gradients add up
    over the batch (`batch_sum_scale`): an absolute error below it always passes."""
    layer_inputs = kinks.layer_inputs(kinds, x, scratch.outputs)
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return {layer: SUM_MARGIN * eps * batch_sum_scale(layer_inputs[layer], scratch.outputs[layer],
                                                      scratch.grad_outputs[layer]) for layer in kinds}


def pass_pairs(first, second, kinds: dict[str, str], allowances: dict[str, float]) -> list[tuple]:
    """(name, layer kind, kind of tensor, first, second[, atol]) in the order things are computed:
    forward layer by layer (with batch-norm buffers), the loss, then backward from the last layer to
    the first. `first` and `second` are passes of any two sides (benchmark.sides.scratch.Pass, torch_ref.Recorded)."""
    pairs = []
    for layer, kind in kinds.items():
        pairs.append((f"{layer}.output", kind, "output", first.outputs[layer], second.outputs[layer]))
        pairs += [(name, kind, name.rpartition(".")[2], value, second.buffers[name])
                  for name, value in first.buffers.items() if name.rpartition(".")[0] == layer]
    pairs.append(("loss", "", None, first.loss, second.loss))
    pairs.append(("loss.grad_input", "", "grad", first.grad_logits, second.grad_logits))
    for layer, kind in reversed(kinds.items()):
        pairs += [(f"{name}.grad", kind, "grad", value, second.grads[name], allowances[layer])
                  for name, value in first.grads.items() if name.rpartition(".")[0] == layer]
        pairs.append((f"{layer}.grad_input", kind, "grad", first.grad_inputs[layer], second.grad_inputs[layer]))
    return pairs


def layer_kinds(layers: dict) -> dict[str, str]:
    """name -> the layer's class name ("Linear", "ReLU", ...), the kind a row shows."""
    return {name: type(layer).__name__ for name, layer in layers.items()}


def as_float64(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Floating arrays cast to float64 (exactly: float32 -> float64 loses nothing), others as they are."""
    return {name: value.astype(np.float64) if np.asarray(value).dtype.kind == "f" else value
            for name, value in arrays.items()}


def gradient_parity(scratch_model, x: np.ndarray, y: np.ndarray, *, l1: float = 0.0,
                    masks: dict[str, np.ndarray] | None = None, numerical: bool = False,
                    tolerance: float | None = None) -> ParityReport:
    """Compare one forward and backward of `scratch_model` and its torch twin.

    x (N, *input_shape) in the model's dtype, y (N,) int64 class labels. `masks` ({"layers.3": mask})
    fixes the dropout masks of both sides; without it the scratch side draws them from (a copy of)
    its generator, and torch applies the same. `numerical=True` appends the finite-difference
    referee's rows. `tolerance` (float64 only) defaults to TOLERANCES["float64"]. The model is not changed.
    """
    from torch_ref import build_loss, forward_backward

    model = copy.deepcopy(scratch_model)  # its generator too: the caller's draws are not consumed
    loss_fn = build_loss(model.spec)
    module = twin(model)
    float32 = model.spec.dtype == "float32"
    module64 = twin(model, "float64") if float32 else None  # before the scratch pass moves the buffers
    scratch = scratch_pass(model, x, y, l1, masks or {})
    reference = forward_backward(module, loss_fn, x, y, l1, scratch.masks)
    exact = None if not float32 else forward_backward(copy.deepcopy(module64), loss_fn, x.astype(np.float64),
                                                      targets_as(y, np.float64), l1, as_float64(scratch.masks))

    def before():  # float64: torch's own twin, made from the caller's model (not changed) only when needed
        return copy.deepcopy(module64) if float32 else twin(scratch_model)

    rows = judge_pass(Passes(scratch, reference, exact, before, loss_fn), dict(model.named_layers()), x, y, l1,
                      tolerance)
    report = ParityReport(rows, model.spec.dtype)
    if numerical:
        report = report + numerical_parity(scratch_model, x, y, l1=l1, masks=scratch.masks)
    return report


@dataclass
class Passes:
    """One batch as each side computed it: scratch's pass, torch's, and (float32) torch's in float64
    from the same float32 weights, inputs and masks; `before()` makes a fresh copy of the float64
    twin as it was before that pass (in float64 torch's own twin), to recompute it with nudges or
    layer by layer when a row needs explaining: called only then."""

    scratch: object  # benchmark.sides.scratch.Pass
    torch: object  # torch_ref.Recorded
    exact: object | None  # torch_ref.Recorded in float64, None in float64
    before: Callable[[], object]
    loss_fn: object


def judge_pass(passes: Passes, layers: dict, x: np.ndarray, y: np.ndarray, l1: float,
               tolerance: float | None = None) -> list:
    """The rows of one pass (`pass_pairs`; `layers`: name -> scratch layer): float64 against torch at
    `tolerance` (1e-10), kink crossings and pooling ties explained; float32 against the float64
    reference, kink crossings, pooling ties and inherited rounding explained."""
    from torch_ref import each_layer_alone, forward_backward

    scratch, reference, dtype = passes.scratch, passes.torch, str(x.dtype)
    kinds = layer_kinds(layers)
    allowances = sum_allowances(scratch, kinds, x, dtype)
    if passes.exact is None:
        tolerance = TOLERANCES[dtype] if tolerance is None else tolerance
        rows = compare_all(pass_pairs(scratch, reference, kinds, allowances), tolerance, dtype)

        def rejudge(nudges):
            again = forward_backward(passes.before(), passes.loss_fn, x, y, l1, scratch.masks, nudges)
            return compare_all(pass_pairs(scratch, again, kinds, allowances), tolerance, dtype)

        explain_kinks(rows, lambda: kinks.crossings(layers, kinks.layer_inputs(kinds, x, scratch.outputs),
                                                    kinks.layer_inputs(kinds, x, reference.outputs)), rejudge)
        return rows
    x64, masks64 = x.astype(np.float64), as_float64(scratch.masks)

    def judge(scratch_reference, torch_reference=passes.exact):
        return compare_with_exact(pass_pairs(scratch, reference, kinds, allowances),
                                  pass_pairs(scratch, scratch_reference, kinds, allowances),
                                  pass_pairs(reference, torch_reference, kinds, allowances))

    def alone(side):  # each of this side's operations from its own inputs, in float64
        last = [name for name in kinds if kinks.list_position(name)[0] == "layers"][-1]  # gives the logits
        grad_outs = kinks.layer_grad_outputs(kinds, side.grad_inputs, side.grad_logits, side.outputs)
        return each_layer_alone(passes.before(), passes.loss_fn, as_float64(kinks.layer_inputs(kinds, x, side.outputs)),
                                as_float64(grad_outs), side.outputs[last].astype(np.float64),
                                targets_as(y, np.float64), l1, masks64)

    def nudged(nudges):
        return forward_backward(passes.before(), passes.loss_fn, x64, y, l1, masks64, nudges)

    rows = judge(passes.exact)
    inputs = [kinks.layer_inputs(kinds, x_side, side.outputs)
              for x_side, side in ((x, scratch), (x64, passes.exact), (x, reference))]
    explain_kinks(rows, lambda: kinks.crossings(layers, *inputs), lambda nudges: judge(nudged(nudges)))
    explain_locally(rows, lambda: judge(alone(scratch), alone(reference)))
    return rows


def explain_kinks(rows: list, find, rejudge) -> None:
    """If rows are out of their bound, look for kink crossings (`find()` -> benchmark.parity.kinks.crossings);
    if there are some, judge scratch again against the reference recomputed with those units on
    scratch's branch (`rejudge(nudges)` -> rows), keeping each row's tolerance. When every row is
    then within it, the rows that were out say why in `explained` (and so do not break)."""
    if all(row.ok for row in rows):
        return
    found = find()
    if not found:
        return
    again = rejudge({name: crossing.delta for name, crossing in found.items()})
    if all(row.tolerance == np.inf or new.judged <= row.tolerance for row, new in zip(rows, again)):
        words = kinks.describe(found)
        for row, new in zip(rows, again):
            if not row.ok:
                measure = "relative error" if np.isnan(new.exact_torch) else "scratch vs f64"
                row.explained = f"{words}; {measure} on its branch {new.judged:.1e}"


def explain_locally(rows: list, judge_alone) -> None:
    """Rows still out of their bound are judged once more, operation by operation (`judge_alone()` ->
    the same rows, each side against float64 computed from that side's own inputs). A row whose own
    operation is as exact as torch's there inherited its error: rounding made upstream (where it
    was judged within bound) and amplified by an ill-conditioned operation, such as the softmax
    gradient p - onehot of a confident prediction or Adam's division by sqrt(v) + eps. It says so
    and does not break. A wrong formula is wrong from its own inputs too: it still breaks."""
    if all(row.ok for row in rows):
        return
    for row, alone in zip(rows, judge_alone()):
        if not row.ok and np.isfinite(alone.exact_scratch) and alone.exact_scratch <= alone.tolerance:
            row.explained = (f"inherited: its own operation is as exact as torch's (from each side's inputs: "
                             f"scratch vs f64 {alone.exact_scratch:.1e}, torch vs f64 {alone.exact_torch:.1e})")


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
    grad_input = checked_input_gradient(scratch_layer, scratch_layer.backward(grad_out), x.shape)
    if getattr(scratch_layer, "mask", None) is not None and hasattr(torch_layer, "next_mask"):
        torch_layer.next_mask = torch.from_numpy(np.array(scratch_layer.mask))
    inputs = torch.from_numpy(x.copy()).requires_grad_()
    torch_output = torch_layer(inputs)
    torch_output.backward(torch.from_numpy(grad_out))
    kind, torch_params = type(scratch_layer).__name__, dict(torch_layer.named_parameters())
    pairs = [("output", kind, "output", output, torch_output.detach().numpy())]
    pairs += [(name, kind, name, value, getattr(torch_layer, name).numpy())
              for name, value in scratch_layer.buffers.items()]
    pairs += [(f"{name}.grad", kind, "grad", value, torch_params[name].grad.numpy())
              for name, value in scratch_layer.grads.items()]
    pairs.append(("grad_input", kind, "grad", grad_input, inputs.grad.numpy()))
    return ParityReport(compare_all(pairs, TOLERANCES[dtype] if tolerance is None else tolerance, dtype), dtype)
