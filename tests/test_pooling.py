"""MaxPool2d and AvgPool2d against torch (float64 and float32), ties, NaN, ceil_mode, divisors, errors."""
import numpy as np
import pytest
import torch
from twin_check import FLOAT32, FLOAT64, channel_major, check_against_torch

from scratch_nn.gradcheck import check_layer_gradients
from scratch_nn.pooling import AvgPool2d, MaxPool2d, pool2d_output_shape

GRAD_TOLERANCE = 1e-7
CHECK = {"eps": 1e-3, "order": 4}

# keyword arguments shared by both poolings (dilation: MaxPool2d only), input H x W
CONFIGS = {
    "lenet-2": ({"kernel_size": 2}, (8, 8)),
    "2-odd-input": ({"kernel_size": 2}, (9, 7)),
    "overlapping-3-2": ({"kernel_size": 3, "stride": 2}, (9, 9)),
    "overlapping-stride-1": ({"kernel_size": 2, "stride": 1}, (5, 6)),
    "padding": ({"kernel_size": 3, "stride": 2, "padding": 1}, (8, 7)),
    "rectangular": ({"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)}, (6, 9)),
    "ceil": ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (8, 8)),
    "ceil-padding": ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (8, 6)),
    "ceil-dropped-last-window": ({"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (5, 5)),
    "ceil-stride-3": ({"kernel_size": (3, 2), "stride": 3, "ceil_mode": True}, (10, 8)),
}
DILATED = {
    "dilation-2": ({"kernel_size": 2, "dilation": 2}, (7, 8)),
    "dilation-pair-padding": ({"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (1, 2)}, (9, 10)),
    "dilation-ceil": ({"kernel_size": 2, "stride": 2, "dilation": 2, "ceil_mode": True}, (8, 9)),
}


@pytest.fixture
def rng():
    return np.random.default_rng(20261202)


def max_pools(arguments):
    return MaxPool2d(**arguments), torch.nn.MaxPool2d(**arguments)


def avg_pools(arguments, count_include_pad):
    return (AvgPool2d(**arguments, count_include_pad=count_include_pad),
            torch.nn.AvgPool2d(**arguments, count_include_pad=count_include_pad))


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, FLOAT64), (np.float32, FLOAT32)])
@pytest.mark.parametrize("name", [*CONFIGS, *DILATED])
def test_max_pool_matches_torch(name, dtype, tolerance, rng):
    arguments, size = {**CONFIGS, **DILATED}[name]
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    check_against_torch(*max_pools(arguments), x, rng, **tolerance)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, FLOAT64), (np.float32, FLOAT32)])
@pytest.mark.parametrize("name", CONFIGS)
def test_avg_pool_matches_torch_with_its_divisors(name, dtype, tolerance, count_include_pad, rng):
    arguments, size = CONFIGS[name]
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    check_against_torch(*avg_pools(arguments, count_include_pad), x, rng, **tolerance)


def test_avg_pool_forward_rounds_exactly_as_torchs_in_float32(rng):
    """The same row-major sum, then a division: bit for bit, not just close."""
    scratch, twin = avg_pools(CONFIGS["ceil-padding"][0], False)
    x = rng.standard_normal((4, 3, 8, 6)).astype(np.float32)
    np.testing.assert_array_equal(scratch.forward(x), twin(torch.tensor(x)).numpy())


@pytest.mark.parametrize("name", ["lenet-2", "overlapping-3-2", "overlapping-stride-1", "padding", "ceil-padding"])
@pytest.mark.parametrize("values", ["integers", "constant", "binary"])
def test_max_pool_ties_send_the_gradient_where_torch_sends_it(name, values, rng):
    """Equal values in a window: torch takes the first in row-major order; the gradient must agree exactly."""
    arguments, size = CONFIGS[name]
    shape = (2, 3, *size)
    x = {"integers": rng.integers(0, 3, shape), "constant": np.full(shape, 1.5),
         "binary": rng.integers(0, 2, shape) * 4.0}[values].astype(np.float64)
    grad_out = np.arange(1, 1 + np.prod(MaxPool2d(**arguments).forward(x).shape), dtype=np.float64)
    grad_out = grad_out.reshape(MaxPool2d(**arguments).forward(x).shape)  # distinct: a misrouted one shows
    _, grad_in, _, torch_grad_in = check_against_torch(*max_pools(arguments), x, rng, **FLOAT64, grad_out=grad_out)
    np.testing.assert_array_equal(grad_in, torch_grad_in)


