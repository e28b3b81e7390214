"""Layers and activations: finite-difference gradient checks, and forward/backward against torch (float64).

`LAYER_ROWS` is the layer test table: one entry per layer type of the spec registry, each a few
configurations (a layer spec and the input shape). Every configuration is built on both sides
through the project's own tables (`scratch_nn.model.LAYER_CLASSES`, `torch_ref.TORCH_BUILDERS`),
torch's parameters copied from scratch's, and compared (tinygrad's `_test_conv` helper shape); a
test checks that the registry, both tables and this one have the same keys.
"""
import math
import warnings

import numpy as np
import pytest
import torch

from scratch_nn.activations import ReLU, erf, erfc
from scratch_nn.blocks import Block
from scratch_nn.gradcheck import check_layer_gradients
from scratch_nn.layers import SHORT_BATCH, BatchNorm1d, Dropout, Linear
from scratch_nn.model import LAYER_CLASSES
from scratch_nn.spec.block_specs import ConcatSpec, ResidualSpec
from scratch_nn.spec.image_specs import (
    AdaptiveAvgPool2dSpec,
    AvgPool2dSpec,
    BatchNorm2dSpec,
    Conv2dSpec,
    Dropout2dSpec,
    MaxPool2dSpec,
)
from scratch_nn.spec.layer_specs import (
    LAYER_SPECS,
    BatchNorm1dSpec,
    DropoutSpec,
    ELUSpec,
    FlattenSpec,
    GELUSpec,
    HardtanhSpec,
    IdentitySpec,
    LeakyReLUSpec,
    LinearSpec,
    ReLUSpec,
    SigmoidSpec,
    SiLUSpec,
    SoftplusSpec,
    TanhSpec,
)
from torch_ref.model import TORCH_BUILDERS

GRAD_TOLERANCE = 1e-7  # max elementwise relative error of a float64 finite-difference check
# The O(h^4) stencil at h = 1e-3 (inputs kept 1e-2 from kinks, so 2h never crosses one): over 100
# seeds every check here stayed below 1e-8, where order 2 at h = 1e-6 reached 3e-6 on saturated
# tanh and BatchNorm inputs whose true gradient is near 0 (noise over a tiny number).
CHECK = {"eps": 1e-3, "order": 4}
TORCH_RTOL, TORCH_ATOL = 1e-12, 1e-14  # float64 against torch float64

# type -> configurations (layer spec, input shape without the batch); one key per layer type
LAYER_ROWS = {
    "linear": [(LinearSpec(4), (6,)), (LinearSpec(3, bias=False), (5,))],
    "batch_norm1d": [(BatchNorm1dSpec(), (5,)), (BatchNorm1dSpec(eps=1e-3, momentum=0.2), (4,))],
    "dropout": [(DropoutSpec(0.4), (5,))],
    "flatten": [(FlattenSpec(), (2, 3, 2)), (FlattenSpec(start_dim=2), (2, 3, 2))],
    "identity": [(IdentitySpec(), (5,))],
    "relu": [(ReLUSpec(), (5,))],
    "leaky_relu": [(LeakyReLUSpec(), (5,)), (LeakyReLUSpec(negative_slope=0.2), (5,))],
    "sigmoid": [(SigmoidSpec(), (5,))],
    "tanh": [(TanhSpec(), (5,))],
    "elu": [(ELUSpec(), (5,)), (ELUSpec(alpha=1.5), (5,))],
    "gelu": [(GELUSpec(), (5,))],
    "softplus": [(SoftplusSpec(), (5,)), (SoftplusSpec(beta=2.0, threshold=5.0), (5,))],
    "silu": [(SiLUSpec(), (5,))],
    "hardtanh": [(HardtanhSpec(), (5,)), (HardtanhSpec(min_val=-0.5, max_val=2.0), (5,))],
    "conv2d": [(Conv2dSpec(3, 3, padding=1), (2, 5, 5)),
               (Conv2dSpec(4, (2, 3), stride=2, dilation=(1, 2), groups=2, bias=False), (2, 6, 7))],
    "max_pool2d": [(MaxPool2dSpec(2), (2, 4, 4)), (MaxPool2dSpec(3, stride=2, padding=1, ceil_mode=True), (2, 6, 6))],
    "avg_pool2d": [(AvgPool2dSpec(2), (2, 4, 4)),
                   (AvgPool2dSpec(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 6, 6))],
    "batch_norm2d": [(BatchNorm2dSpec(), (3, 2, 2)),
                     (BatchNorm2dSpec(eps=1e-3, momentum=0.2, affine=False), (2, 3, 3))],
    "dropout2d": [(Dropout2dSpec(0.4), (3, 2, 2))],
    "adaptive_avg_pool2d": [(AdaptiveAvgPool2dSpec(1), (3, 4, 5)), (AdaptiveAvgPool2dSpec((2, 3)), (2, 5, 7))],
    "residual": [  # identity shortcut; projection shortcut with stride 2; a block nested in the body
        (ResidualSpec((Conv2dSpec(3, 3, padding=1), BatchNorm2dSpec(), TanhSpec(), Conv2dSpec(3, 3, padding=1))),
         (3, 5, 5)),
        (ResidualSpec((Conv2dSpec(4, 3, stride=2, padding=1), BatchNorm2dSpec()),
                      shortcut=(Conv2dSpec(4, 1, stride=2, bias=False), BatchNorm2dSpec())), (2, 6, 6)),
        (ResidualSpec((Conv2dSpec(2, 3, padding=1), ResidualSpec((TanhSpec(), Conv2dSpec(2, 1))))), (2, 4, 4))],
    "concat": [  # branches of different channel counts, one a pooling branch, one holding a block
        (ConcatSpec(((Conv2dSpec(2, 1),), (Conv2dSpec(3, 3, padding=1), TanhSpec()),
                     (AvgPool2dSpec(3, stride=1, padding=1), Conv2dSpec(1, 1)))), (2, 5, 5)),
        (ConcatSpec(((Conv2dSpec(3, 5, padding=2),), (ResidualSpec((Conv2dSpec(2, 3, padding=1),)),))), (2, 4, 4))],
}
ROWS = [pytest.param(spec, shape, id=f"{spec.toml()} on {shape}") for rows in LAYER_ROWS.values()
        for spec, shape in rows]
