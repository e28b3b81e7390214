"""The layers with parameters or state: Linear, Dropout, BatchNorm1d, in torch's names and shapes.

They follow the one layer protocol of `scratch_nn.layer.Layer` (params, grads, buffers, training,
forward, backward(grad_out, input_grad=True)). The maths sits in pure functions (`linear_forward`,
`batch_norm_backward`, ...); the classes hold the arrays. Gradients are written into arrays
allocated once per layer (`out=`), so a training step allocates no new gradient arrays and
`layer.grads` stays the same dict of the same arrays. Layers look their arrays up in these dicts on
every call, so replacing an entry (say, by a float64 copy) is safe.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.blas import OUTER_MIN_ELEMENTS, outer_product
from scratch_nn.init import init_weight_layer
from scratch_nn.layer import Layer

# ---------------------------------------------------------------------------------------------
# Linear


# Up to this batch size the products of a Linear may be computed features-first: see below.
SHORT_BATCH = 64


def features_first(batch_size: int, features: int) -> bool:
    """Whether to compute an (N, features) product as the transpose of a (features, N) one.

    When the batch is the short side, OpenBLAS runs W x^T (features as the rows) faster than
    x W^T: 1.2x-2x here for batches of 16 to 64, float32 and float64. The result is used as the
    transposed view, without a copy (a copy gives back half the gain); the elementwise ops that
    follow accept any memory layout, and are fastest when their operands share one, which is why
    the backward pass makes the same choice for each layer's input gradient.
    """
    return 1 < batch_size <= SHORT_BATCH and batch_size < features


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if features_first(x.shape[0], weight.shape[0]):
        out = (weight @ x.T).T  # (out, in) @ (in, N) -> (out, N), viewed as (N, out)
    else:
        out = x @ weight.T  # (N, in) @ (in, out) -> (N, out)
    if bias is not None:
        out += bias  # in place: saves a second (N, out) array
    return out


def linear_backward(grad_out, x, weight, grad_weight, grad_bias, input_grad=True):
    """Fill grad_weight = grad_out^T x and grad_bias = sum_n grad_out; return grad_out W (or None)."""
    n = grad_out.shape[0]
    outer = outer_product(grad_weight.dtype) if n == 1 and grad_weight.size >= OUTER_MIN_ELEMENTS else None
    if outer is not None:  # one example, a large W: BLAS's rank-1 update, 1.5-4x faster than np.dot
        outer(grad_out[0], x[0], grad_weight)
    else:
        # np.matmul leaves BLAS for an inner dimension of 1 (~7x slower at batch size 1); np.dot does not
        product = np.dot if n == 1 else np.matmul
        product(grad_out.T, x, out=grad_weight)  # (out, N) @ (N, in) -> (out, in)
    if grad_bias is not None:
        np.sum(grad_out, axis=0, out=grad_bias)  # (out,)
    if not input_grad:
        return None
    if features_first(n, weight.shape[1]):  # the same layout as x, made features-first by the forward
        return (weight.T @ grad_out.T).T  # (in, out) @ (out, N) -> (in, N), viewed as (N, in)
    return grad_out @ weight  # (N, out) @ (out, in) -> (N, in)


class Linear(Layer):
    """y = x W^T + b;  dL/dW = (dL/dy)^T x,  dL/db = sum_n dL/dy,  dL/dx = (dL/dy) W.

    Shapes as torch.nn.Linear: weight (out_features, in_features), bias (out_features,). Given an
    `rng`, the parameters get torch's default init (U(-1/sqrt(in), 1/sqrt(in)) for both); without
    one they start at zero, to be filled by `scratch_nn.init` (Sequential does this).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        dtype = np.dtype(dtype)
        self.params = {"weight": np.zeros((out_features, in_features), dtype=dtype)}
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        if rng is not None:
            init_weight_layer(self, "torch_default", rng)

    def _forward(self, x):
        return linear_forward(x, self.params["weight"], self.params.get("bias")), x  # cache x (N, in)

    def _backward(self, grad_out, x, input_grad):
        """`input_grad=False` skips dL/dx (a first layer's input needs none), as torch does."""
        return linear_backward(grad_out, x, self.params["weight"], self.grads["weight"],
                               self.grads.get("bias"), input_grad)

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self.params})")


# ---------------------------------------------------------------------------------------------
# Dropout


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """keep / (1 - p), keep = rng.random(shape) >= p drawn in `dtype` (so keep ~ Bernoulli(1 - p))."""
    mask = (rng.random(shape, dtype=dtype) >= p).astype(dtype)
    if p < 1:  # p = 1 keeps nothing: the mask stays zero (torch returns zeros too)
        mask /= 1.0 - p  # divide, as torch does (noise.div_(1 - p)), rather than multiply by 1 / (1 - p)
    return mask


