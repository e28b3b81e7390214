"""The fit's losses (mse on real targets, l1, huber): values and gradients against torch in float64,
gradients against finite differences away from their kinks, and torch's choice at the kinks."""
import numpy as np
import pytest
import torch

from scratch_nn.gradcheck import numerical_gradient, relative_error
from scratch_nn.losses import MSELoss, build_loss
from scratch_nn.regression_losses import HuberLoss, L1Loss
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.data_spec import REGRESSION_LOSSES
from scratch_nn.spec.notation import parse_layers

GRAD_TOLERANCE = 1e-7
LOSSES = {  # name -> (scratch, torch)
    "mse": (MSELoss, torch.nn.MSELoss),
    "l1": (L1Loss, torch.nn.L1Loss),
    "huber": (HuberLoss, torch.nn.HuberLoss),
    "huber_delta_0.3": (lambda: HuberLoss(0.3), lambda: torch.nn.HuberLoss(delta=0.3)),
    "huber_delta_2.5": (lambda: HuberLoss(2.5), lambda: torch.nn.HuberLoss(delta=2.5)),
}


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def torch_value_and_grad(name, outputs, targets):
    outputs_t = torch.tensor(outputs, requires_grad=True)
    loss = LOSSES[name][1]()(outputs_t, torch.tensor(targets))
    loss.backward()
    return loss.item(), outputs_t.grad.numpy()


def away_from_kinks(outputs, targets, kinks, margin=1e-2):
    """Move each output whose difference to its target lies within `margin` of a kink of the loss
    (l1 at 0, huber at +-delta) by 4 margins, so that a central difference does not straddle it."""
    diff = outputs - targets
    for kink in kinks:
        near = np.abs(diff - kink) < margin
        outputs = np.where(near, outputs + 4 * margin, outputs)
        diff = outputs - targets
    return outputs


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_loss_matches_torch_in_float64(name, batch_size, rng):
    loss = LOSSES[name][0]()
    outputs, targets = rng.standard_normal((batch_size, 1)) * 3, rng.standard_normal((batch_size, 1))
    value = loss.forward(outputs, targets)
    value_torch, grad_torch = torch_value_and_grad(name, outputs, targets)
    assert isinstance(value, np.float64)
    np.testing.assert_allclose(value, value_torch, rtol=1e-14)
    np.testing.assert_allclose(loss.backward(), grad_torch, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(name, rng, worst_gradient_error):
    loss = LOSSES[name][0]()
    delta = getattr(loss, "delta", None)
    outputs, targets = rng.standard_normal((9, 1)) * 3, rng.standard_normal((9, 1))
    outputs = away_from_kinks(outputs, targets, [0.0] if name == "l1" else [-delta, delta] if delta else [])
    loss.forward(outputs, targets)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(outputs, targets), outputs, eps=1e-3, order=4)
    error = relative_error(analytic, numeric)
    worst_gradient_error.update(error=max(error, worst_gradient_error["error"]), where=name)
    assert error <= GRAD_TOLERANCE


@pytest.mark.parametrize("name", ["l1", "huber_delta_0.3"])
def test_at_the_kinks_the_gradient_is_torchs(name):
    # l1 at a difference of exactly 0: torch's sign(0) = 0; huber at exactly +-delta: the slope +-delta.
    targets = np.array([[0.5], [0.5], [0.5], [0.5]])
    outputs = targets + np.array([[0.0], [0.3], [-0.3], [1.0]])
    loss = LOSSES[name][0]()
    value = loss.forward(outputs, targets)
    value_torch, grad_torch = torch_value_and_grad(name, outputs, targets)
    np.testing.assert_allclose(value, value_torch, rtol=1e-15)
    np.testing.assert_array_equal(loss.backward(), grad_torch)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_keeps_float32_and_stays_near_the_float64_value(name, rng):
    outputs, targets = rng.standard_normal((50, 1)) * 3, rng.standard_normal((50, 1))
    loss = LOSSES[name][0]()
    value = loss.forward(outputs.astype(np.float32), targets.astype(np.float32))
    assert isinstance(value, np.float32)
    assert loss.backward().dtype == np.float32
    exact = LOSSES[name][0]().forward(outputs.astype(np.float32).astype(np.float64),
                                      targets.astype(np.float32).astype(np.float64))
    assert abs(float(value) - exact) <= 8 * np.finfo(np.float32).eps * exact


@pytest.mark.parametrize("targets, message", [
    (np.zeros((4, 1), dtype=np.int64), "targets must be real numbers"),
    (np.zeros((4, 2)), r"targets must have the outputs' shape \(4, 1\), got \(4, 2\)"),
])
@pytest.mark.parametrize("loss_class", [L1Loss, HuberLoss])
def test_bad_targets_are_refused_with_a_clear_message(loss_class, targets, message):
    with pytest.raises(ValueError, match=message):
        loss_class().forward(np.zeros((4, 1)), targets)


def test_backward_before_forward_and_a_bad_delta_are_refused():
    with pytest.raises(RuntimeError, match="L1Loss.backward called before forward"):
        L1Loss().backward()
    with pytest.raises(ValueError, match="delta must be > 0, got 0"):
        HuberLoss(0.0)


@pytest.mark.parametrize("name", REGRESSION_LOSSES)
def test_build_loss_names_torchs_class_on_both_sides(name):
    import torch_ref

    model = ModelSpec(layers=parse_layers("1"), input_shape=(1,), loss=name, huber_delta=0.7)
    scratch, twin = build_loss(model), torch_ref.build_loss(model)
    outputs, targets = np.linspace(-2, 2, 9).reshape(9, 1), np.linspace(1, -1, 9).reshape(9, 1)
    assert float(scratch.forward(outputs, targets)) == pytest.approx(
        float(twin(torch.tensor(outputs), torch.tensor(targets))), rel=1e-15)
    assert getattr(scratch, "delta", 0.7) == 0.7
