"""The CNN layers wired through the spec: validation refuses bad shapes in one line, conv weights get
torch's fan-in, and a whole CNN spec (4-D dropout and dropout2d masks included) gives the same
logits and gradients on both sides, float64 and float32."""
import math

import numpy as np
import pytest
import torch

from scratch_nn.conv import Conv2d
from scratch_nn.model import Sequential
from scratch_nn.spec import SpecError, load_builtin_spec, spec_from_dict
from torch_ref.model import TorchSequential, load_from_numpy, set_dropout_masks


def cnn_spec(layers, input_shape=(1, 28, 28), **model):
    """A validated spec of `layers` (TOML-like tables) on MNIST-sized input."""
    return spec_from_dict({"model": {"input_shape": list(input_shape), "layers": layers, **model}}, where="test")


CONV = {"type": "conv2d", "out_channels": 4, "kernel_size": 3}
TAIL = [{"type": "flatten"}, {"type": "linear", "out_features": 10}]


@pytest.mark.parametrize("layers, message", [
    ([{**CONV, "kernel_size": 31}, *TAIL],
     r"^test: model: layers\.0 \(conv2d\): kernel_size \(31, 31\) .*reaches 31 pixels, more than the padded input"),
    ([CONV, {"type": "max_pool2d", "kernel_size": 26, "stride": 1}, {"type": "max_pool2d", "kernel_size": 3},
      *TAIL], r"^test: model: layers\.2 \(max_pool2d\): kernel_size \(3, 3\) .* gives an output of 0x0 for an input "
     r"of 1x1; the output needs at least 1x1$"),
    ([{**CONV, "groups": 3}, *TAIL], r"^test: model: layers\.0 \(conv2d\): groups=3 must divide in_channels=1"),
    ([CONV, {"type": "linear", "out_features": 10}],
     r"^test: model: layers\.1 \(linear\) needs an input of shape \(N, features\), got \(N, 4, 26, 26\); put "),
    ([{**CONV, "kernel_size": [3, 0]}, *TAIL], r"kernel_size must be an integer >= 1 or a pair"),
])
def test_bad_cnn_shapes_are_refused_at_validation_in_one_line(layers, message):
    with pytest.raises(SpecError, match=message) as error:
        cnn_spec(layers)
    assert "\n" not in str(error.value)


def test_an_image_layer_on_vector_input_is_refused():
    with pytest.raises(SpecError, match=r"layers\.0 \(conv2d\) needs an input of shape \(N, C, H, W\), got "
                                        r"\(N, 784\); for MNIST images set input_shape = \[1, 28, 28\]"):
        cnn_spec([CONV, *TAIL], input_shape=(784,))


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "xavier_uniform", "torch_default"])
def test_conv_weights_use_torchs_fan_in_and_fan_out(scheme):
    """fan_in = in/groups*kH*kW = 2*9, fan_out = out*kH*kW = 8*9 (torch's _calculate_fan_in_and_fan_out)."""
    spec = cnn_spec([{"type": "conv2d", "out_channels": 2, "kernel_size": 3},
                     {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "groups": 2}, {"type": "relu"}, *TAIL],
                    init=scheme)
    weight = Sequential(spec.model, np.random.default_rng(0)).layers[1].params["weight"]
    bound = {"kaiming_uniform": math.sqrt(2) * math.sqrt(3 / 9), "xavier_uniform": math.sqrt(6 / (9 + 72)),
             "torch_default": 1 / math.sqrt(9)}[scheme]
    assert weight.shape == (8, 1, 3, 3)
    assert 0.9 * bound < np.abs(weight).max() <= bound


def twins(spec, dtype):
    spec_model = spec.model.__class__(**{**spec.model.__dict__, "dtype": dtype})
    ours = Sequential(spec_model, np.random.default_rng(3))
    theirs = TorchSequential(spec_model)
    load_from_numpy(theirs, ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-11), ("float32", 2e-4)])
def test_a_cnn_spec_gives_the_same_logits_and_gradients_on_both_sides(dtype, tolerance):
    """conv - batch_norm2d - relu - dropout2d - max_pool - dropout (4-D) - conv - tanh - avg_pool - flatten -
    linear, training mode, the scratch side's masks applied on the torch side."""
    spec = cnn_spec([{"type": "conv2d", "out_channels": 4, "kernel_size": 5, "padding": 2}, {"type": "batch_norm2d"},
                     {"type": "relu"}, {"type": "dropout2d", "p": 0.3}, {"type": "max_pool2d", "kernel_size": 2},
                     {"type": "dropout", "p": 0.2}, {"type": "conv2d", "out_channels": 6, "kernel_size": 3},
                     {"type": "tanh"}, {"type": "avg_pool2d", "kernel_size": 2, "stride": 2}, *TAIL])
    ours, theirs = twins(spec, dtype)
    rng = np.random.default_rng(1)
    x = rng.random((5, 1, 28, 28)).astype(dtype)
    logits = ours.forward(x)
    masks = {name: layer.mask for name, layer in ours.named_layers() if hasattr(layer, "mask")}
    assert masks["layers.3"].shape == (5, 4, 1, 1) and masks["layers.5"].shape == (5, 4, 14, 14)
    grad_logits = rng.standard_normal(logits.shape).astype(dtype)
    ours.backward(grad_logits)
    set_dropout_masks(theirs, masks)
    theirs_logits = theirs(torch.from_numpy(x))
    theirs_logits.backward(torch.from_numpy(grad_logits))
    np.testing.assert_allclose(logits, theirs_logits.detach().numpy(), rtol=tolerance, atol=tolerance)
    torch_grads = {name: value.grad.numpy() for name, value in theirs.named_parameters()}
    for name, grad in ours.named_gradients():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=tolerance, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("name", ["lenet5", "lenet5-relu", "cnn-bn"])
