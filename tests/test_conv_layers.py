"""Conv2d against torch.nn.Conv2d (float64 at 1e-10, float32), finite differences, init, layout and errors."""
import math

import numpy as np
import pytest
import torch
from twin_check import FLOAT32, FLOAT64, channel_major, check_against_torch

from scratch_nn import conv
from scratch_nn.conv import Conv2d, conv2d_output_shape
from scratch_nn.gradcheck import check_layer_gradients

GRAD_TOLERANCE = 1e-7  # as tests/test_layers.py: float64, the O(h^4) stencil at h = 1e-3
CHECK = {"eps": 1e-3, "order": 4}

# (in, out, kernel_size, stride, padding, dilation, groups, bias, input H x W): every argument varied
CONFIGS = {
    "lenet-first": (1, 6, 5, 1, 2, 1, 1, True, (12, 12)),
    "lenet-second": (6, 16, 5, 1, 0, 1, 1, True, (14, 14)),
    "kernel-1": (3, 4, 1, 1, 0, 1, 1, True, (5, 6)),
    "stride-2": (3, 4, 3, 2, 0, 1, 1, True, (9, 8)),
    "stride-pair": (2, 3, 3, (2, 3), 1, 1, 1, True, (10, 11)),
    "padding-pair": (2, 3, 3, 1, (0, 2), 1, 1, True, (6, 7)),
    "rectangular": (3, 2, (2, 4), 1, 0, 1, 1, True, (7, 9)),
    "dilation-2": (2, 3, 3, 1, 2, 2, 1, True, (8, 8)),
    "dilation-pair-stride": (2, 4, (3, 2), 2, 1, (1, 3), 1, True, (11, 10)),
    "groups-2": (4, 6, 3, 1, 1, 1, 2, True, (6, 6)),
    "depthwise-stride": (4, 4, 3, 2, 1, 1, 4, True, (7, 8)),
    "groups-dilation": (6, 3, 2, 1, 1, 2, 3, False, (6, 5)),
    "no-bias": (3, 5, 3, 1, 1, 1, 1, False, (5, 5)),
    "kernel-equals-input": (2, 3, (4, 5), 1, 0, 1, 1, True, (4, 5)),
}


@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


def build(config, dtype, rng):
    in_c, out_c, kernel, stride, padding, dilation, groups, bias, _ = config
    scratch = Conv2d(in_c, out_c, kernel, stride, padding, dilation, groups, bias, dtype=dtype, rng=rng)
    twin = torch.nn.Conv2d(in_c, out_c, kernel, stride, padding, dilation, groups, bias)
    return scratch, twin


def sample_input(config, dtype, rng, batch=3):
    return rng.standard_normal((batch, config[0], *config[-1])).astype(dtype)


@pytest.mark.parametrize("name", CONFIGS)
def test_conv2d_matches_torch_in_float64(name, rng):
    config = CONFIGS[name]
    scratch, twin = build(config, np.float64, rng)
    check_against_torch(scratch, twin, sample_input(config, np.float64, rng), rng, **FLOAT64)


@pytest.mark.parametrize("name", ["lenet-first", "lenet-second", "stride-pair", "groups-2", "dilation-2"])
def test_conv2d_matches_torch_in_float32(name, rng):
    config = CONFIGS[name]
    scratch, twin = build(config, np.float32, rng)
    x = sample_input(config, np.float32, rng, batch=8)
    check_against_torch(scratch, twin, x, rng, **FLOAT32)


@pytest.mark.parametrize("name", ["lenet-first", "stride-2", "dilation-pair-stride", "groups-dilation"])
def test_conv2d_gradients_match_finite_differences(name, rng, worst_gradient_error):
    config = CONFIGS[name]
    scratch, _ = build(config, np.float64, rng)
    x = sample_input(config, np.float64, rng, batch=2)
    grad_out = rng.standard_normal(scratch.forward(x).shape)
    errors = check_layer_gradients(scratch, x, grad_out, max_coords=60, rng=rng, **CHECK)
    assert errors.keys() == {"input", *scratch.params}
    if max(errors.values()) > worst_gradient_error["error"]:
        worst_gradient_error.update(error=max(errors.values()), where=f"Conv2d {name}")
    assert max(errors.values()) <= GRAD_TOLERANCE, errors


def test_input_grad_false_skips_dx_and_still_fills_the_parameter_gradients(rng):
    config = CONFIGS["lenet-first"]
    scratch, twin = build(config, np.float64, rng)
    check_against_torch(scratch, twin, sample_input(config, np.float64, rng), rng, input_grad=False, **FLOAT64)


