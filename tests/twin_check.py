"""The one helper the CNN layer tests share (tinygrad's `_test_conv` shape): a layer on both sides, compared.

    check_against_torch(scratch_layer, torch_module, x, rng, rtol, atol)

copies the scratch layer's parameters into the torch module (by key: the same names), runs both
on x, back-propagates the same random dL/dy, and compares the output, dL/dx and every parameter
gradient. Returns (scratch output, dL/dx, torch output, torch dL/dx) for further checks.
"""
import numpy as np
import torch

# atol is relative to the array's scale, max(1, max |torch's values|): a gradient summed over a batch
# is large, and its small entries carry the rounding error of that sum, not of themselves.
FLOAT64 = {"rtol": 1e-10, "atol": 1e-12}  # float64 against torch float64: the brief's 1e-10
FLOAT32 = {"rtol": 1e-4, "atol": 2e-6}  # float32: sums of hundreds of products rounded in another order


def assert_close(actual, desired, rtol, atol, name=""):
    scale = max(1.0, float(np.nanmax(np.abs(desired)))) if np.size(desired) else 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol * scale, err_msg=name)


def copy_parameters(scratch_layer, torch_module) -> None:
    state = torch_module.state_dict()
    for name, value in scratch_layer.params.items():
        state[name] = torch.tensor(value)
    torch_module.load_state_dict(state)


def check_against_torch(scratch_layer, torch_module, x, rng, rtol, atol, grad_out=None, input_grad=True):
    torch_module = torch_module.to(getattr(torch, x.dtype.name))
    copy_parameters(scratch_layer, torch_module)
    out = scratch_layer.forward(x)
    x_torch = torch.tensor(x, requires_grad=input_grad)
    out_torch = torch_module(x_torch)
    assert out.shape == tuple(out_torch.shape) and out.dtype == x.dtype
    assert_close(out, out_torch.detach().numpy(), rtol, atol, "output")
    if grad_out is None:
        grad_out = rng.standard_normal(out.shape).astype(x.dtype)
    out_torch.backward(torch.tensor(grad_out))
    if input_grad:
        grad_in = scratch_layer.backward(grad_out)
        assert grad_in.shape == x.shape and grad_in.dtype == x.dtype
        assert_close(grad_in, x_torch.grad.numpy(), rtol, atol, "input gradient")
    else:
        grad_in = scratch_layer.backward(grad_out, input_grad=False)
        assert grad_in is None
    torch_grads = {name: parameter.grad.numpy() for name, parameter in torch_module.named_parameters()}
    assert scratch_layer.grads.keys() == torch_grads.keys()
    for name, grad in scratch_layer.grads.items():
        assert grad.dtype == x.dtype
        assert_close(grad, torch_grads[name], rtol, atol, name)
    torch_grad_in = x_torch.grad.numpy() if input_grad else None
    return out, grad_in, out_torch.detach().numpy(), torch_grad_in


def channel_major(x: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values stored (C, N, H, W) in memory, as Conv2d's outputs are."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