def test_the_cnn_specs_are_built_in_and_take_mnist_images(name):
    spec = load_builtin_spec(name)
    assert spec.model.input_shape == (1, 28, 28) and spec.model.shapes[-1] == (10,)
    model = Sequential(spec.model, np.random.default_rng(0))
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


class BiasGradientScaled(Conv2d):
    """A Conv2d with a wrong backward: its bias gradient `factor` times too large."""

    factor = 3.0

    def _backward(self, grad_out, cache, input_grad):
        grad_in = super()._backward(grad_out, cache, input_grad)
        self.grads["bias"] *= self.factor
        return grad_in


def test_the_finite_difference_referee_explains_a_relu_kink_but_not_a_wrong_backward():
    """Blank patches put a zero conv bias's pre-activations exactly on ReLU's kink: the central
    difference is the mean of the one-sided slopes, the backward one of them (explained); a bias
    gradient made 3x too large lies outside them (a break)."""
    from benchmark.parity.referee import numerical_parity

    spec = cnn_spec([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "relu"}, *TAIL],
                    dtype="float64")
    model = Sequential(spec.model, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = np.zeros((6, 1, 28, 28))
    x[:, :, 10:16, 10:16] = rng.random((6, 1, 6, 6))  # the rest of each image is blank
    y = rng.integers(0, 10, 6)
    report = numerical_parity(model, x, y)
    assert report.ok and report.rows[1].name == "fd/layers.0.bias.grad"
    assert report.rows[1].explained.startswith("loss kink: at 2 of 2 coordinates the one-sided slopes differ")
    assert "(1 finite difference across a kink of the loss)" in report.verdict()  # not "inheriting rounding"
    assert "ok (loss kink)" in report.table() and "not a failure: the finite difference steps across" in report.table()
    model.layers[0].__class__ = BiasGradientScaled
    broken = numerical_parity(model, x, y)
    assert not broken.ok and broken.first_break.name == "fd/layers.0.bias.grad"


def test_a_kink_inside_the_central_step_but_outside_the_one_sided_one_is_explained():
    """Bias -5e-7: the blank patches' kink lies 5e-7 to the right of w, inside the central
    difference's step (1e-6) but not the one-sided slopes' (1e-7), which agree with the backward."""
    from benchmark.parity.referee import numerical_parity

    spec = cnn_spec([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "relu"}, *TAIL],
                    dtype="float64")
    model = Sequential(spec.model, np.random.default_rng(0))
    model.layers[0].params["bias"][:] = -5e-7
    rng = np.random.default_rng(1)
    x = np.zeros((6, 1, 28, 28))
    x[:, :, 10:16, 10:16] = rng.random((6, 1, 6, 6))
    y = rng.integers(0, 10, 6)
    report = numerical_parity(model, x, y)
    row = report.rows[1]
    assert row.name == "fd/layers.0.bias.grad" and row.rel_error > 1e-3  # the central difference is off
    assert report.ok and row.explained.startswith("loss kink: at 0 of 2 coordinates the one-sided slopes differ")
    assert row.explained.endswith("; at 2 a kink lies within the central step 1e-06 but not within 1e-07, and the "
                                  "backward matches the smaller step")


def one_weight_row(bend: float, analytic_error: float = 0.0):
    """f(w) = 2.3 + 0.01 w + bend * relu(w - w0 - 5e-7) at w0 = 0.5: a kink inside the central step
    (1e-6) but not the one-sided one (1e-7), bending the slope by `bend`; the referee's fd row of w,
    judged and then explained (or not) by explain_kinks_of_the_loss."""
    from types import SimpleNamespace

    from benchmark.parity.compare import FD_TOLERANCE, compare_all
    from benchmark.parity.referee import FD_STEP, explain_kinks_of_the_loss, fd_noise

    weight = np.array([0.5])

    def loss() -> float:
        return 2.3 + 0.01 * weight[0] + bend * max(0.0, weight[0] - 0.5 - 5e-7)

    weight[0] = 0.5 + FD_STEP
    above = loss()
    weight[0] = 0.5 - FD_STEP
    central = (above - loss()) / (2 * FD_STEP)
    weight[0] = 0.5
    rows = compare_all([("fd/p.weight.grad", "Linear", "grad", np.array([0.01 + analytic_error]), np.array([central]))],
                       FD_TOLERANCE, "float64", "numerical", atol=fd_noise(2.3))
    model = SimpleNamespace(named_parameters=lambda: [("p.weight", weight)])
    explain_kinks_of_the_loss(rows, model, loss, 12, 0, fd_noise(2.3))
    return rows[0]


