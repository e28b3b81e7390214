"""torch_ref: the torch twin is built from the spec out of torch's own modules, with scratch's names.

What these tests prove: the layer sequence and state_dict keys match the scratch MLP's for every
activation and option; weights and dropout masks are copied exactly; the loss, L1 penalty,
optimiser and schedule carry the spec's hyper-parameters. (That torch_ref never imports benchmark
is tests/test_architecture.py's.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_ref
from scratch_nn.layers import Dropout
from scratch_nn.model import MLP
from scratch_nn.spec import ACTIVATIONS, OPTIMIZERS, ModelSpec, TrainSpec
from scratch_nn.spec.layer_specs import LinearSpec
from scratch_nn.spec.notation import block_layers, parse_layers


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def small_spec(activation="relu", batch_norm=False, dropout=0.0, dtype="float64", **model) -> ModelSpec:
    layers = (*block_layers(6, activation, 0.2, batch_norm, dropout), *block_layers(5, "tanh"), LinearSpec(3))
    return ModelSpec(layers=layers, input_shape=(4,), dtype=dtype, **model)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("batch_norm, dropout", [(False, 0.0), (True, 0.0), (False, 0.3), (True, 0.3)])
def test_layer_sequence_and_keys_match_scratch(activation, batch_norm, dropout, rng):
    spec = small_spec(activation, batch_norm, dropout)
    module = torch_ref.build_model(spec)
    scratch = MLP(spec, rng)
    assert list(module.state_dict()) == list(scratch.state_dict())
    assert [name for name, _ in module.named_parameters()] == [name for name, _ in scratch.named_parameters()]
    kinds = [type(layer) for _, layer in torch_ref.named_layers(module)]
    # torch's own module of scratch's class name (scratch names its classes as torch.nn does)
    expected = [torch_ref.MaskedDropout if type(layer) is Dropout else getattr(nn, type(layer).__name__)
                for layer in scratch.layers]
    assert kinds == expected and len(kinds) == len(spec.layers)
    assert [kind.__name__ for kind in kinds[:2 + batch_norm]] == ["Linear", *["BatchNorm1d"] * batch_norm,
                                                                   type(scratch.layers[1 + batch_norm]).__name__]


def test_leaky_relu_slope_and_dtype():
    module = torch_ref.build_model(small_spec("leaky_relu", dtype="float64"))
    assert module.layers[1].negative_slope == 0.2
    assert all(param.dtype == torch.float64 for param in module.parameters())
    assert torch_ref.build_model(small_spec(dtype="float32")).layers[0].weight.dtype == torch.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_from_numpy_copies_exactly(dtype, rng):
    spec = small_spec(batch_norm=True, dtype=dtype)
    state = MLP(spec, rng).state_dict()
    module = torch_ref.build_model(spec)
    torch_ref.load_from_numpy(module, state)
    for key, tensor in module.state_dict().items():
        assert tensor.numpy().dtype == state[key].dtype
        np.testing.assert_array_equal(tensor.numpy(), state[key])  # bit for bit
    state["layers.0.weight"][0, 0] += 1.0  # the module holds a copy, not a view
    assert module.layers[0].weight[0, 0].item() != state["layers.0.weight"][0, 0]


def test_load_from_numpy_refuses_wrong_keys_and_dtypes(rng):
    spec = small_spec()
    module = torch_ref.build_model(spec)
    state = MLP(spec, rng).state_dict()
    with pytest.raises(ValueError, match=r"missing \['layers.0.bias'\]"):
        torch_ref.load_from_numpy(module, {k: v for k, v in state.items() if k != "layers.0.bias"})
    state["layers.0.weight"] = state["layers.0.weight"].astype(np.float32)
    with pytest.raises(ValueError, match="layers.0.weight: got .* torch.float32, the torch model has .* torch.float64"):
        torch_ref.load_from_numpy(module, state)


def test_masked_dropout_applies_the_injected_mask_once():
    layer = torch_ref.MaskedDropout(0.5).train()
    x = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(2, 3)
    mask = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    layer.next_mask = mask
    torch.testing.assert_close(layer(x), x * mask, rtol=0, atol=0)
    assert layer.next_mask is None
    torch.manual_seed(0)
    drawn = layer(x)  # no mask: torch's own dropout, values 0 or 2x
    assert set((drawn / x).unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(layer.eval()(x), x)
    layer.train().next_mask = mask[:, :2]
    with pytest.raises(ValueError, match=r"dropout mask has shape \(2, 2\), the input has \(2, 3\)"):
        layer(x)


def test_set_dropout_masks_checks_names_and_dtypes():
    module = torch_ref.build_model(small_spec(dropout=0.5))
    torch_ref.set_dropout_masks(module, {"layers.2": np.ones((4, 6))})
    assert module.layers[2].next_mask.shape == (4, 6)
    with pytest.raises(ValueError, match=r"'layers.1' is not a dropout layer .* \['layers.2'\]"):
        torch_ref.set_dropout_masks(module, {"layers.1": np.ones((4, 6))})
    with pytest.raises(ValueError, match="dropout mask is torch.float32, the model is torch.float64"):
        torch_ref.set_dropout_masks(module, {"layers.2": np.ones((4, 6), dtype=np.float32)})


def test_losses_follow_their_formulas():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    targets = torch.tensor([0, 2])
    smoothing = torch_ref.build_loss(small_spec(label_smoothing=0.2))
    log_p = F.log_softmax(logits, dim=1)
    expected = (0.8 * -log_p[[0, 1], targets] + 0.2 * -log_p.mean(dim=1)).mean()
    torch.testing.assert_close(smoothing(logits, targets), expected)
    mse = torch_ref.build_loss(small_spec(loss="mse"))
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(mse(logits, targets), ((logits - one_hot) ** 2).mean())


def test_l1_penalty_counts_linear_weights_only(rng):
    module = torch_ref.build_model(small_spec(batch_norm=True))
    expected = sum(layer.weight.abs().sum() for layer in module.layers if isinstance(layer, nn.Linear))
    torch.testing.assert_close(torch_ref.l1_penalty(module, 0.01), 0.01 * expected)
    assert isinstance(module.layers[1], nn.BatchNorm1d)  # its weight is ones and is left out


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_build_optimizer_passes_the_hyper_parameters(optimizer):
    train = TrainSpec(optimizer=optimizer, lr=0.03, momentum=0.5, betas=(0.8, 0.9), eps=1e-6, alpha=0.9,
                      weight_decay=0.01)
    opt = torch_ref.build_optimizer(train, torch_ref.build_model(small_spec()))
    expected_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                      "rmsprop": torch.optim.RMSprop}[optimizer]
    assert type(opt) is expected_class
    group = opt.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 0.01  # AdamW's 1e-2 default is not used
    expected = {"sgd": {"momentum": 0.5}, "adam": {"betas": (0.8, 0.9), "eps": 1e-6},
                "adamw": {"betas": (0.8, 0.9), "eps": 1e-6}, "rmsprop": {"alpha": 0.9, "momentum": 0.5, "eps": 1e-6}}
    assert {key: group[key] for key in expected[optimizer]} == expected[optimizer]


def test_build_scheduler_per_schedule():
    opt = torch_ref.build_optimizer(TrainSpec(), torch_ref.build_model(small_spec()))
    assert torch_ref.build_scheduler(TrainSpec(schedule="constant"), opt) is None
    step = torch_ref.build_scheduler(TrainSpec(schedule="step", step_size=3, gamma=0.5), opt)
    assert isinstance(step, torch.optim.lr_scheduler.StepLR) and (step.step_size, step.gamma) == (3, 0.5)
    cosine = torch_ref.build_scheduler(TrainSpec(schedule="cosine", epochs=7), opt)
    assert isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR) and cosine.T_max == 7


def test_optimizer_and_training_state_use_parameter_names(rng):
    module = torch_ref.build_model(small_spec(batch_norm=True))
    opt = torch_ref.build_optimizer(TrainSpec(optimizer="adam"), module)
    seen = torch_ref.forward_backward(module, torch_ref.build_loss(small_spec()), rng.standard_normal((5, 4)),
                                      np.array([0, 1, 2, 0, 1]))
    opt.step()
    state = torch_ref.training_state(module, opt)
    assert set(torch_ref.optimizer_state(opt, module)["layers.0.weight"]) == {"step", "exp_avg", "exp_avg_sq"}
    np.testing.assert_allclose(state["layers.0.weight.exp_avg"], 0.1 * seen.grads["layers.0.weight"], rtol=1e-14)
    assert state["layers.1.num_batches_tracked"] == 1 and state["lr"] == TrainSpec().lr
    plain = torch.optim.SGD(module.parameters(), lr=0.1)  # momentum 0: torch keeps a None buffer
    torch_ref.forward_backward(module, torch_ref.build_loss(small_spec()), rng.standard_normal((5, 4)),
                               np.array([0, 1, 2, 0, 1]))
    plain.step()
    assert torch_ref.optimizer_state(plain, module)["layers.0.weight"] == {}


def test_forward_backward_records_every_layer(rng):
    spec = small_spec(batch_norm=True, dropout=0.5)
    module = torch_ref.build_model(spec)
    x, y = rng.standard_normal((5, 4)), np.array([0, 1, 2, 0, 1])
    mask = (rng.random((5, 6)) > 0.5) * 2.0
    seen = torch_ref.forward_backward(module, torch_ref.build_loss(spec), x, y, l1=0.01, masks={"layers.3": mask})
    names = [name for name, _ in torch_ref.named_layers(module)]
    assert list(seen.outputs) == names and list(seen.grad_inputs) == names
    np.testing.assert_array_equal(seen.outputs["layers.3"], seen.outputs["layers.2"] * mask)
    inputs = torch.from_numpy(x).requires_grad_()  # dL/dx again, by plain autograd
    module.layers[3].next_mask = torch.from_numpy(mask)
    loss = torch_ref.build_loss(spec)(module(inputs), torch.from_numpy(y)) + torch_ref.l1_penalty(module, 0.01)
    loss.backward()
    np.testing.assert_allclose(seen.grad_inputs["layers.0"], inputs.grad.numpy(), rtol=1e-12, atol=0)
    assert seen.loss.shape == () and seen.buffers["layers.1.num_batches_tracked"] == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_saved_by_scratch_load_into_the_torch_model(tmp_path, dtype):
    """save_npz writes torch's state_dict keys: the file loads into the twin and both predict alike."""
    from scratch_nn.io import save_npz

    spec = ModelSpec(layers=parse_layers("16:relu+bn,8:tanh,4"), input_shape=(12,), dtype=dtype)
    scratch = MLP(spec, np.random.default_rng(5))
    path = save_npz(scratch, tmp_path / "weights.npz")
    twin = torch_ref.build_model(spec)
    torch_ref.load_npz(twin, path)
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), scratch.state_dict()[key])
    x = np.random.default_rng(6).standard_normal((5, 12)).astype(dtype)
    with torch.no_grad():
        expected = twin.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(scratch.eval().forward(x), expected, rtol=1e-5 if dtype == "float32" else 1e-12)
