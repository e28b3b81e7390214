"""The parity engine's second referee, central finite differences in float64, and what the engine
needs of a scratch model beyond its pass (`benchmark.sides.scratch.scratch_pass`).

    report = numerical_parity(model, x, y)                 # backward vs finite differences
    report = layer_numerical_parity(layer, x, rng)          # one layer, through sum(forward(x) * g)
    loss_free_names(model, train_spec)                     # trajectory rows that rounding noise sets

Finite differences are judged at FD_TOLERANCE (benchmark.parity.compare), with their own noise as an
absolute allowance (`fd_noise`): with h = 1e-6 the rounding error of a float64 loss near 2.3,
amplified by 1/(2h), is about 3e-10 per coordinate, whatever the size of the gradient there.
"""
from __future__ import annotations

import copy

import numpy as np

from benchmark.parity.compare import FD_NOISE_MARGIN, FD_TOLERANCE, compare_all
from benchmark.parity.report import ParityReport
from benchmark.sides.scratch import scratch_pass
from scratch_nn.gradcheck import layer_gradient_pairs, model_gradient_pairs, sample_indices
from scratch_nn.losses import build_loss
from scratch_nn.train import l1_penalty

FD_STEP = 1e-6
# The one-sided slopes that explain a kink (`explain_kinks_of_the_loss`) take a 10x smaller step:
# their truncation error is first order, h |f''| / 2, and at h = 1e-6 it reached 4e-8 on a LeNet-5
# conv bias (seed 4), beyond the slack of 3.4e-8 there; at 1e-7 it is 4e-9, while their rounding
# noise grows to 10x the central difference's (in the slack: 40 * fd_noise).
ONE_SIDED_STEP = FD_STEP / 10
FD_SAMPLES = 12  # coordinates per parameter tensor checked by finite differences (all, if fewer)
FD_BATCH = 16  # examples the model-level referee uses


def targets_as(y: np.ndarray, dtype) -> np.ndarray:
    """A fit's real targets in `dtype` (torch's regression losses want the outputs' dtype); class labels as they are."""
    return y.astype(dtype) if y.dtype.kind == "f" else y


def batch_sum_scale(layer_input: np.ndarray, output: np.ndarray, grad_out: np.ndarray) -> float:
    """sum_n |g_n|max * max(1, |input_n|max, |output_n|max): a bound on the sum of the absolute terms
    a layer's parameter gradient adds up over the batch (Linear: g_n x_n, g_n; BatchNorm1d:
    g_n x_hat_n, g_n). Rounding error in a sum scales with its terms, not with its result: where
    the terms cancel (the bias before a BatchNorm1d) it is all that is left."""
    def row_max(array: np.ndarray) -> np.ndarray:
        return np.abs(array.reshape(len(array), -1)).max(axis=1, initial=0.0).astype(np.float64)

    factor = np.maximum(1.0, np.maximum(row_max(layer_input), row_max(output)))
    return float(np.sum(row_max(grad_out) * factor))


def as_float64(model):
    """A copy of a scratch model with every parameter, gradient and floating buffer in float64."""
    model = copy.deepcopy(model)
    model.dtype = np.dtype(np.float64)
    for _, layer in model.named_layers():
        for table in (layer.params, layer.grads, layer.buffers):
            for key, value in table.items():
                if value.dtype.kind == "f":
                    table[key] = value.astype(np.float64)
    return model


def numerical_parity(scratch_model, x: np.ndarray, y: np.ndarray, *, l1: float = 0.0, masks: dict | None = None,
                     samples: int = FD_SAMPLES, batch: int = FD_BATCH, seed: int = 0) -> ParityReport:
    """The second referee: the scratch model's own backward, in float64, against central finite
    differences of its loss, at `samples` random coordinates of every parameter tensor, on the
    first `batch` examples (a loss evaluation per coordinate and side: a small batch keeps it cheap).

    Runs on a float64 copy (the model is not changed), with the dropout masks held fixed.
    """
    model = as_float64(scratch_model)
    x, y = x[:batch].astype(np.float64), targets_as(y[:batch], np.float64)
    masks = {name: mask[:batch].astype(np.float64) for name, mask in (masks or {}).items()}
    loss_fn, kinds = build_loss(model.spec), {name: type(layer).__name__ for name, layer in model.named_layers()}

    seen = scratch_pass(model, x, y, l1, masks)  # draws the masks it was not given

    def loss() -> float:  # every evaluation with the very masks the analytic pass used
        return float(scratch_pass_forward(model, loss_fn, x, y, l1, seen.masks))

    referee = model_gradient_pairs(model, loss, seen.grads, FD_STEP, samples, np.random.default_rng(seed))
    pairs = [(f"fd/{name}.grad", kinds[name.rpartition(".")[0]], "grad", analytic, numeric)
             for name, (analytic, numeric) in referee.items()]
    noise = fd_noise(abs(float(seen.loss)))
    rows = compare_all(pairs, FD_TOLERANCE, "float64", "numerical", atol=noise)
    explain_kinks_of_the_loss(rows, model, loss, samples, seed, noise)
    return ParityReport(rows, "float64")


