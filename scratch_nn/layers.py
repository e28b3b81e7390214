"""The layers with parameters or state: Linear, Dropout, BatchNorm1d, in torch's names and shapes.

The layer protocol (activations follow it too):

    layer.params    dict: "weight" (out_features, in_features), "bias" (out_features,)
    layer.grads     dict, same keys and shapes, overwritten (not accumulated) by backward
    layer.buffers   dict: BatchNorm1d's running_mean, running_var, num_batches_tracked
    layer.training  bool, set by MLP.train() / MLP.eval()
    layer.forward(x)         -> output; caches only what backward needs
    layer.backward(grad_out) -> grad_in; fills layer.grads; RuntimeError if no forward came first

The maths sits in pure functions (`linear_forward`, `batch_norm_backward`, ...); the classes hold
the arrays. Gradients are written into arrays allocated once per layer (`out=`), so a training
step allocates no new gradient arrays and `layer.grads` stays the same dict of the same arrays.
Layers look their arrays up in these dicts on every call, so replacing an entry (say, by a float64
copy) is safe.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.blas import OUTER_MIN_ELEMENTS, outer_product
from scratch_nn.init import init_linear


def _missing_forward(layer: object) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__}.backward called before forward: call forward(x) first, "
                        "backward uses what forward cached")


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


class Linear:
    """y = x W^T + b;  dL/dW = (dL/dy)^T x,  dL/db = sum_n dL/dy,  dL/dx = (dL/dy) W.

    Shapes as torch.nn.Linear: weight (out_features, in_features), bias (out_features,). Given an
    `rng`, the parameters get torch's default init (U(-1/sqrt(in), 1/sqrt(in)) for both); without
    one they start at zero, to be filled by `scratch_nn.init` (MLP does this).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                 rng: np.random.Generator | None = None) -> None:
        self.in_features, self.out_features = in_features, out_features
        dtype = np.dtype(dtype)
        self.params = {"weight": np.zeros((out_features, in_features), dtype=dtype)}
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self._x = None
        if rng is not None:
            init_linear(self, "torch_default", rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x  # (N, in)
        return linear_forward(x, self.params["weight"], self.params.get("bias"))

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """`input_grad=False` skips dL/dx (a first layer's input needs none), as torch does."""
        if self._x is None:
            raise _missing_forward(self)
        return linear_backward(grad_out, self._x, self.params["weight"], self.grads["weight"],
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


class Dropout:
    """Training: y = x * mask, mask = keep / (1 - p);  dL/dx = dL/dy * mask.  Eval: y = x, dL/dx = dL/dy.

    A mask set in `next_mask` is used (and cleared) by the next training forward instead of a draw
    from `rng`; the mask used is kept in `mask`, so that the torch twin can apply the same one.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self.next_mask: np.ndarray | None = None
        self.mask: np.ndarray | None = None  # the mask of the last training forward
        self._forward_mode: str | None = None  # "train" or "eval": what backward must undo

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            self._forward_mode = "eval"
            return x
        if self.next_mask is not None:
            mask, self.next_mask = self.next_mask, None
            if mask.shape != x.shape:
                raise ValueError(f"Dropout.next_mask has shape {mask.shape}, the input has {x.shape}")
            mask = np.asarray(mask, dtype=x.dtype)  # no copy when the dtype already matches
        else:
            mask = dropout_mask(self.rng, x.shape, self.p, x.dtype)
        self.mask, self._forward_mode = mask, "train"
        return x * mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._forward_mode is None:
            raise _missing_forward(self)
        return grad_out * self.mask if self._forward_mode == "train" else grad_out

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


# ---------------------------------------------------------------------------------------------
# BatchNorm1d


def batch_norm_statistics(x: np.ndarray, eps: float):
    """Per-feature batch mean, biased variance, and the centred input and 1/sqrt(var + eps)."""
    mean = x.mean(axis=0)  # (C,)
    centred = x - mean  # (N, C)
    variance = np.mean(centred * centred, axis=0)  # (C,) biased: divides by N, as the forward uses
    inv_std = 1.0 / np.sqrt(variance + eps)  # (C,)
    return mean, variance, centred, inv_std


def batch_norm_backward(grad_out, x_hat, inv_std, weight, grad_weight, grad_bias, training):
    """Fill dL/dgamma = sum_n g x_hat, dL/dbeta = sum_n g; return dL/dx.

    Training (the batch statistics depend on x):
        dL/dx = gamma / sigma * (g - mean_n(g) - x_hat * mean_n(g * x_hat))
    Eval (running statistics are constants):  dL/dx = gamma / sigma * g.
    """
    np.sum(grad_out, axis=0, out=grad_bias)  # (C,)
    np.sum(grad_out * x_hat, axis=0, out=grad_weight)  # (C,)
    scale = weight * inv_std  # (C,)
    if not training:
        return grad_out * scale
    n = grad_out.shape[0]
    return scale * (grad_out - grad_bias / n - x_hat * (grad_weight / n))  # (N, C)


class BatchNorm1d:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta, per feature over the batch (running stats in eval).

    Backward (training): dL/dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat)),
    dL/dgamma = sum g * x_hat, dL/dbeta = sum g (g = dL/dy, x_hat the normalised input).
    Running statistics as torch keeps them (momentum m): running_mean <- (1 - m) running_mean +
    m mean; running_var <- (1 - m) running_var + m var * N / (N - 1) (unbiased) while the forward
    normalises with the biased var; num_batches_tracked += 1. `momentum=None` (torch's cumulative
    average) is not supported.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32) -> None:
        dtype = np.dtype(dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params = {"weight": np.ones(num_features, dtype=dtype), "bias": np.zeros(num_features, dtype=dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.buffers = {"running_mean": np.zeros(num_features, dtype=dtype),
                        "running_var": np.ones(num_features, dtype=dtype),
                        "num_batches_tracked": np.array(0, dtype=np.int64)}
        self.training = True
        self._cache = None  # (x_hat, inv_std, training)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when training, "
                                 f"got input of shape {x.shape}; use a batch of 2 or more, or eval()")
            mean, variance, centred, inv_std = batch_norm_statistics(x, self.eps)
            self._update_running_stats(mean, variance, n)
            x_hat = centred * inv_std
        else:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            x_hat = (x - self.buffers["running_mean"]) * inv_std
        self._cache = (x_hat, inv_std, self.training)
        out = x_hat * self.params["weight"]
        out += self.params["bias"]  # in place: saves an (N, C) array
        return out

    def _update_running_stats(self, mean: np.ndarray, variance: np.ndarray, n: int) -> None:
        """In place, so the arrays named_buffers() handed out stay the live ones."""
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - m
        running_mean += m * mean
        running_var *= 1.0 - m
        running_var += (m * n / (n - 1)) * variance
        self.buffers["num_batches_tracked"] += 1

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _missing_forward(self)
        x_hat, inv_std, training = self._cache
        return batch_norm_backward(grad_out, x_hat, inv_std, self.params["weight"],
                                   self.grads["weight"], self.grads["bias"], training)

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum})"