ACTIVATION_ROWS = [row for row in ROWS if row.values[0].role == "activation"]


def sublayers(layer, prefix=""):
    """(torch's name relative to `layer`, layer) of the layer and, for a block, of every layer inside it."""
    found = [(prefix, layer)]
    for name, child in (layer.children() if isinstance(layer, Block) else []):
        found += sublayers(child, f"{prefix}{name}.")
    return found


def named_state(layer, kind):
    """A layer's `params`, `grads` or `buffers`, blocks' inner layers included, by torch's names ("body.0.weight")."""
    return {f"{prefix}{name}": value for prefix, inner in sublayers(layer)
            for name, value in getattr(inner, kind).items()}


def both_sides(spec, shape, rng, dtype=np.float64):
    """The layer of `spec` built by the scratch class table and by torch's builder table, torch's
    parameters copied from scratch's (randomised first: batch-norm's would be ones and zeros)."""
    ours = LAYER_CLASSES[spec.type](spec, shape, np.dtype(dtype), rng)
    theirs = TORCH_BUILDERS[spec.type](spec, shape, {np.float64: torch.float64, np.float32: torch.float32}[dtype])
    params = named_state(ours, "params")
    assert set(params) == set(dict(theirs.named_parameters())), "both sides name the parameters alike"
    for value in params.values():
        value[...] = rng.uniform(0.5, 1.5, value.shape) * rng.choice([-1, 1], value.shape)
    with torch.no_grad():
        for name, value in params.items():
            theirs.get_parameter(name).copy_(torch.tensor(value))
    return ours, theirs


def test_the_registry_both_builder_tables_and_this_table_have_the_same_keys():
    """A layer type is in the spec registry, has a scratch class, a torch builder and a test row, or
    this fails: adding one touches these four places and nothing else."""
    assert set(LAYER_SPECS) == set(LAYER_CLASSES) == set(TORCH_BUILDERS) == set(LAYER_ROWS)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def assert_gradients_close(errors, where, worst):
    for name, error in errors.items():
        if error > worst["error"]:
            worst.update(error=error, where=f"{where}: {name}")
    assert max(errors.values()) <= GRAD_TOLERANCE, f"{where}: {errors}"


def away_from_kinks(x, spec=None):
    """Push entries within 1e-2 of 0 (ReLU's kink) to +-0.5, so x +- 2h never crosses it; with a
    layer spec, also those within 1e-2 of any of its float settings (where a clip like hardtanh's
    min_val and max_val puts its kinks) by 0.05 (harmless for settings that are no kinks)."""
    x = np.where(np.abs(x) < 1e-2, np.copysign(0.5, x), x)
    for point in [value for value in (spec.arguments().values() if spec else ()) if isinstance(value, float)]:
        x = np.where(np.abs(x - point) < 1e-2, x + 0.05, x)
    return x


