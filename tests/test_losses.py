"""Losses: finite-difference gradient checks, and values and gradients against torch (float64)."""
import warnings

import numpy as np
import pytest
import torch

from scratch_nn.gradcheck import numerical_gradient, relative_error
from scratch_nn.losses import CrossEntropyLoss, MSELoss, build_loss, log_softmax, softmax
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.notation import parse_layers

GRAD_TOLERANCE = 1e-7
N, C = 7, 10  # an odd batch: the mean must be over the batch actually given

LOSSES = {
    "cross_entropy": (CrossEntropyLoss, torch.nn.CrossEntropyLoss),
    "cross_entropy_smoothing_0.1": (lambda: CrossEntropyLoss(0.1),
                                    lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.1)),
    "cross_entropy_smoothing_0.35": (lambda: CrossEntropyLoss(0.35),
                                     lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.35)),
    "mse": (MSELoss, None),
}


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def torch_loss_and_grad(name, logits, targets):
    logits_t = torch.tensor(logits, requires_grad=True)
    targets_t = torch.tensor(targets)
    if name == "mse":
        loss = torch.nn.MSELoss()(logits_t, torch.nn.functional.one_hot(targets_t, logits.shape[1]).to(logits_t.dtype))
    else:
        loss = LOSSES[name][1]()(logits_t, targets_t)
    loss.backward()
    return loss.item(), logits_t.grad.numpy()


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(name, rng, worst_gradient_error):
    loss = LOSSES[name][0]()
    logits, targets = rng.standard_normal((N, C)), rng.integers(0, C, N)
    loss.forward(logits, targets)
    analytic = loss.backward()
    # A scalar loss carries rounding noise ~1e-16 |L| / h that no differencing cancels, and with
    # smoothing some entries of p - q are near 0: the O(h^4) stencil allows h = 1e-3 (order 2 at
    # h = 1e-6 missed 1e-7 on over half of 300 random batches; order 4 at 1e-3 passed them all).
    numeric = numerical_gradient(lambda: loss.forward(logits, targets), logits, eps=1e-3, order=4)
    error = relative_error(analytic, numeric)
    if error > worst_gradient_error["error"]:
        worst_gradient_error.update(error=error, where=name)
    assert error <= GRAD_TOLERANCE


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_loss_matches_torch(name, batch_size, rng):
    loss = LOSSES[name][0]()
    logits, targets = rng.standard_normal((batch_size, C)) * 4, rng.integers(0, C, batch_size)
    value = loss.forward(logits, targets)
    value_torch, grad_torch = torch_loss_and_grad(name, logits, targets)
    assert isinstance(value, np.float64)
    np.testing.assert_allclose(value, value_torch, rtol=1e-13)
    np.testing.assert_allclose(loss.backward(), grad_torch, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_keeps_float32(name, rng):
    loss = LOSSES[name][0]()
    logits = rng.standard_normal((5, C)).astype(np.float32)
    value = loss.forward(logits, rng.integers(0, C, 5))
    assert isinstance(value, np.float32)
    assert loss.backward().dtype == np.float32


def test_backward_reuses_the_cache_without_changing_it(rng):
    loss = CrossEntropyLoss(0.1)
    loss.forward(rng.standard_normal((N, C)), rng.integers(0, C, N))
    np.testing.assert_array_equal(loss.backward(), loss.backward())


def test_softmax_and_log_softmax_match_torch_and_survive_large_logits(rng):
    extremes = [[1000.0] * C, [-1000.0] * (C - 1) + [1000.0]]
    logits = np.concatenate([rng.standard_normal((4, C)) * 5, extremes])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        probs, log_probs = softmax(logits), log_softmax(logits)
    logits_t = torch.tensor(logits)
    np.testing.assert_allclose(probs, torch.softmax(logits_t, dim=1).numpy(), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(log_probs, torch.log_softmax(logits_t, dim=1).numpy(), rtol=1e-13)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("margin", [10.0, 16.0, 22.0])  # mean losses of about 5e-3, 1e-5 and 3e-8
def test_float32_loss_of_confident_predictions_stays_within_a_few_ulps(margin, rng):
    # A confident row's log-sum-exp is max + log(1 + tiny); log of the rounded (1 + tiny) would lose
    # most of `tiny`, the whole loss (relative errors of 1e-5 to 1 at these margins). log1p keeps it.
    n = 128
    logits = rng.standard_normal((n, C)) * 2
    targets = rng.integers(0, C, n)
    logits[np.arange(n), targets] += margin
    logits32 = (logits + 7.0).astype(np.float32)
    exact = torch.nn.functional.cross_entropy(torch.tensor(logits32, dtype=torch.float64),
                                              torch.tensor(targets)).item()
    loss = CrossEntropyLoss().forward(logits32, targets)
    assert loss.dtype == np.float32
    assert abs(float(loss) - exact) <= 8 * np.finfo(np.float32).eps * exact
    exact_log_probs = torch.log_softmax(torch.tensor(logits32, dtype=torch.float64), dim=1).numpy()
    np.testing.assert_allclose(log_softmax(logits32), exact_log_probs, rtol=4 * np.finfo(np.float32).eps, atol=1e-6)
    # the targets' log-probabilities, tiny here (1e-4 to 1e-10): a few ulps of relative accuracy (z - max z
    # rounds by up to 1e-6 at |z - max z| ~ 22, then ~9 exp terms and log1p), no absolute floor; log of the
    # rounded sum would be off by 50-100%
    rows = np.arange(n)
    np.testing.assert_allclose(log_softmax(logits32)[rows, targets], exact_log_probs[rows, targets],
                               rtol=64 * np.finfo(np.float32).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_handles_tied_maxima_and_infinities(dtype):
    logits = np.array([[3.0, 3.0, 1.0], [0.0, 0.0, 0.0], [1.0, 5.0, 5.0], [-np.inf, 2.0, 2.0]], dtype=dtype)
    expected = torch.log_softmax(torch.tensor(logits), dim=1).numpy()
    np.testing.assert_allclose(log_softmax(logits), expected, rtol=4 * np.finfo(dtype).eps)
    targets = np.array([0, 1, 2, 1])
    loss = CrossEntropyLoss()
    loss.forward(logits, targets)
    logits_t = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(logits_t, torch.tensor(targets)).backward()
    np.testing.assert_allclose(loss.backward(), logits_t.grad.numpy(), rtol=4 * np.finfo(dtype).eps, atol=1e-12)
    # an infinite maximum gives NaN (inf - inf), as torch does, not a finite or infinite loss
    with np.errstate(invalid="ignore"):  # inf - inf: NumPy's warning is expected here
        assert np.all(np.isnan(log_softmax(np.array([[np.inf, 1.0, 2.0]], dtype=dtype))))


@pytest.mark.parametrize("targets, message", [
    (np.array([0, 1, -1]), r"class indices in \[0, 9\], got values from -1 to 1"),
    (np.array([0, 1, 10]), r"class indices in \[0, 9\], got values from 0 to 10"),
    (np.array([0, 1]), r"expected logits \(N, C\) and targets \(N,\), got \(3, 10\) and \(2,\)"),
    (np.array([0.0, 1.0, 2.0]), "targets must be integer class indices, got dtype float64"),
])
@pytest.mark.parametrize("loss_class", [CrossEntropyLoss, MSELoss])
def test_bad_targets_are_refused_with_a_clear_message(loss_class, targets, message):
    with pytest.raises(ValueError, match=message):
        loss_class().forward(np.zeros((3, C)), targets)


@pytest.mark.parametrize("loss_class", [CrossEntropyLoss, MSELoss])
def test_backward_before_forward_raises(loss_class):
    with pytest.raises(RuntimeError, match=rf"{loss_class.__name__}\.backward called before forward"):
        loss_class().backward()


def test_build_loss_follows_the_spec():
    hidden = parse_layers("4,10")
    smoothed = build_loss(ModelSpec(hidden, loss="cross_entropy", label_smoothing=0.2))
    assert isinstance(smoothed, CrossEntropyLoss) and smoothed.label_smoothing == 0.2
    assert isinstance(build_loss(ModelSpec(hidden, loss="mse")), MSELoss)