def test_max_pool_nan_wins_its_window_and_the_last_nan_gets_the_gradient_as_in_torch(rng):
    """MaxPoolKernel.cpp: `(val > maxval) || isnan(val)` replaces, so the window's last NaN is picked."""
    x = rng.integers(0, 2, (2, 2, 7, 7)).astype(np.float64)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 0, 2, 1] = x[1, 1, 4, 5] = np.nan
    scratch, twin = max_pools({"kernel_size": 3, "stride": 2, "padding": 1})
    out = scratch.forward(x)
    x_torch = torch.tensor(x, requires_grad=True)
    out_torch = twin(x_torch)
    np.testing.assert_array_equal(out, out_torch.detach().numpy())  # NaN where torch has NaN
    grad_out = rng.integers(-9, 10, out.shape).astype(np.float64)  # integers: sums exact in any order
    out_torch.backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(scratch.backward(grad_out), x_torch.grad.numpy())


@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("name", ["padding", "ceil-padding", "dilation-pair-padding", "ceil-dropped-last-window"])
def test_a_window_of_only_minus_infinity_sends_its_gradient_where_torch_sends_it(name, nan, rng):
    """torch's running index starts at the window's first in-bounds element: an all -inf window routes
    its gradient there, never to padding (where it would be lost)."""
    arguments, size = {**CONFIGS, **DILATED}[name]
    x = rng.integers(0, 3, (2, 2, *size)).astype(np.float64)
    x[0, 0] = -np.inf  # every window of this channel
    x[1, 1, : size[0] // 2] = -np.inf  # the windows of its top half
    if nan:
        x[0, 1, 2, 3] = np.nan  # the NaN path tracks the winners in the forward pass
    scratch, twin = max_pools(arguments)
    out = scratch.forward(x)
    x_torch = torch.tensor(x, requires_grad=True)
    out_torch = twin(x_torch)
    np.testing.assert_array_equal(out, out_torch.detach().numpy())
    grad_out = rng.integers(1, 10, out.shape).astype(np.float64)  # integers: sums exact in any order
    out_torch.backward(torch.tensor(grad_out))
    grad_in = scratch.backward(grad_out)
    np.testing.assert_array_equal(grad_in, x_torch.grad.numpy())
    assert grad_in[0, 0].sum() == grad_out[0, 0].sum()  # none of it dropped
    np.testing.assert_array_equal(scratch.winners(x), torch_winners(twin, x))


def torch_winners(twin: torch.nn.MaxPool2d, x: np.ndarray) -> np.ndarray:
    """The offset in its window (row-major) of the element torch picks, from its return_indices."""
    pool = torch.nn.MaxPool2d(twin.kernel_size, twin.stride, twin.padding, twin.dilation,
                              return_indices=True, ceil_mode=twin.ceil_mode)
    _, index = pool(torch.tensor(x))
    width = x.shape[3]
    row, column = (index // width).numpy(), (index % width).numpy()
    kernel, stride, padding, dilation = (pair_of(value) for value in (twin.kernel_size, twin.stride,
                                                                      twin.padding, twin.dilation))
    top = np.arange(index.shape[2])[:, None] * stride[0] - padding[0]
    left = np.arange(index.shape[3])[None, :] * stride[1] - padding[1]
    return ((row - top) // dilation[0]) * kernel[1] + (column - left) // dilation[1]


def pair_of(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


@pytest.mark.parametrize("name", ["overlapping-3-2", "ceil-padding", "rectangular"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_gradients_match_finite_differences(pool, name, rng, worst_gradient_error):
    arguments, size = CONFIGS[name]
    layer = MaxPool2d(**arguments) if pool == "max" else AvgPool2d(**arguments)
    n = 2 * 2 * size[0] * size[1]
    x = (rng.permutation(n) * 0.01).reshape(2, 2, *size)  # values 0.01 apart: no tie within 2h of the stencil
    grad_out = rng.standard_normal(layer.forward(x).shape)
    errors = check_layer_gradients(layer, x, grad_out, max_coords=80, rng=rng, **CHECK)
    if errors["input"] > worst_gradient_error["error"]:
        worst_gradient_error.update(error=errors["input"], where=f"{pool} pool {name}")
    assert errors["input"] <= GRAD_TOLERANCE, errors


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_gives_the_same_results_for_either_memory_layout(pool, rng):
    arguments = CONFIGS["ceil-padding"][0]
    layer = MaxPool2d(**arguments) if pool == "max" else AvgPool2d(**arguments)
    x = rng.standard_normal((3, 2, 8, 6))
    grad_out = rng.standard_normal(layer.forward(x).shape)
    results = [(layer.forward(variant).copy(), layer.backward(grad_out).copy()) for variant in (x, channel_major(x))]
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("size", range(3, 12))
@pytest.mark.parametrize("kernel, stride, padding, dilation", [(2, 2, 0, 1), (3, 2, 1, 1), (3, 3, 1, 1), (2, 3, 1, 1),
                                                               (2, 2, 1, 2), (4, 3, 2, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool2d_output_shape_is_torchs(size, kernel, stride, padding, dilation, ceil_mode):
    x = torch.zeros(1, 1, size, size + 1)
    try:
        expected = tuple(torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode).shape[1:])
    except RuntimeError:  # torch refuses it (output size below 1): so must we
        with pytest.raises(ValueError, match="the output needs at least 1x1"):
            pool2d_output_shape((1, size, size + 1), kernel, stride, padding, dilation, ceil_mode)
        return
    assert pool2d_output_shape((1, size, size + 1), kernel, stride, padding, dilation, ceil_mode) == expected


def test_pooling_defaults_are_torchs():
    layer = MaxPool2d(3)
    assert (layer.stride, layer.padding, layer.dilation, layer.ceil_mode) == ((3, 3), (0, 0), (1, 1), False)
    average = AvgPool2d((2, 3))
    assert (average.stride, average.padding, average.count_include_pad) == ((2, 3), (0, 0), True)
    assert layer.params == {} and layer.grads == {} and layer.buffers == {}


@pytest.mark.parametrize("make, message", [
    (lambda: MaxPool2d(3, padding=2), r"MaxPool2d: padding \(2, 2\) must be at most half the kernel's reach 3"),
    (lambda: AvgPool2d(2, padding=(0, 2)), r"AvgPool2d: padding \(0, 2\) must be at most half"),
    (lambda: MaxPool2d(0), r"MaxPool2d: kernel_size must be >= 1, got 0"),
    (lambda: MaxPool2d(2, stride=0), r"MaxPool2d: stride must be >= 1, got 0"),
    (lambda: MaxPool2d(2, dilation=(1, 0)), r"MaxPool2d: dilation must be >= 1"),
    (lambda: AvgPool2d(2.5), r"AvgPool2d: kernel_size must be an int or a pair of ints, got 2.5"),
])
def test_pooling_refuses_bad_arguments_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_pooling_refuses_inputs_it_cannot_pool():
    with pytest.raises(ValueError, match=r"kernel_size \(5, 5\).*gives an output of 0x0 for an input of 4x4"):
        MaxPool2d(5).forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"AvgPool2d: expected input \(N, C, H, W\), got shape \(4, 4\)"):
        AvgPool2d(2).forward(np.zeros((4, 4)))
    for layer in (MaxPool2d(2), AvgPool2d(2)):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros((1, 1, 2, 2)))
