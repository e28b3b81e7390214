"""scratch_nn.train: the L1 term and one training step, against torch in float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scratch_nn.losses import build_loss
from scratch_nn.model import MLP
from scratch_nn.optim import SGD
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.notation import parse_layers
from scratch_nn.train import add_l1_gradient, l1_penalty, train_step


@pytest.fixture
def model():
    spec = ModelSpec(layers=parse_layers("6:tanh+bn,3"), input_shape=(5,), dtype="float64")
    return MLP(spec, np.random.default_rng(3))


def test_l1_penalty_and_gradient_match_torch_autograd(model):
    l1 = 0.01
    weights = {name: torch.tensor(value, requires_grad=True) for name, value in model.named_parameters()
               if name.endswith("weight") and value.ndim == 2}  # Linear weights only, not batch-norm's
    expected = l1 * sum(weight.abs().sum() for weight in weights.values())
    expected.backward()
    assert l1_penalty(model, l1) == pytest.approx(float(expected.detach()), rel=1e-14)
    for _, layer in model.named_layers():
        for grad in layer.grads.values():
            grad[...] = 0.0
    add_l1_gradient(model, l1)
    gradients = dict(model.named_gradients())
    for name, weight in weights.items():
        np.testing.assert_allclose(gradients[name], weight.grad.numpy(), rtol=0, atol=1e-15)
    assert not np.any(gradients["layers.1.weight"])  # batch-norm's weight gets no L1


def test_zero_l1_changes_nothing(model):
    before = {name: grad.copy() for name, grad in model.named_gradients()}
    assert l1_penalty(model, 0.0) == 0.0
    add_l1_gradient(model, 0.0)
    for name, grad in model.named_gradients():
        np.testing.assert_array_equal(grad, before[name])


def test_train_step_returns_the_loss_before_the_update_and_moves_the_weights(model):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    loss_fn = build_loss(model.spec)
    before = model.state_dict()
    expected = float(loss_fn.forward(model.forward(x), y)) + l1_penalty(model, 0.1)
    model.load_state_dict(before)  # undo the batch-norm statistics that forward updated
    loss, logits = train_step(model, loss_fn, SGD(dict(model.named_parameters()), lr=0.1), x, y, l1=0.1)
    assert loss == pytest.approx(expected, rel=1e-14)
    assert logits.shape == (8, 3)
    assert not np.array_equal(model.state_dict()["layers.0.weight"], before["layers.0.weight"])