def explain_kinks_of_the_loss(rows: list, model, loss, samples: int, seed: int, noise: float) -> None:
    """Explain finite-difference rows broken by a kink of the loss along the sampled coordinate.

    A central difference across a kink is the mean of the two one-sided slopes, which no backward
    computes. In a CNN it is common: a conv bias at 0 (every init but torch_default) makes the
    pre-activation of each blank-background patch exactly 0, ReLU's kink, and a bias step of h moves
    hundreds of them across it at once; max-pooling ties (equal background values in a window) are
    kinks too. Such a row is explained when every sampled coordinate is one of:
      - a kink within h' (`ONE_SIDED_STEP`, h / 10): the one-sided slopes (f(w) - f(w - h')) / h'
        and (f(w + h') - f(w)) / h' differ, and the backward lies between them: a subgradient, as
        torch's (ReLU'(0) = 0, the first maximum of a tie);
      - a kink between h' and h: the two slopes agree with each other, and the backward matches
        their mean, the central difference of step h', within its noise, while the central
        difference of step h is off (it straddles the kink);
      - no kink: the backward matches the central difference, as any row must;
    and at least one coordinate is one of the first two. A wrong derivative is caught where there is
    no kink: it matches neither the central difference nor, when the central difference agrees
    with the slopes, anything else (a kink-free model with a bias gradient off by 2e-4 breaks:
    tests/test_cnn_wiring.py)."""
    parameters = dict(model.named_parameters())
    rng = np.random.default_rng(seed)
    indices = {name: sample_indices(array.size, samples, rng) for name, array in parameters.items()}
    for row in rows:
        if row.ok:
            continue
        name = row.name.removeprefix("fd/").removesuffix(".grad")
        left, right = one_sided_slopes(loss, parameters[name], indices[name], ONE_SIDED_STEP)
        low, high = np.minimum(left, right), np.maximum(left, right)
        # one-sided at h / 10: twice the rounding over a tenth of the step, 20x the central noise; 2x margin
        slack = FD_TOLERANCE * np.maximum(np.abs(low), np.abs(high)) + 40 * noise
        analytic, central = np.asarray(row.scratch, dtype=np.float64), np.asarray(row.reference, dtype=np.float64)
        between = (analytic >= low - slack) & (analytic <= high + slack)
        near = high - low > 2 * slack  # a kink within h'
        # one between h' and h: the backward matches the central difference of step h' (the slopes'
        # mean, (f(w + h') - f(w - h')) / 2h') within that difference's noise, and the one of step h
        # is off from it by more than its own noise and by over 10x the backward's distance from it:
        # the larger step straddles a bend. A wrong backward without a kink is about as far from
        # both differences, which agree with each other. (Judged by the one-sided slopes' slack
        # instead, kinks that bend the loss a little, 2.7e-8 to 1.9e-7 off on resnet-mini and
        # inception-mini weights of 3e-3 to 2e-2, fell short of it: `svt parity --seeds 0-9`.)
        mean = (left + right) / 2
        mean_slack = FD_TOLERANCE * np.abs(mean) + (1 + FD_STEP / ONE_SIDED_STEP) * noise
        off = np.abs(central - mean)
        farther = ~near & (np.abs(analytic - mean) <= mean_slack) & (off > 2 * noise) & (
            off > 10 * np.abs(analytic - mean))
        matches = np.isclose(analytic, central, rtol=FD_TOLERANCE, atol=noise)
        if np.all(((near | farther) & between) | matches) and np.any((near | farther) & between):
            count = len(analytic)
            row.explained = (f"loss kink: at {int(near.sum())} of {count} coordinates the one-sided slopes differ "
                             "(ReLU at 0, max-pool ties) and the backward lies between them")
            farther &= ~matches  # the coordinates this explanation was needed for
            if farther.any():
                row.explained += (f"; at {int(farther.sum())} a kink lies within the central step {FD_STEP:g} but "
                                  f"not within {ONE_SIDED_STEP:g}, and the backward matches the smaller step")


