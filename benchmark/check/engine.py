"""`svt check`'s engine: a learner's model (benchmark.check.learner) against its torch twin on MNIST.

    report = check(model, CheckOptions(batch=64, seed=0, steps=1), name="my_check.py")
    print(report.table()); print(report.verdict()); report.ok

In order, all from the learner's own initial weights:
  1. their TWIN/LOSS/REDUCTION/SCALE read (benchmark.check.twin), their parameters mapped to the
     twin's (benchmark.check.mapping);
  2. two calls of their loss_and_grads, on batch 1 then batch 2 of MNIST (as `svt parity` draws
     them: the seed's permutation of the training set), at the same weights: the second tells
     gradients that accumulate from call to call;
  3. square weights decided by a probe through their loss (`decide_square`), then their weights
     copied into the twin, in their dtype;
  4. loss, forward output (when they have forward) and every gradient compared, named by their
     names, with the parity engine's rules (benchmark.parity.compare): float64 against torch at
     1e-10; float32 against torch in float64 from the same float32 weights, as close as torch's own
     float32 is; the second call's gradients the same way;
  5. the finite-difference referee on THEIR loss (`referee`): central differences at sampled
     coordinates, on FD_BATCH examples, against the gradients they return there;
  6. `steps` updates with their step(grads, lr) (or p -= lr * g), each from synchronized weights
     against the twin's SGD step;
  7. the findings in words (benchmark.check.diagnose).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from benchmark.check.diagnose import Evidence, findings
from benchmark.check.mapping import (
    decided,
    map_parameters,
    to_their_layout,
    to_twin,
    to_twin_layout,
)
from benchmark.check.mistakes import overflow_words
from benchmark.check.report import CheckReport
from benchmark.check.twin import output_probabilities, read_declaration, twin_loss, twin_pass, twin_shapes
from benchmark.core.errors import UserError
from benchmark.parity.compare import (
    FD_NOISE_MARGIN,
    FD_TOLERANCE,
    SUM_MARGIN,
    TOLERANCES,
    compare_all,
    compare_with_exact,
)
from benchmark.parity.referee import FD_BATCH, FD_SAMPLES, batch_sum_scale
from scratch_nn.gradcheck import sample_indices

FD_STEPS = {"float64": 2.0 ** -20, "float32": 2.0 ** -9}  # powers of 2: w ± h is w's neighbour, exactly
FD_TOLERANCES = {"float64": FD_TOLERANCE, "float32": 1e-2}  # float32 differences carry ~1e-4 of noise
MOMENTUM_NOISE = {"float64": 1e-9, "float32": 1e-4}  # plain SGD's misfit below this is rounding
MOST_SQUARE = 6  # square layers decided jointly by the probe (2^6 twin losses)


@dataclass
class CheckOptions:
    """What `svt check` takes: the batch, the seed of its choice, the steps, their map, the data folder."""

    batch: int = 64
    seed: int = 0
    steps: int = 1
    lr: float = 0.1
    overrides: dict[str, str] = field(default_factory=dict)
    data_dir: str | None = None
    folder: str | None = None  # where a TWIN TOML path is looked up (the model file's folder)


@functools.lru_cache(maxsize=1)
def training_set(data_dir: str | None):
    """MNIST, loaded once per process (a batch of checks reads it once)."""
    from benchmark.data.mnist import load_mnist

    return load_mnist(data_dir, quiet=True)


def mnist_batches(batch: int, count: int, seed: int, dtype: str, data_dir: str | None) -> list[tuple]:
    """The first `count` batches of the seed's permutation of the MNIST training set, x in [0, 1]."""
    from benchmark.data.mnist import as_inputs, as_labels

    mnist = training_set(data_dir)
    order = np.random.default_rng(seed).permutation(len(mnist.train_labels))
    return [(as_inputs(mnist.train_images[order[start:start + batch]], dtype),
             as_labels(mnist.train_labels[order[start:start + batch]])) for start in range(0, count * batch, batch)]


def their_dtype(params: dict[str, np.ndarray], name: str) -> str:
    dtypes = sorted({str(value.dtype) for value in params.values()})
    if len(dtypes) != 1:
        raise UserError(f"{name}: parameters() mixes dtypes ({', '.join(dtypes)}); use one: float64 or float32")
    return dtypes[0]