def torch_forward_backward(module, x, grad_out):
    """torch's output and dL/dx for L = sum(module(x) * grad_out), float64."""
    x_t = torch.tensor(x, requires_grad=True)
    out = module(x_t)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), x_t.grad.numpy()


# ---------------------------------------------------------------------------------------------
# erf: GELU's exactness rests on it


def test_erf_and_erfc_match_math_to_float64_precision():
    x = np.concatenate([np.linspace(-10, 10, 200_001), np.geomspace(1e-300, 27, 5_000),
                        -np.geomspace(1e-300, 27, 5_000), [0.0, 0.46875, -0.46875, 4.0, -4.0]])
    erf_ref = np.array([math.erf(v) for v in x])
    erfc_ref = np.array([math.erfc(v) for v in x])
    erf_err = np.abs(erf(x) - erf_ref) / np.maximum(np.abs(erf_ref), 1e-300)
    erfc_err = np.abs(erfc(x) - erfc_ref) / np.maximum(erfc_ref, 1e-300)
    assert erf_err.max() <= 1e-15
    assert erfc_err.max() <= 1e-15
    assert erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]


def test_erf_keeps_float32():
    x = np.linspace(-5, 5, 1001, dtype=np.float32)
    assert erf(x).dtype == np.float32 and erfc(x).dtype == np.float32
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x.astype(np.float64)], atol=3e-7)


# ---------------------------------------------------------------------------------------------
# Every layer type: the table above


@pytest.mark.parametrize("spec, shape", ROWS)
def test_layer_gradient_matches_finite_differences(spec, shape, rng, worst_gradient_error):
    layer, _ = both_sides(spec, shape, rng)
    x = away_from_kinks(rng.standard_normal((7, *shape)) * 1.5, spec)
    output_shape = layer.forward(x).shape
    errors = check_layer_gradients(layer, x, rng.standard_normal(output_shape), **CHECK)
    assert set(errors) == {"input", *layer.params}
    assert_gradients_close(errors, spec.toml(), worst_gradient_error)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("spec, shape", ROWS)