@pytest.mark.parametrize("name", ["lenet-second", "stride-pair"])
def test_conv2d_gives_the_same_results_for_either_memory_layout_of_its_input(name, rng):
    """Conv2d's own outputs are channel-major views; a contiguous (N, C, H, W) input must give the same."""
    config = CONFIGS[name]
    scratch, _ = build(config, np.float64, rng)
    x = sample_input(config, np.float64, rng)
    grad_out = rng.standard_normal(scratch.forward(x).shape)
    results = []
    for variant in (x, channel_major(x)):
        out = scratch.forward(variant).copy()
        grad_in = scratch.backward(grad_out).copy()
        results.append((out, grad_in, scratch.grads["weight"].copy()))
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_conv2d_follows_a_change_of_batch_size_and_keeps_its_gradient_arrays(rng):
    config = CONFIGS["lenet-first"]
    scratch, twin = build(config, np.float64, rng)
    arrays = {name: id(value) for name, value in scratch.grads.items()}
    for batch in (4, 1, 4):  # the work arrays are remade for each new shape
        check_against_torch(scratch, twin, sample_input(config, np.float64, rng, batch), rng, **FLOAT64)
        twin.zero_grad()
    assert {name: id(value) for name, value in scratch.grads.items()} == arrays


@pytest.mark.parametrize("name", ["lenet-first", "groups-dilation", "kernel-equals-input"])
def test_conv2d_with_exact_rows_at_stride_1_matches_torch(name, rng, monkeypatch):
    """WIDE_ROWS off: stride 1 takes the exact-rows path that strides > 1 always take (kept for measuring)."""
    config = CONFIGS[name]
    scratch, twin = build(config, np.float64, rng)
    monkeypatch.setattr(conv, "WIDE_ROWS", False)
    check_against_torch(scratch, twin, sample_input(config, np.float64, rng), rng, **FLOAT64)
    assert not scratch._cache.wide


