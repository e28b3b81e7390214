"""BatchNorm2d against torch over training steps and in eval, finite differences; Flatten; Dropout on 4-D; Dropout2d."""
import numpy as np
import pytest
import torch
from twin_check import FLOAT32, FLOAT64, channel_major, check_against_torch

from scratch_nn.gradcheck import check_layer_gradients
from scratch_nn.layer import Flatten
from scratch_nn.layers import Dropout
from scratch_nn.normalization import BatchNorm2d, Dropout2d
from scratch_nn.spec.layer_specs import FlattenSpec
from scratch_nn.spec.spec_checks import SpecError

GRAD_TOLERANCE = 1e-7
CHECK = {"eps": 1e-3, "order": 4}


@pytest.fixture
def rng():
    return np.random.default_rng(20261203)


def random_affine(layer, rng):
    for value in layer.params.values():
        value[...] = rng.standard_normal(value.shape)


@pytest.mark.parametrize("layout", ["contiguous", "channel-major"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, FLOAT64), (np.float32, FLOAT32)])
def test_batch_norm2d_matches_torch_over_training_steps_then_in_eval(dtype, tolerance, affine, layout, rng):
    scratch = BatchNorm2d(3, momentum=0.2, affine=affine, dtype=dtype)
    twin = torch.nn.BatchNorm2d(3, momentum=0.2, affine=affine)
    random_affine(scratch, rng)
    for _ in range(4):  # the running statistics after several steps, with shifted and scaled channels
        x = (rng.standard_normal((4, 3, 5, 6)) * [[[[0.5]], [[2.0]], [[3.0]]]] + 1.5).astype(dtype)
        x = channel_major(x) if layout == "channel-major" else x
        check_against_torch(scratch, twin, x, rng, **tolerance)
        twin.zero_grad()
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(scratch.buffers[name], getattr(twin, name).numpy(), **tolerance)
    assert int(scratch.buffers["num_batches_tracked"]) == int(twin.num_batches_tracked) == 4
    scratch.training = False
    twin.eval()
    check_against_torch(scratch, twin, x, rng, **tolerance)


def test_batch_norm2d_normalises_each_channel_over_batch_and_pixels(rng):
    layer = BatchNorm2d(2, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3, 4)) * 7 + 3
    out = layer.forward(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-6)  # biased variance, as the forward uses
    count = 5 * 3 * 4
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * count / (count - 1))


@pytest.mark.parametrize("layout", ["contiguous", "channel-major"])
def test_float32_batch_norm2d_over_50k_pixels_is_as_exact_as_torchs(layout, rng):
    """LeNet-sized: 64 x 28 x 28 = 50,176 values per channel, mean 0.4, std 0.3. Summed in float32
    row after row the variance lost 2e-4 and the output 8e-5 (1000x torch); torch accumulates in
    double, and so does scratch now. Each float32 side against the float64 result, as parity judges."""
    x64 = rng.standard_normal((64, 8, 28, 28)) * 0.3 + 0.4
    x = x64.astype(np.float32)
    x = channel_major(x) if layout == "channel-major" else x
    g = rng.standard_normal(x.shape) * 1e-3
    g[:32] += 1e-3  # the two halves of the batch push opposite ways: their partial sums cancel
    g[32:] -= 1e-3
    g = g.astype(np.float32)
    g = channel_major(g) if layout == "channel-major" else g  # the sums over a strided and a contiguous axis
    scratch, exact = BatchNorm2d(8, dtype=np.float32), BatchNorm2d(8, dtype=np.float64)
    out, out64 = scratch.forward(x), exact.forward(x.astype(np.float64))
    grad, grad64 = scratch.backward(g), exact.backward(g.astype(np.float64))
    twin = torch.nn.BatchNorm2d(8)
    inputs = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    torch_out = twin(inputs)
    torch_out.backward(torch.from_numpy(np.ascontiguousarray(g)))

    def error(a, b):
        return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))

    pairs = [(out, torch_out.detach().numpy(), out64), (grad, inputs.grad.numpy(), grad64),
             (scratch.buffers["running_var"], twin.running_var.numpy(), exact.buffers["running_var"]),
             (scratch.grads["weight"], twin.weight.grad.numpy(), exact.grads["weight"]),
             (scratch.grads["bias"], twin.bias.grad.numpy(), exact.grads["bias"])]
    for ours, theirs, reference in pairs:
        assert error(ours, reference) <= 4 * error(theirs, reference) + 8 * np.finfo(np.float32).eps
    # the parameter gradients are float64 sums rounded once: within a few float32 ulps of exact
    for name in ("weight", "bias"):
        assert error(scratch.grads[name], exact.grads[name]) <= 4 * np.finfo(np.float32).eps, name


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm2d_gradients_match_finite_differences(training, rng, worst_gradient_error):
    layer = BatchNorm2d(3, dtype=np.float64)
    random_affine(layer, rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 3)
    layer.training = training
    x = rng.standard_normal((3, 3, 4, 4))
    errors = check_layer_gradients(layer, x, rng.standard_normal(x.shape), max_coords=60, rng=rng, **CHECK)
    if max(errors.values()) > worst_gradient_error["error"]:
        worst_gradient_error.update(error=max(errors.values()), where=f"BatchNorm2d training={training}")
    assert errors.keys() == {"input", "weight", "bias"} and max(errors.values()) <= GRAD_TOLERANCE, errors