def test_a_kink_that_bends_the_loss_a_little_is_explained_but_a_small_error_is_not():
    """The central difference of step 1e-6 off by 1.2e-7 (a resnet-mini conv weight had 1.9e-7, seed 0),
    less than twice the one-sided slopes' slack, which was once the threshold; the backward matches the
    difference of step 1e-7. The same 1.2e-7 as an error of the backward, without a kink, still breaks."""
    kink = one_weight_row(bend=4 * 1.2e-7)
    assert kink.rel_error > 1e-6 and kink.ok  # off the central difference, and explained
    assert kink.explained.endswith("; at 1 a kink lies within the central step 1e-06 but not within 1e-07, and "
                                   "the backward matches the smaller step")
    error = one_weight_row(bend=0.0, analytic_error=1.2e-7)
    assert not error.ok and not error.explained


@pytest.mark.parametrize("error", [5e-5, 2e-4])
def test_a_small_wrong_bias_gradient_in_a_model_without_kinks_still_breaks(error):
    """conv -> tanh -> linear has no kink, and small output weights make the conv gradients small
    (near the referee's noise floor): a bias gradient off by `error` must break, not pass as a kink
    (the one-sided slopes agree with the central difference, so nothing straddles a kink)."""
    from benchmark.parity.referee import numerical_parity

    spec = cnn_spec([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "tanh"}, *TAIL],
                    dtype="float64")
    model = Sequential(spec.model, np.random.default_rng(0))
    model.layers[3].params["weight"] *= 1e-3
    model.layers[0].__class__ = type("Off", (BiasGradientScaled,), {"factor": 1 + error})
    rng = np.random.default_rng(1)
    report = numerical_parity(model, rng.random((6, 1, 28, 28)), rng.integers(0, 10, 6))
    assert not report.ok and report.first_break.name == "fd/layers.0.bias.grad"
    assert not report.first_break.explained


class SecondOfATieRoundsUp(Conv2d):
    """Planted: output [0, 0, 0, 1] made larger by a relative `amount`, as a rounding difference
    might (the first two elements of the first pooling window are exactly equal on both sides)."""

    amount = 4e-16

    def _forward(self, x):
        out, cache = super()._forward(x)
        out[0, 0, 0, 1] *= 1 + self.amount
        return out, cache


def tie_model(dtype, amount):
    """conv (bias 0.5) over a blank corner -> max-pool 2: every window there is a tie of 0.5."""
    spec = cnn_spec([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "max_pool2d", "kernel_size": 2},
                     *TAIL], dtype=dtype)
    model = Sequential(spec.model, np.random.default_rng(0))
    model.layers[0].params["bias"][:] = 0.5
    model.layers[0].__class__ = type("Planted", (SecondOfATieRoundsUp,), {"amount": amount})
    rng = np.random.default_rng(1)
    x = rng.random((4, 1, 28, 28)).astype(dtype)
    x[0, :, :4, :4] = 0.0  # sample 0's first window sees only blank patches: conv = bias exactly
    return model, x, rng.integers(0, 10, 4)


@pytest.mark.parametrize("dtype, amount", [("float64", 4e-16), ("float32", 2e-7)])
def test_a_max_pool_tie_picked_differently_within_rounding_is_explained(dtype, amount):
    """Scratch's second element rounds a few ulps up and takes the window; torch takes the first
    of the exact tie. The pooling's input gradient differs by a whole entry: a tie, not a bug."""
    from benchmark.parity.engine import gradient_parity

    model, x, y = tie_model(dtype, amount)
    report = gradient_parity(model, x, y)
    assert report.ok, report.verdict()
    explained = {row.name: row.explained for row in report.explained}
    assert "layers.1.grad_input" in explained
    assert explained["layers.1.grad_input"].startswith("kink crossing: 1 window of layers.1 (MaxPool2d) with maxima "
                                                       "tied within")


def test_a_max_pool_pick_beyond_rounding_still_breaks():
    from benchmark.parity.engine import gradient_parity

    model, x, y = tie_model("float64", 1e-6)
    report = gradient_parity(model, x, y)
    assert not report.ok and report.first_break.name == "layers.0.output"
    assert not any(row.explained.startswith("kink") for row in report.rows)


def test_a_max_pool_tie_in_a_float64_trajectory_is_explained_in_its_step_only():
    from benchmark.parity.trajectory import trajectory_parity
    from scratch_nn.spec.spec_classes import TrainSpec

    model, x, y = tie_model("float64", 4e-16)
    report = trajectory_parity(model, TrainSpec(optimizer="sgd", lr=0.01, momentum=0.9), [(x, y)] * 2)
    assert report.ok, report.verdict() + "\n" + report.step_table()
    steps = {row.name.partition("/")[0] for row in report.explained}
    assert "step 1" in steps and all("MaxPool2d" in row.explained for row in report.explained)