def checked_call(model, x: np.ndarray, y: np.ndarray, params: dict, name: str) -> dict:
    """Their loss_and_grads on a copy of x, its gradient keys checked against parameters()'s."""
    seen = model.loss_and_grads(x.copy(), y)
    if set(seen["grads"]) != set(params):
        missing, extra = sorted(set(params) - set(seen["grads"])), sorted(set(seen["grads"]) - set(params))
        raise UserError(f"{name}: loss_and_grads returned gradients for other keys than parameters(): "
                        f"missing {missing}, unexpected {extra}; expected exactly {list(params)}")
    return seen


def check(model, options: CheckOptions, name: str) -> CheckReport:
    """The whole check of one model (module docstring); raises UserError when the model cannot be used."""
    params = model.declared["parameters"]
    dtype = their_dtype(params, name)
    declaration = read_declaration({**model.declared, "folder": options.folder}, name, dtype)
    rows = map_parameters({key: value.shape for key, value in params.items()}, twin_shapes(declaration),
                          options.overrides, declaration.twin)
    batches = mnist_batches(options.batch, max(options.steps, 2), options.seed, dtype, options.data_dir)
    (x, y), (x2, y2) = batches[0], batches[1]
    first = checked_call(model, x, y, params, name)
    changed = [key for key, value in model.parameters().items() if not np.array_equal(value, params[key])]
    if changed:
        raise UserError(f"{name}: loss_and_grads(x, y) changed the parameters ({', '.join(changed)}): it must only "
                        "compute the loss and the gradients; an update belongs in step(grads, lr)")
    second = checked_call(model, x2, y2, params, name)
    rows = decide_square(model, rows, declaration, params, x[:FD_BATCH], y[:FD_BATCH], dtype)
    state = to_twin(rows, params)
    output = model.forward(x.copy()) if "forward" in model.declared["has"] else None
    passes = [twin_passes(declaration, state, batch_x, batch_y, dtype) for batch_x, batch_y in ((x, y), (x2, y2))]
    judged = judge(call_pairs(rows, first, passes[0], x, output, declaration, ""), dtype)
    judged += judge(call_pairs(rows, second, passes[1], x2, None, declaration, "2nd call/", loss=False), dtype)
    fd_rows, fd_loss = referee(model, rows, params, x[:FD_BATCH], y[:FD_BATCH], dtype, name)
    overflow = overflow_words(model, rows, declaration, x[:FD_BATCH], y[:FD_BATCH], fd_loss)
    shapes_fit = all(fits_their_shape(row, first["grads"][row.theirs]) for row in rows)  # else their step fails
    steps = step_rows(model, rows, declaration, batches[:options.steps if shapes_fit else 0], options.lr, dtype, name)
    evidence = Evidence(rows, first, second, passes, output, fd_rows, steps, options.batch, dtype, declaration, x,
                        overflow)
    return CheckReport(name, declaration, rows, judged + fd_rows + [row for step in steps for row in step["rows"]],
                       findings(evidence, judged), dtype, options.batch, fd_loss)


def twin_passes(declaration, state: dict, x: np.ndarray, y: np.ndarray, dtype: str) -> tuple:
    """The twin's pass in their dtype, and (float32) in float64 from the same float32 weights."""
    recorded = twin_pass(declaration, state, x, y, dtype)
    return recorded, (twin_pass(declaration, state, x, y, "float64") if dtype == "float32" else None)


def allowances(recorded, x: np.ndarray, dtype: str) -> dict[str, float]:
    """Per layer: SUM_MARGIN ulps of the sum of the absolute terms of its parameter gradients (as
    benchmark.parity.engine.sum_allowances, from the twin's own intermediates)."""
    names, eps = list(recorded.outputs), float(np.finfo(np.dtype(dtype)).eps)
    inputs = [x] + [recorded.outputs[name] for name in names[:-1]]
    grad_outs = [recorded.grad_inputs[name] for name in names[1:]] + [recorded.grad_logits]
    return {name: SUM_MARGIN * eps * batch_sum_scale(layer_input, recorded.outputs[name], grad_out)
            for name, layer_input, grad_out in zip(names, inputs, grad_outs)}


def fits_their_shape(row, grad: np.ndarray) -> bool:
    """The gradient has its parameter's shape, up to axes of size 1 ((out,) for an (out, 1) bias)."""
    grad = np.asarray(grad)
    return grad.shape == row.their_shape or (grad.size == int(np.prod(row.their_shape)) and
                                             np.squeeze(grad).shape == np.squeeze(np.empty(row.their_shape)).shape)


def as_twin_gradient(row, grad: np.ndarray) -> np.ndarray:
    """Their gradient in the twin's layout; one of another shape flattened, so that it never matches
    (a (100, 784) gradient of a (784, 100) weight has the twin's shape, but is not in its layout)."""
    grad = np.asarray(grad)
    return to_twin_layout(row, grad.reshape(row.their_shape)) if fits_their_shape(row, grad) else grad.ravel()