class Dropout(Layer):
    """Training: y = x * mask, mask = keep / (1 - p);  dL/dx = dL/dy * mask.  Eval: y = x, dL/dx = dL/dy.

    A mask set in `next_mask` is used (and cleared) by the next training forward instead of a draw
    from `rng`; the mask used is kept in `mask`, so that the torch twin can apply the same one.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        super().__init__()
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()
        self.next_mask: np.ndarray | None = None
        self.mask: np.ndarray | None = None  # the mask of the last training forward

    def _forward(self, x):
        """The cache is the mask applied ("eval" when none was: backward passes the gradient through)."""
        if not self.training:
            return x, "eval"
        if self.next_mask is not None:
            mask, self.next_mask = self.next_mask, None
            if mask.shape != x.shape:
                raise ValueError(f"Dropout.next_mask has shape {mask.shape}, the input has {x.shape}")
            mask = np.asarray(mask, dtype=x.dtype)  # no copy when the dtype already matches
        else:
            mask = dropout_mask(self.rng, x.shape, self.p, x.dtype)
        self.mask = mask
        return x * mask, mask

    def _backward(self, grad_out, mask, input_grad):
        if not input_grad:
            return None
        return grad_out if isinstance(mask, str) else grad_out * mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


# ---------------------------------------------------------------------------------------------
# BatchNorm1d


# Sums over the batch (and, in BatchNorm2d, the pixels) accumulate in float64, as torch's CPU kernels
# do (aten/src/ATen/native/cpu/batch_norm_kernel.cpp sums into at::acc_type<float, false>, which is
# double on the CPU: ATen/AccumulateType.h). NumPy adds the rows of an (N, C) array one after
# another, so a float32 sum over N*H*W = 50,176 pixels (LeNet-sized, batch 64) lost 2e-4 of the
# variance and 8e-5 of the normalised output, 1000x torch's error. float64 inputs are unchanged.


def batch_norm_statistics(x: np.ndarray, eps: float):
    """Per-feature batch mean, biased variance, and the centred input and 1/sqrt(var + eps)."""
    mean = x.mean(axis=0, dtype=np.float64).astype(x.dtype)  # (C,)
    centred = x - mean  # (N, C)
    variance = np.mean(centred * centred, axis=0, dtype=np.float64)  # (C,) biased: divides by N, as the forward
    inv_std = (1.0 / np.sqrt(variance + eps)).astype(x.dtype)  # (C,)
    return mean, variance.astype(x.dtype), centred, inv_std


def batch_norm_backward(grad_out, x_hat, inv_std, weight, grad_weight, grad_bias, training):
    """Fill dL/dgamma = sum_n g x_hat, dL/dbeta = sum_n g; return dL/dx.

    Training (the batch statistics depend on x):
        dL/dx = gamma / sigma * (g - mean_n(g) - x_hat * mean_n(g * x_hat))
    Eval (running statistics are constants):  dL/dx = gamma / sigma * g.
    """
    # (C,) each, accumulated in float64 (see above) and rounded once: with out= a float32 array NumPy
    # would add its float64 partial sums into the float32 result
    grad_bias[...] = np.sum(grad_out, axis=0, dtype=np.float64)
    products = grad_out * x_hat  # (N, C), reused below for x_hat * mean(g * x_hat)
    grad_weight[...] = np.sum(products, axis=0, dtype=np.float64)
    scale = weight * inv_std  # (C,)
    if not training:
        return grad_out * scale
    n = grad_out.shape[0]
    # scale * (g - mean(g) - x_hat * mean(g x_hat)), in that order, in two (N, C) arrays rather than
    # five: the large arrays of a BatchNorm2d (6.4 MB each in float64 at 64x16x28x28) cost most in
    # being allocated and touched
    grad_in = grad_out - grad_bias / n
    grad_in -= np.multiply(x_hat, grad_weight / n, out=products)
    grad_in *= scale
    return grad_in


class BatchNorm1d(Layer):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta, per feature over the batch (running stats in eval).

    Backward (training): dL/dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat)),
    dL/dgamma = sum g * x_hat, dL/dbeta = sum g (g = dL/dy, x_hat the normalised input).
    Running statistics as torch keeps them (momentum m): running_mean <- (1 - m) running_mean +
    m mean; running_var <- (1 - m) running_var + m var * N / (N - 1) (unbiased) while the forward
    normalises with the biased var; num_batches_tracked += 1. `momentum=None` (torch's cumulative
    average) is not supported.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32) -> None:
        super().__init__()
        dtype = np.dtype(dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params = {"weight": np.ones(num_features, dtype=dtype), "bias": np.zeros(num_features, dtype=dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.buffers = {"running_mean": np.zeros(num_features, dtype=dtype),
                        "running_var": np.ones(num_features, dtype=dtype),
                        "num_batches_tracked": np.array(0, dtype=np.int64)}

    def _forward(self, x):
        """The cache is (x_hat, inv_std, training)."""
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when training, "
                                 f"got input of shape {x.shape}; use a batch of 2 or more, or eval()")
            mean, variance, centred, inv_std = batch_norm_statistics(x, self.eps)
            self._update_running_stats(mean, variance, n)
            x_hat = np.multiply(centred, inv_std, out=centred)  # in place: one (N, C) array fewer
        else:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            x_hat = (x - self.buffers["running_mean"]) * inv_std
        out = x_hat * self.params["weight"]
        out += self.params["bias"]  # in place: saves an (N, C) array
        return out, (x_hat, inv_std, self.training)

    def _update_running_stats(self, mean: np.ndarray, variance: np.ndarray, n: int) -> None:
        """In place, so the arrays named_buffers() handed out stay the live ones."""
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - m
        running_mean += m * mean
        running_var *= 1.0 - m
        running_var += (m * n / (n - 1)) * variance
        self.buffers["num_batches_tracked"] += 1

    def _backward(self, grad_out, cache, input_grad):
        x_hat, inv_std, training = cache
        grad_in = batch_norm_backward(grad_out, x_hat, inv_std, self.params["weight"],
                                      self.grads["weight"], self.grads["bias"], training)
        return grad_in if input_grad else None

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum})"