def one_sided_slopes(objective, array: np.ndarray, indices: np.ndarray, step: float) -> tuple[np.ndarray, ...]:
    """(f(w) - f(w - h)) / h and (f(w + h) - f(w)) / h at the flat `indices` of `array` (restored after)."""
    base = objective()
    left, right = np.empty(len(indices)), np.empty(len(indices))
    for position, flat_index in enumerate(indices):
        index = np.unravel_index(flat_index, array.shape)
        original = array[index]
        array[index] = original + step
        right[position] = (objective() - base) / step
        array[index] = original - step
        left[position] = (base - objective()) / step
        array[index] = original
    return left, right


def fd_noise(magnitude: float) -> float:
    """The absolute noise of a central difference of a float64 function of size `magnitude`."""
    return FD_NOISE_MARGIN * np.finfo(np.float64).eps * max(magnitude, 1.0) / (2 * FD_STEP)


def scratch_pass_forward(model, loss_fn, x: np.ndarray, y: np.ndarray, l1: float, masks: dict) -> float:
    """The loss only (masks re-injected: each training forward consumes its `next_mask`)."""
    for name, layer in model.named_layers():
        if name in masks:
            layer.next_mask = masks[name]
    return loss_fn.forward(model.forward(x), y) + l1_penalty(model, l1)


def layer_numerical_parity(layer, x: np.ndarray, rng: np.random.Generator, samples: int = FD_SAMPLES) -> ParityReport:
    """One layer's backward against central finite differences of sum(forward(x) * g), g random.

    Checks the input gradient and every parameter gradient at up to `samples` coordinates each.
    A dropout-style layer keeps the mask of its first forward (through `next_mask`).
    """
    if x.dtype != np.float64:
        raise ValueError(f"the finite-difference referee needs dtype 'float64' (got {x.dtype}): in float32 "
                         f"the rounding error of the loss, amplified by 1/h, swamps the derivative")
    check = layer_gradient_pairs(layer, x, None, FD_STEP, samples, rng)  # grad_out drawn from rng
    magnitude = float(np.sum(np.abs(check.output * check.grad_out)))
    kind = type(layer).__name__
    pairs = [(f"fd/{'grad_input' if name == 'input' else name + '.grad'}", kind, "grad", analytic, numeric)
             for name, (analytic, numeric) in check.pairs.items()]
    return ParityReport(compare_all(pairs, FD_TOLERANCE, "float64", "numerical", fd_noise(magnitude)), "float64")


def loss_free_names(model, train_spec) -> set[str]:
    """Trajectory rows set by rounding noise, not judged: with an adaptive optimiser (adam, adamw,
    rmsprop), the bias of a Linear followed by BatchNorm1d and its optimiser states. The bias cannot
    change the loss (the batch mean is subtracted), so its gradient is rounding noise, which
    dividing by sqrt(v) + eps turns into steps of size lr, different on the two sides. (The
    BatchNorm's running_mean, which such a bias moves, is judged: every step starts both sides from
    the same state, so the noise of one step does not reach the next.)"""
    if train_spec.optimizer == "sgd":
        return set()
    layers, kinds = dict(model.named_layers()), {entry.name: entry.spec.type for entry in model.spec.entries}
    names = set()
    for name, layer in layers.items():
        prefix, _, index = name.rpartition(".")
        following = f"{prefix}.{int(index) + 1}"  # the next layer of the same list (inside a block too)
        if kinds.get(following) == "batch_norm1d" and layers[following].training and "bias" in layer.params:
            names.add(f"{name}.bias")
            states = ("step", "exp_avg", "exp_avg_sq", "square_avg", "momentum_buffer")
            names |= {f"{name}.bias.{key}" for key in states}
    return names
