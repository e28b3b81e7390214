"""scratch_nn.blas and scratch_nn.elementwise: SGD's operations in NumPy's OpenBLAS, against NumPy and torch.

The wheels of NumPy this project installs are built on OpenBLAS, so the fast path must be found
here; the comparisons with torch use the flat layout of an MLP large enough to take it.
"""
import numpy as np
import pytest
import torch

from scratch_nn import MLP, elementwise, load_spec, optim
from scratch_nn.blas import OUTER_MIN_ELEMENTS, level1, numpy_blas_version, outer_product
from scratch_nn.elementwise import BLAS_MIN_ELEMENTS, NumpyOps, OpenBlasOps, choose_ops

DTYPES = [np.float32, np.float64]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_numpys_openblas_is_found_for_float32_and_float64_only():
    assert numpy_blas_version() is not None, "this NumPy is not built on OpenBLAS"
    assert level1(np.float32) is not None and level1(np.float64) is not None
    assert level1(np.float16) is None and level1(np.int64) is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_openblas_ops_by_hand(dtype):
    ops = OpenBlasOps(level1(dtype))
    x, y = np.array([1.0, -2.0, 0.5], dtype=dtype), np.array([4.0, 1.0, -1.0], dtype=dtype)
    ops.mul_(x, 0.5)  # x = [0.5, -1, 0.25]
    np.testing.assert_array_equal(x, [0.5, -1.0, 0.25])
    ops.add_(y, x, -2.0, work=None)  # y = [4 - 1, 1 + 2, -1 - 0.5]
    np.testing.assert_array_equal(y, [3.0, 3.0, -1.5])
    out = np.empty_like(x)
    assert ops.add(x, y, 2.0, out=out) is out  # out = x + 2 y = [6.5, 5, -2.75]; x and y unchanged
    np.testing.assert_array_equal(out, [6.5, 5.0, -2.75])
    np.testing.assert_array_equal(x, [0.5, -1.0, 0.25])


@pytest.mark.parametrize("dtype", DTYPES)
def test_openblas_ops_agree_with_numpy_ops_to_an_ulp(rng, dtype):
    """50,000 elements: above axpy's threading threshold, so OpenBLAS splits the work across threads."""
    x, y = (rng.standard_normal(50_000).astype(dtype) for _ in range(2))
    results = {}
    for ops in (NumpyOps(), OpenBlasOps(level1(dtype))):
        a, b, work, out = x.copy(), y.copy(), np.empty_like(x), np.empty_like(x)
        ops.mul_(a, 0.9)
        ops.add_(a, b, 0.7, work)
        results[ops.name] = (a, ops.add(b, a, -0.05, out).copy())
    ulp = np.finfo(dtype).eps
    for fast, plain in zip(results["openblas"], results["numpy"]):
        np.testing.assert_allclose(fast, plain, rtol=4 * ulp, atol=4 * ulp * np.abs(plain).max())


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_zero_still_multiplies_as_torch_does(dtype):
    """OpenBLAS skips the work for alpha 0; torch computes 0 * inf = NaN, and so must we."""
    ops = OpenBlasOps(level1(dtype))
    x, y = np.array([np.inf, 1.0], dtype=dtype), np.array([1.0, 2.0], dtype=dtype)
    torch_x, torch_y = torch.tensor(x), torch.tensor(y)
    ops.add_(y, x, 0.0, work=None)
    torch_y.add_(torch_x, alpha=0.0)
    np.testing.assert_array_equal(y, torch_y.numpy())  # [nan, 2]
    ops.mul_(x, 0.0)
    torch_x.mul_(0.0)
    np.testing.assert_array_equal(x, torch_x.numpy())  # [nan, 0]


@pytest.mark.parametrize("x, y, message", [
    (np.zeros(4, np.float32), np.zeros(4, np.float64), "contiguous float32 arrays of one size, got float64"),
    (np.zeros(4, np.float32), np.zeros(3, np.float32), "of one size, got float32 \\(3,\\)"),
    (np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), "contiguous: False"),
])
def test_level1_refuses_arrays_its_c_routines_would_misread(x, y, message):
    with pytest.raises(ValueError, match=message):
        level1(np.float32).axpy(1.0, x, y)