def test_batch_norm2d_has_torch_names_and_refuses_what_torch_refuses():
    layer, twin = BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    assert ({**layer.params, **layer.buffers}.keys() == twin.state_dict().keys())
    assert BatchNorm2d(4, affine=False).params == {}
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, got input of shape"):
        BatchNorm2d(2).forward(np.zeros((1, 2, 1, 1), dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input \(N, 4, H, W\), got shape \(2, 3, 5, 5\)"):
        layer.forward(np.zeros((2, 3, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d: momentum must be in \[0, 1\], got 1.5"):
        BatchNorm2d(4, momentum=1.5)
    with pytest.raises(RuntimeError, match="BatchNorm2d.backward called before forward"):
        BatchNorm2d(4).backward(np.zeros((2, 4, 1, 1)))


@pytest.mark.parametrize("start_dim, end_dim", [(1, -1), (0, -1), (2, 3), (1, 2), (-3, -2)])
def test_flatten_matches_torch(start_dim, end_dim, rng):
    x = channel_major(rng.standard_normal((2, 3, 4, 5)))  # as a conv's output: the reshape must copy right
    check_against_torch(Flatten(start_dim, end_dim), torch.nn.Flatten(start_dim, end_dim), x, rng, **FLOAT64)


def test_flatten_refuses_dims_out_of_range_or_order():
    """Bad dims are refused when the spec is validated (FlattenSpec), before any layer runs."""
    with pytest.raises(SpecError, match=r"flatten\(start_dim=3, end_dim=1\) does not fit an input of shape"):
        FlattenSpec(3, 1).output_shape((3, 4, 5))
    with pytest.raises(SpecError, match=r"it must keep the batch dimension 0"):
        FlattenSpec(0, -1).output_shape((3, 4, 5))
    with pytest.raises(RuntimeError, match="Flatten.backward called before forward"):
        Flatten().backward(np.zeros((2, 3)))


def test_dropout_on_a_4d_input_uses_one_mask_entry_per_element_as_on_2d(rng):
    layer = Dropout(0.25, rng=rng)
    x = channel_major(rng.standard_normal((8, 4, 6, 6)))
    out = layer.forward(x)
    assert layer.mask.shape == x.shape
    np.testing.assert_array_equal(out, x * layer.mask)
    assert set(np.unique(layer.mask)) <= {0.0, 1 / 0.75}
    assert 0.15 < np.mean(layer.mask == 0) < 0.35
    grad_out = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(grad_out), grad_out * layer.mask)
    layer.next_mask = layer.mask
    torch_out = torch.tensor(x) * torch.tensor(layer.mask)  # the torch twin applies the same mask
    np.testing.assert_array_equal(layer.forward(x), torch_out.numpy())


def test_dropout2d_drops_whole_channels_of_each_sample(rng):
    layer = Dropout2d(0.5, rng=rng)
    x = rng.standard_normal((16, 8, 5, 5)) + 10.0  # never zero by chance
    out = layer.forward(x)
    assert layer.mask.shape == (16, 8, 1, 1)
    planes = out.reshape(16, 8, -1)
    dropped = np.all(planes == 0, axis=2)
    np.testing.assert_allclose(planes[~dropped], (x.reshape(16, 8, -1) * 2.0)[~dropped])
    assert 0.3 < dropped.mean() < 0.7
    grad_out = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(grad_out), grad_out * layer.mask)
    layer.training = False
    assert layer.forward(x) is x and layer.backward(grad_out) is grad_out
    with pytest.raises(ValueError, match=r"Dropout2d.next_mask has shape \(2, 8\), the input needs \(16, 8, 1, 1\)"):
        layer.training, layer.next_mask = True, np.ones((2, 8))
        layer.forward(x)