@pytest.mark.parametrize("name", ["lenet-first", "lenet-second", "groups-2", "stride-pair"])
def test_conv2d_built_block_by_block_matches_torch(name, rng, monkeypatch):
    """Columns for a few samples at a time (here 2 of 5, the last block 1): the same results as torch's."""
    config = CONFIGS[name]
    scratch, twin = build(config, np.float64, rng)
    x = sample_input(config, np.float64, rng, batch=5)
    scratch.forward(x)
    per_sample = scratch._cache.rows * scratch._cache.length * 8  # bytes of one sample's columns
    monkeypatch.setattr(conv, "COLUMN_BLOCK_BYTES", 2 * per_sample + per_sample // 2)
    check_against_torch(scratch, twin, x, rng, **FLOAT64)
    assert scratch._cache.blocks() == [(0, 2), (2, 4), (4, 5)]


def test_conv2d_has_torch_names_and_shapes(rng):
    scratch = Conv2d(6, 16, (5, 3), groups=2, rng=rng)
    twin = torch.nn.Conv2d(6, 16, (5, 3), groups=2)
    assert {k: v.shape for k, v in scratch.params.items()} == {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert scratch.grads.keys() == scratch.params.keys() and scratch.buffers == {}
    assert all(value.dtype == np.float32 for value in scratch.params.values())
    assert "bias" not in Conv2d(6, 16, 5, bias=False).params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_default_init_is_torchs_uniform_on_one_over_root_fan_in(dtype):
    """reset_parameters in torch/nn/modules/conv.py: kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(fan_in)."""
    layer = Conv2d(8, 64, 3, groups=2, dtype=dtype, rng=np.random.default_rng(1))
    bound = 1 / math.sqrt(8 / 2 * 3 * 3)  # fan_in = in/groups * kH * kW
    for value in layer.params.values():
        assert value.dtype == dtype and np.abs(value).max() <= bound
        assert np.abs(value).max() > 0.9 * bound  # the whole interval is used, not a narrower one
    weight = layer.params["weight"]
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.05 * bound  # U(-a, a) has std a / sqrt(3)
    again = Conv2d(8, 64, 3, groups=2, dtype=dtype, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again.params["weight"], weight)
    assert not Conv2d(8, 64, 3).params["weight"].any()  # without an rng: zeros, for scratch_nn.init


@pytest.mark.parametrize("height, width", [(28, 28), (14, 14), (7, 9), (5, 5)])
@pytest.mark.parametrize("kernel, stride, padding, dilation", [(5, 1, 2, 1), (3, 2, 1, 1), ((2, 3), (1, 2), 0, (2, 1))])
def test_conv2d_output_shape_is_torchs(height, width, kernel, stride, padding, dilation):
    conv = torch.nn.Conv2d(2, 3, kernel, stride, padding, dilation)
    expected = tuple(conv(torch.zeros(1, 2, height, width)).shape[1:])
    assert conv2d_output_shape((2, height, width), 3, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize("arguments, message", [
    ({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 3}, r"groups=3 must divide in_channels=4"),
    ({"in_channels": 0, "out_channels": 6, "kernel_size": 3}, r"in_channels must be a positive int, got 0"),
    ({"in_channels": 1, "out_channels": 6, "kernel_size": 0}, r"kernel_size must be >= 1, got 0"),
    ({"in_channels": 1, "out_channels": 6, "kernel_size": (3, 3, 3)}, r"kernel_size must be an int or a pair"),
    ({"in_channels": 1, "out_channels": 6, "kernel_size": 3, "stride": 0}, r"stride must be >= 1, got 0"),
    ({"in_channels": 1, "out_channels": 6, "kernel_size": 3, "padding": -1}, r"padding must be >= 0, got -1"),
    ({"in_channels": 1, "out_channels": 6, "kernel_size": 3, "dilation": 0}, r"dilation must be >= 1, got 0"),
])
def test_conv2d_refuses_bad_arguments_naming_them(arguments, message):
    with pytest.raises(ValueError, match=message):
        Conv2d(**arguments)


def test_conv2d_refuses_inputs_it_cannot_convolve():
    with pytest.raises(ValueError, match=r"kernel_size \(5, 5\).*reaches 5 pixels, more than the padded input 4x4"):
        Conv2d(1, 2, 5).forward(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape \(2, 1, 8, 8\)"):
        Conv2d(3, 2, 3).forward(np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"reaches 9 pixels, more than the padded input 8x8"):
        conv2d_output_shape((1, 6, 6), 2, 3, padding=1, dilation=4)
    with pytest.raises(RuntimeError, match="Conv2d.backward called before forward"):
        Conv2d(1, 2, 3).backward(np.zeros((1, 2, 3, 3), dtype=np.float32))


def lenet5_relu_pair(rng):
    """lenet5-relu from the new layers and the existing ones, and torch's nn.Sequential with its weights."""
    from scratch_nn.activations import ReLU
    from scratch_nn.layer import Flatten
    from scratch_nn.layers import Linear
    from scratch_nn.pooling import MaxPool2d

    layers = [Conv2d(1, 6, 5, padding=2, dtype=np.float64, rng=rng), ReLU(), MaxPool2d(2),
              Conv2d(6, 16, 5, dtype=np.float64, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
              Linear(400, 120, dtype=np.float64, rng=rng), ReLU(), Linear(120, 10, dtype=np.float64, rng=rng)]
    nn = torch.nn
    twin = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10)).double()
    twin.load_state_dict({f"{index}.{name}": torch.tensor(value) for index, layer in enumerate(layers)
                          for name, value in layer.params.items()})
    return layers, twin


def test_a_lenet5_relu_stack_trains_as_torchs_for_three_sgd_steps_in_float64(rng):
    """The layers together: channel-major views through ReLU, pooling and Flatten, SGD with momentum."""
    from scratch_nn.losses import CrossEntropyLoss
    from scratch_nn.optim import SGD

    layers, twin = lenet5_relu_pair(rng)
    named = {f"{index}.{name}": (layer, name) for index, layer in enumerate(layers) for name in layer.params}
    optimizer = SGD({key: layer.params[name] for key, (layer, name) in named.items()}, lr=0.1, momentum=0.9)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    loss_fn = CrossEntropyLoss()
    for _ in range(3):
        x, y = rng.uniform(0, 1, (8, 1, 28, 28)), rng.integers(0, 10, 8)
        out = x
        for layer in layers:
            out = layer.forward(out)
        loss = loss_fn.forward(out, y)
        grad = loss_fn.backward()
        for index in range(len(layers) - 1, -1, -1):
            grad = layers[index].backward(grad, input_grad=False) if index == 0 else layers[index].backward(grad)
        optimizer.step({key: layer.grads[name] for key, (layer, name) in named.items()})
        twin_optimizer.zero_grad()
        twin_loss = torch.nn.functional.cross_entropy(twin(torch.tensor(x)), torch.tensor(y))
        twin_loss.backward()
        twin_optimizer.step()
        assert abs(float(loss) - twin_loss.item()) <= 1e-12
    for key, value in twin.state_dict().items():
        layer, name = named[key]
        np.testing.assert_allclose(layer.params[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


def test_float32_conv_bias_gradient_is_a_float64_sum_rounded_once():
    """LeNet's first layer: 64 x 28 x 28 terms per channel whose two halves of the batch cancel. The
    bias gradient is summed in float64 and rounded once: within a few float32 ulps of the exact sum."""
    rng = np.random.default_rng(3)
    layer32, layer64 = (Conv2d(1, 6, 5, padding=2, dtype=dtype, rng=np.random.default_rng(0))
                        for dtype in (np.float32, np.float64))
    x = rng.random((64, 1, 28, 28)).astype(np.float32)
    g = rng.standard_normal((64, 6, 28, 28)) * 1e-3
    g[:32] += 1e-3
    g[32:] -= 1e-3
    g = g.astype(np.float32)
    layer32.forward(x)
    layer32.backward(g, input_grad=False)
    layer64.forward(x.astype(np.float64))
    layer64.backward(g.astype(np.float64), input_grad=False)
    exact = layer64.grads["bias"]
    error = np.max(np.abs(layer32.grads["bias"].astype(np.float64) - exact)) / np.max(np.abs(exact))
    assert error <= 4 * np.finfo(np.float32).eps