def flat_parameters(rng, dtype, sizes=((300, 330), (300,), (10, 300), (10,))):
    """Parameters as consecutive views of one flat array, as an MLP keeps them, and their gradients."""
    total = sum(int(np.prod(shape)) for shape in sizes)
    flat, flat_grad = rng.standard_normal(total).astype(dtype), np.zeros(total, dtype)
    params, grads, offset = {}, {}, 0
    for index, shape in enumerate(sizes):
        size = int(np.prod(shape))
        params[f"layers.{index}.weight"] = flat[offset:offset + size].reshape(shape)
        grads[f"layers.{index}.weight"] = flat_grad[offset:offset + size].reshape(shape)
        offset += size
    return params, grads, flat_grad


@pytest.fixture
def low_threshold(monkeypatch):
    """OpenBLAS from 100,000 elements on, so that the tests' nets (102,310) take it in a fraction of the time."""
    monkeypatch.setattr(elementwise, "BLAS_MIN_ELEMENTS", 100_000)


def test_the_update_path_follows_the_layout_and_the_size():
    assert choose_ops(np.float64, BLAS_MIN_ELEMENTS).name == "openblas"
    assert choose_ops(np.float32, BLAS_MIN_ELEMENTS - 1).name == "numpy"
    assert choose_ops(np.int64, BLAS_MIN_ELEMENTS).name == "numpy"
    for name, path in (("wide", "openblas (flat)"), ("mnist-mlp", "numpy (flat)")):  # 1.9 M and 235k parameters
        spec = load_spec(name)
        model = MLP(spec.model, np.random.default_rng(0))
        assert optim.build_optimizer(spec.train, model.named_parameters()).update_path == path


def test_sgd_reports_the_path_it_takes(rng, low_threshold):
    large, _, _ = flat_parameters(rng, np.float32)
    small, _, _ = flat_parameters(rng, np.float32, sizes=((30, 20), (30,)))
    assert optim.SGD(large, lr=0.1, momentum=0.9).update_path == "openblas (flat)"
    assert optim.SGD(small, lr=0.1, momentum=0.9).update_path == "numpy (flat)"
    separate = {name: param.copy() for name, param in large.items()}
    assert optim.SGD(separate, lr=0.1).update_path == "numpy (per tensor)"
    assert optim.Adam(large).update_path == "numpy (per tensor)"


SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)], ids=["float64", "float32"])
@pytest.mark.parametrize("kwargs", SGD_CONFIGS, ids=lambda kwargs: "-".join(f"{k}={v}" for k, v in kwargs.items()))
def test_openblas_sgd_matches_torch_for_ten_steps(rng, kwargs, dtype, rtol, low_threshold):
    """Within rtol of each array's scale, as the NumPy path; and, where OpenBLAS's kernels fuse the
    multiply-adds as torch's vectorised kernels do (FMA: Haswell and later), equal to torch bit for
    bit but for a few dozen elements of 102,310 (the scalar tails of the vector loops: of each torch
    tensor, of each OpenBLAS thread's share), where the NumPy path differs in about a third of them.
    Kernels without FMA (OPENBLAS_CORETYPE=Sandybridge) round twice, as NumPy does."""
    params, grads, flat_grad = flat_parameters(rng, dtype)
    torch_params = [torch.tensor(param, requires_grad=True) for param in params.values()]
    ours, theirs = optim.SGD(params, **kwargs), torch.optim.SGD(torch_params, **kwargs)
    assert ours.update_path == "openblas (flat)"
    for _ in range(10):
        flat_grad[...] = rng.standard_normal(flat_grad.size)
        ours.step(grads)
        for torch_param, grad in zip(torch_params, grads.values()):
            torch_param.grad = torch.tensor(grad)
        theirs.step()
    differing = 0
    for (name, param), torch_param in zip(params.items(), torch_params):
        expected = torch_param.detach().numpy()
        np.testing.assert_allclose(param, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=name)
        differing += int(np.count_nonzero(param != expected))
        if "momentum" in kwargs:
            expected = theirs.state[torch_param]["momentum_buffer"].numpy()
            buffer = ours.state[name]["momentum_buffer"]
            np.testing.assert_allclose(buffer, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=name)
    if axpy_fuses(dtype):
        assert differing <= 100, f"{differing} of {flat_grad.size} elements differ from torch's"