def test_layer_matches_torch_forward_backward_and_state(spec, shape, training, rng):
    ours, theirs = both_sides(spec, shape, rng)
    for _, layer in sublayers(ours):
        layer.training = training
    theirs.train(training)
    x = rng.standard_normal((6, *shape)) * 2
    out = ours.forward(x)
    if getattr(ours, "mask", None) is not None and training:
        theirs.next_mask = torch.tensor(ours.mask)  # torch_ref's MaskedDropout applies scratch's mask
    grad_out = rng.standard_normal(out.shape)
    out_torch, grad_torch = torch_forward_backward(theirs, x, grad_out)
    np.testing.assert_allclose(out, out_torch, rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(ours.backward(grad_out), grad_torch, rtol=1e-11, atol=TORCH_ATOL)
    for name, grad in named_state(ours, "grads").items():
        np.testing.assert_allclose(grad, theirs.get_parameter(name).grad.numpy(), rtol=1e-11, atol=1e-12)
    torch_buffers = dict(theirs.named_buffers())
    assert set(named_state(ours, "buffers")) == set(torch_buffers)
    for name, value in named_state(ours, "buffers").items():
        np.testing.assert_allclose(value, torch_buffers[name].numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("spec, shape", ROWS)
def test_layer_follows_the_protocol(spec, shape, rng):
    """Backward before forward is the protocol's error; input_grad=False still fills grads, returns None."""
    layer, _ = both_sides(spec, shape, rng, np.float32)
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}\.backward called before forward"):
        layer.backward(np.ones((2, *shape), np.float32))
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    out = layer.forward(x)
    assert out.dtype == np.float32 and out.shape == (4, *spec.output_shape(shape))
    grad_in = layer.backward(np.ones_like(out))
    assert grad_in.dtype == np.float32 and grad_in.shape == x.shape
    grads = {name: grad.copy() for name, grad in named_state(layer, "grads").items()}
    assert layer.backward(np.ones_like(out), input_grad=False) is None
    for name, grad in named_state(layer, "grads").items():
        np.testing.assert_array_equal(grad, grads[name])


@pytest.mark.parametrize("spec, shape", ACTIVATION_ROWS)
def test_activation_is_stable_at_extreme_inputs_as_torch(spec, shape, rng):
    ours, theirs = both_sides(spec, shape, rng)
    x = np.concatenate([rng.standard_normal((6, 8)) * 3, [[-800, -40, -12, -1e-8, 1e-8, 12, 40, 800]]])
    grad_out = rng.standard_normal(x.shape)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")  # stable forms: no overflow, no invalid values
        out = ours.forward(x)
        grad_in = ours.backward(grad_out)
    out_torch, grad_torch = torch_forward_backward(theirs, x, grad_out)
    np.testing.assert_allclose(out, out_torch, rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(grad_in, grad_torch, rtol=TORCH_RTOL, atol=TORCH_ATOL)


# ---------------------------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradient_matches_finite_differences(bias, rng, worst_gradient_error):
    layer = Linear(6, 4, bias=bias, dtype=np.float64, rng=rng)
    errors = check_layer_gradients(layer, rng.standard_normal((5, 6)), rng.standard_normal((5, 4)), **CHECK)
    assert set(errors) == ({"input", "weight", "bias"} if bias else {"input", "weight"})
    assert_gradients_close(errors, f"Linear(bias={bias})", worst_gradient_error)


def test_linear_matches_torch(rng):
    ours = Linear(6, 4, dtype=np.float64, rng=rng)
    theirs = torch.nn.Linear(6, 4, dtype=torch.float64)
    with torch.no_grad():
        for name, value in ours.params.items():
            getattr(theirs, name).copy_(torch.tensor(value))
    x, grad_out = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    out_torch, grad_torch = torch_forward_backward(theirs, x, grad_out)
    np.testing.assert_allclose(ours.forward(x), out_torch, rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(ours.backward(grad_out), grad_torch, rtol=TORCH_RTOL, atol=TORCH_ATOL)
    for name, grad in ours.grads.items():
        np.testing.assert_allclose(grad, getattr(theirs, name).grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 2, SHORT_BATCH - 1, SHORT_BATCH, SHORT_BATCH + 1])
def test_linear_products_match_the_plain_formulas_on_both_sides_of_short_batch(batch, dtype, rng):
    # Short batches are computed features-first and handed on as transposed views: same values.
    layer = Linear(50, 80, dtype=dtype, rng=rng)
    x, grad_out = rng.standard_normal((batch, 50)).astype(dtype), rng.standard_normal((batch, 80)).astype(dtype)
    weight, bias = layer.params["weight"].astype(np.float64), layer.params["bias"].astype(np.float64)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    out = layer.forward(x)
    grad_x = layer.backward(grad_out)
    assert out.shape == (batch, 80) and out.dtype == dtype and grad_x.shape == (batch, 50)
    np.testing.assert_allclose(out, x @ weight.T + bias, **tolerance)
    np.testing.assert_allclose(grad_x, grad_out @ weight, **tolerance)
    np.testing.assert_allclose(layer.grads["weight"], grad_out.T.astype(np.float64) @ x, **tolerance)
    np.testing.assert_allclose(layer.grads["bias"], grad_out.sum(axis=0), **tolerance)
    relu = ReLU()  # an activation after a features-first product gets the same values either way
    np.testing.assert_array_equal(relu.forward(out), np.maximum(np.ascontiguousarray(out), 0))
    np.testing.assert_array_equal(relu.backward(grad_out), grad_out * (out > 0))


def test_linear_has_torch_names_shapes_and_keeps_its_gradient_arrays(rng):
    layer = Linear(6, 4, dtype=np.float32, rng=rng)
    assert {name: value.shape for name, value in layer.params.items()} == {"weight": (4, 6), "bias": (4,)}
    grads_before = dict(layer.grads)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    layer.forward(x)
    assert layer.backward(np.ones((3, 4), np.float32)).dtype == np.float32
    assert all(layer.grads[name] is grads_before[name] for name in grads_before)  # written in place
    assert all(grad.dtype == np.float32 for grad in layer.grads.values())
    assert layer.backward(np.ones((3, 4), np.float32), input_grad=False) is None


# ---------------------------------------------------------------------------------------------
# BatchNorm1d


def make_batch_norms(rng, dtype=np.float64):
    ours = BatchNorm1d(5, eps=1e-3, momentum=0.2, dtype=dtype)
    ours.params["weight"][...] = rng.uniform(0.5, 1.5, 5)
    ours.params["bias"][...] = rng.standard_normal(5)
    theirs = torch.nn.BatchNorm1d(5, eps=1e-3, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["weight"]))
        theirs.bias.copy_(torch.tensor(ours.params["bias"]))
    return ours, theirs


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradient_matches_finite_differences(training, rng, worst_gradient_error):
    layer, _ = make_batch_norms(rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(5)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 5)
    layer.training = training
    x = rng.standard_normal((7, 5)) * 2 + 1
    errors = check_layer_gradients(layer, x, rng.standard_normal((7, 5)), **CHECK)
    assert_gradients_close(errors, f"BatchNorm1d(training={training})", worst_gradient_error)


def test_batch_norm_matches_torch_over_training_steps_then_eval(rng):
    ours, theirs = make_batch_norms(rng)
    for step, batch_size in enumerate([8, 3, 11, 2]):  # odd and tiny batches: N / (N - 1) matters
        x, grad_out = rng.standard_normal((batch_size, 5)) * 3 + step, rng.standard_normal((batch_size, 5))
        out_torch, grad_torch = torch_forward_backward(theirs, x, grad_out)
        np.testing.assert_allclose(ours.forward(x), out_torch, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(ours.backward(grad_out), grad_torch, rtol=1e-10, atol=1e-12)
        for name in ("weight", "bias"):
            np.testing.assert_allclose(ours.grads[name], getattr(theirs, name).grad.numpy(), rtol=1e-11, atol=1e-12)
            getattr(theirs, name).grad = None
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(ours.buffers[name], getattr(theirs, name).numpy(), rtol=1e-13, atol=1e-14)
    assert ours.buffers["num_batches_tracked"].dtype == np.int64
    assert int(ours.buffers["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 4
    ours.training = False
    theirs.eval()
    x, grad_out = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    out_torch, grad_torch = torch_forward_backward(theirs, x, grad_out)
    np.testing.assert_allclose(ours.forward(x), out_torch, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours.backward(grad_out), grad_torch, rtol=1e-12, atol=1e-13)
    assert int(ours.buffers["num_batches_tracked"]) == 4  # eval leaves the statistics alone


def test_batch_norm_defaults_and_float32(rng):
    layer = BatchNorm1d(3)
    assert layer.params["weight"].tolist() == [1, 1, 1] and layer.params["bias"].tolist() == [0, 0, 0]
    assert layer.buffers["running_mean"].tolist() == [0, 0, 0] and layer.buffers["running_var"].tolist() == [1, 1, 1]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones_like(x)).dtype == np.float32
    arrays = [*layer.params.values(), *layer.grads.values(), *layer.buffers.values()]
    assert [array.dtype for array in arrays] == [np.float32] * 6 + [np.int64]


def test_batch_norm_refuses_a_single_sample_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3).forward(np.ones((1, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# Dropout


def test_dropout_gradient_matches_finite_differences(rng, worst_gradient_error):
    errors = check_layer_gradients(Dropout(0.4, rng), rng.standard_normal((6, 5)), rng.standard_normal((6, 5)), **CHECK)
    assert_gradients_close(errors, "Dropout(0.4)", worst_gradient_error)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_values_rate_and_dtype(dtype, rng):
    layer = Dropout(0.3, rng)
    x = np.ones((200, 100), dtype=dtype)
    out = layer.forward(x)
    assert out.dtype == dtype and layer.mask.dtype == dtype
    assert set(np.unique(layer.mask).tolist()) == {0.0, np.ones(1, dtype)[0] / dtype(0.7)}
    assert abs((layer.mask == 0).mean() - 0.3) < 0.01  # 20,000 draws: std of the rate is 0.003
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), layer.mask)


def test_dropout_uses_an_injected_mask_once_and_is_identity_in_eval(rng):
    layer = Dropout(0.5, rng)
    x = rng.standard_normal((3, 4))
    injected = np.array([[2.0, 0, 2, 0]] * 3)
    layer.next_mask = injected
    np.testing.assert_array_equal(layer.forward(x), x * injected)
    assert layer.next_mask is None and layer.mask is injected
    layer.forward(x)
    assert layer.mask is not injected  # the next forward draws again
    layer.training = False
    assert layer.forward(x) is x and layer.backward(x) is x
    with pytest.raises(ValueError, match="next_mask has shape"):
        layer.training, layer.next_mask = True, np.ones((2, 2))
        layer.forward(x)


def test_dropout_refuses_a_probability_outside_0_1():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        Dropout(1.5)