def call_pairs(rows, seen: dict, passes: tuple, x: np.ndarray, output, declaration, prefix: str,
               loss: bool = True) -> list[tuple]:
    """(name, layer, kind, theirs, twin, exact twin or None[, atol]) for one call of loss_and_grads."""
    recorded, exact = passes
    last = list(recorded.outputs)[-1]
    pairs = [(f"{prefix}loss", "", None, np.asarray(seen["loss"], x.dtype), recorded.loss,
              None if exact is None else exact.loss)] if loss else []
    if output is not None:
        twin_output = recorded.outputs[last]
        probabilities = output.ndim == 2 and np.all(output >= 0) and np.allclose(output.sum(axis=1), 1, atol=1e-4)
        convert = output_probabilities if probabilities else (lambda declaration, value: value)
        pairs.append((f"{prefix}output", "", "output", np.asarray(output), convert(declaration, twin_output),
                      None if exact is None else convert(declaration, exact.outputs[last])))
    margins = allowances(recorded, x, str(x.dtype))
    for row in rows:
        pairs.append((f"{prefix}{row.theirs}.grad", row.twin, "grad", as_twin_gradient(row, seen["grads"][row.theirs]),
                      recorded.grads[row.twin], None if exact is None else exact.grads[row.twin], margins[row.layer]))
    return pairs


def judge(pairs: list[tuple], dtype: str, kind_floor: float | None = None) -> list:
    """The parity engine's rules: float64 against the twin at 1e-10; float32 against the float64
    twin, as close as the float32 twin is (benchmark.parity.compare.compare_with_exact)."""
    if dtype == "float64":
        return compare_all([(name, layer, kind, a, b, *atol) for name, layer, kind, a, b, _, *atol in pairs],
                           TOLERANCES["float64"], "float64", kind_floor=kind_floor)
    return compare_with_exact([(n, layer, k, a, b, *atol) for n, layer, k, a, b, _, *atol in pairs],
                              [(n, layer, k, a, c, *atol) for n, layer, k, a, _, c, *atol in pairs],
                              [(n, layer, k, b, c, *atol) for n, layer, k, _, b, c, *atol in pairs], kind_floor)


def twin_loss_value(declaration, state: dict, x: np.ndarray, y: np.ndarray) -> float:
    """The twin's loss in float64 from `state` (no backward): the probe's measure."""
    import torch

    from torch_ref import build_model, load_from_numpy

    model = build_model(dataclasses.replace(declaration.model, dtype="float64"))
    load_from_numpy(model, {key: value.astype(np.float64) for key, value in state.items()})
    with torch.no_grad():
        return float(twin_loss(declaration)(model(torch.from_numpy(x.astype(np.float64))), torch.from_numpy(y)))


def decide_square(model, rows, declaration, params: dict, x: np.ndarray, y: np.ndarray, dtype: str) -> list:
    """Square weights (out == in) fit both layouts: their loss at weights nudged by an asymmetric
    random matrix is compared with the twin's loss under each choice of layouts; the closest wins."""
    squares = [row for row in rows if row.transposed is None]
    if not squares:
        return rows
    if len(squares) > MOST_SQUARE:
        raise UserError(f"{len(squares)} square weights: too many to decide their layouts by probing (at most "
                        f"{MOST_SQUARE}); give them with --map and use torch's (out, in) layout")
    rng = np.random.default_rng(0)
    nudged = {row.theirs: params[row.theirs] + (rng.standard_normal(row.their_shape) * max(
        float(np.std(params[row.theirs])), 0.01)).astype(dtype) for row in squares}
    model.set_parameters(nudged)
    try:
        theirs = model.loss_and_grads(x.copy(), y)["loss"]
    finally:
        model.set_parameters({row.theirs: params[row.theirs] for row in squares})
    trial_params = {**params, **nudged}
    choices = []
    for layouts in itertools.product((False, True), repeat=len(squares)):
        trial = decided(rows, dict(zip([row.theirs for row in squares], layouts)))
        choices.append((abs(twin_loss_value(declaration, to_twin(trial, trial_params), x, y) - theirs), trial))
    return min(choices, key=lambda choice: choice[0])[1]