def axpy_fuses(dtype) -> bool:
    """Whether the kernels OpenBLAS runs here round alpha * x + y once (FMA), not twice as NumPy does."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 20_000)).astype(dtype)
    twice = y + dtype(0.1) * x  # NumPy: the product rounded, then the sum
    level1(dtype).axpy(0.1, x, y)
    return bool(np.any(y != twice))


@pytest.mark.parametrize("dtype", DTYPES)
def test_axpy_rounds_as_numpy_where_it_does_not_fuse(dtype):
    """axpy_fuses' premise: an unfused axpy is NumPy's two roundings bit for bit, so it tells the two apart."""
    x, y = np.random.default_rng(2).standard_normal((2, 20_000)).astype(dtype)
    fused = x.astype(np.float64) * np.float64(dtype(0.1)) + y  # exact in float64 for float32 inputs
    twice = y + dtype(0.1) * x
    blas = y.copy()
    level1(dtype).axpy(0.1, x, blas)
    if axpy_fuses(dtype):
        assert np.count_nonzero(blas != twice) > 1000
        if dtype == np.float32:  # one rounding of the exact value (float64 holds it exactly)
            assert np.count_nonzero(blas != fused.astype(np.float32)) <= 20
    else:
        np.testing.assert_array_equal(blas, twice)


# ---------------------------------------------------------------------------------------------
# The outer product of a batch of one (scratch_nn.blas.Outer), used by Linear's backward.

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_outer_product_is_np_dots_bit_for_bit_and_overwrites_nan(rng, dtype):
    outer = outer_product(dtype)
    assert outer is not None  # NumPy's wheels ship OpenBLAS: the path the wide net takes at batch 1
    column, row = rng.standard_normal(300).astype(dtype), rng.standard_normal((2, 500)).astype(dtype)
    out = np.full((300, 500), np.nan, dtype=dtype)  # a diverged step's gradient: zeroing must not keep NaN
    outer(column, row[1], out)
    np.testing.assert_array_equal(out, np.dot(column[:, None], row[1:2]))
    strided = np.empty((300, 250), dtype=dtype)
    outer(column, row[0, ::2], strided)  # a row read with a stride
    np.testing.assert_array_equal(strided, np.dot(column[:, None], row[0:1, ::2]))
    reversed_out = np.empty((300, 500), dtype=dtype)
    outer(column[::-1], row[1, ::-1], reversed_out)  # negative strides: BLAS would read from the lowest address
    np.testing.assert_array_equal(reversed_out, np.dot(column[::-1, None], row[1:2, ::-1]))
    broadcast = np.broadcast_to(dtype(2.0), (500,))  # a zero stride, which BLAS refuses
    outer(column, broadcast, reversed_out)
    np.testing.assert_array_equal(reversed_out, np.dot(column[:, None], np.full((1, 500), 2.0, dtype=dtype)))
    with pytest.raises(ValueError, match=r"Outer needs .* column \(300,\), row \(250,\) and a contiguous out"):
        outer(column, row[0], strided)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_backward_at_batch_one_takes_the_outer_product_and_matches_torch(rng, dtype, monkeypatch):
    from scratch_nn import layers
    from scratch_nn.layers import linear_backward

    calls = []
    real = outer_product(dtype)
    assert real is not None  # NumPy's OpenBLAS: otherwise np.dot would run and this test prove nothing
    monkeypatch.setattr(layers, "outer_product", lambda d: calls.append(d) or real)

    weight = rng.standard_normal((1024, 600)).astype(dtype)  # 614,400 elements: above OUTER_MIN_ELEMENTS
    assert weight.size >= OUTER_MIN_ELEMENTS
    x, grad_out = rng.standard_normal((1, 600)).astype(dtype), rng.standard_normal((1, 1024)).astype(dtype)
    grad_weight, grad_bias = np.empty_like(weight), np.empty(1024, dtype=dtype)
    grad_input = linear_backward(grad_out, x, weight, grad_weight, grad_bias)
    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    (x_t @ w_t.T).backward(torch.tensor(grad_out))
    assert calls == [np.dtype(dtype)]  # the BLAS outer product ran (np.dot gives the same bits, slower)
    np.testing.assert_array_equal(grad_weight, w_t.grad.numpy())  # one rounded product per entry on both sides
    scale = np.abs(grad_out).sum() * np.abs(weight).max()  # a bound on |dL/dx|: sums of 1024 products cancel
    atol = (1e-6 if dtype == np.float32 else 1e-14) * scale
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), rtol=0, atol=atol)