def referee(model, rows, params: dict, x: np.ndarray, y: np.ndarray, dtype: str, name: str) -> tuple[list, float]:
    """Central differences of their own loss at FD_SAMPLES coordinates of each parameter, on x
    (FD_BATCH examples), against the gradients they return on x: rows "fd/W1.grad"."""
    seen = checked_call(model, x, y, params, name)
    step, rng = FD_STEPS[dtype], np.random.default_rng(0)
    chosen = {key: sample_indices(value.size, FD_SAMPLES, rng) for key, value in params.items()}
    points = [(key, int(index), sign * step) for key, indices in chosen.items() for index in indices
              for sign in (1, -1)]
    losses = np.asarray(model.losses_at(x, y, points)).reshape(-1, 2)
    numeric, pairs, start = (losses[:, 0] - losses[:, 1]) / (2 * step), [], 0
    for key, indices in chosen.items():
        grad = np.asarray(seen["grads"][key])
        analytic = grad.reshape(-1)[indices] if grad.size == params[key].size else grad
        pairs.append((f"fd/{key}.grad", "", "grad", analytic, numeric[start:start + len(indices)]))
        start += len(indices)
    noise = FD_NOISE_MARGIN * float(np.finfo(np.dtype(dtype)).eps) * max(abs(seen["loss"]), 1.0) / (2 * step)
    return compare_all(pairs, FD_TOLERANCES[dtype], "float64", "numerical", atol=noise), seen["loss"]


def step_rows(model, rows, declaration, batches: list, lr: float, dtype: str, name: str) -> list[dict]:
    """Each step from synchronized weights: their loss_and_grads and step(grads, lr) against the
    twin's p - lr * g, or torch's SGD with momentum when their step has one (`fitted_momentum`);
    rows "step k/W1" (the parameters after the step)."""
    steps, buffers = [], None
    for number, (x, y) in enumerate(batches, start=1):
        before = model.parameters()
        seen = checked_call(model, x, y, before, name)
        model.step(seen["grads"], lr)
        after = model.parameters()
        state = to_twin(rows, before)
        recorded, exact = twin_passes(declaration, state, x, y, dtype)
        grads = {row.twin: (recorded.grads[row.twin], None if exact is None else exact.grads[row.twin]) for row in rows}
        momentum = fitted_momentum(rows, before, after, grads, buffers, lr)
        # torch.optim.SGD (torch/optim/sgd.py): buf = momentum * buf + g (buf = g at the first step); p -= lr * buf
        buffers = {key: pair if buffers is None else tuple(None if g is None else momentum * old + g
                                                           for g, old in zip(pair, buffers[key]))
                   for key, pair in grads.items()}
        label = f" (momentum {momentum:.6g})" if momentum else ""
        pairs = [(f"step {number}/{row.theirs}{label}", "", "param", to_twin_layout(row, after[row.theirs]),
                  state[row.twin] - np.asarray(lr, dtype) * buffers[row.twin][0],
                  None if exact is None else state[row.twin].astype(np.float64) - lr * buffers[row.twin][1])
                 for row in rows]
        steps.append({"rows": judge(pairs, dtype, kind_floor=1.0), "before": before, "after": after, "lr": lr,
                      "grads": seen["grads"], "right": {row.theirs: to_their_layout(row, recorded.grads[row.twin])
                                                        for row in rows}})
    return steps


def fitted_momentum(rows, before: dict, after: dict, grads: dict, buffers: dict | None, lr: float) -> float:
    """The momentum m of their step, fitted over every parameter by least squares from
    (before - after) / lr = g + m * buf (torch's SGD, buf the previous step's); 0 at the first step,
    and unless plain SGD does not fit and m explains 99% of the difference (the judge then says
    whether the step is right)."""
    if buffers is None or lr == 0:
        return 0.0
    moved, residual, previous = [], [], []
    for row in rows:
        change = to_twin_layout(row, before[row.theirs]).astype(np.float64) - to_twin_layout(row, after[row.theirs])
        moved.append(change.ravel() / lr)
        residual.append(moved[-1] - np.ravel(grads[row.twin][0]))
        previous.append(np.asarray(buffers[row.twin][0], np.float64).ravel())
    moved, residual, previous = np.concatenate(moved), np.concatenate(residual), np.concatenate(previous)
    norm, dtype = float(previous @ previous), str(next(iter(before.values())).dtype)
    momentum = float(residual @ previous) / norm if norm > 0 else 0.0
    scale = max(float(np.linalg.norm(moved)), np.finfo(np.float64).tiny)
    sgd_error, momentum_error = (float(np.linalg.norm(r)) / scale for r in (residual, residual - momentum * previous))
    fits = sgd_error > MOMENTUM_NOISE[dtype] and momentum_error < 0.01 * sgd_error
    return momentum if fits else 0.0
