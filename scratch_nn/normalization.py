"""BatchNorm2d: BatchNorm1d's maths per channel over (N, H, W), and Dropout2d (whole channels), for a CNN.

(A CNN's Flatten is the one of `scratch_nn.layer`.)

BatchNorm2d normalises each channel c with the mean and variance of its N*H*W values. Seen as an
(N*H*W, C) matrix, with one row per pixel of every image, that is exactly BatchNorm1d on
(batch, features), so the pure functions of `scratch_nn.layers` (batch_norm_statistics,
batch_norm_backward) do the work and their derivation holds unchanged, with N*H*W for N:

    x_hat = (x - mean) / sqrt(var + eps),  y = gamma * x_hat + beta           (var biased: / N*H*W)
    dL/dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))  (means over N, H, W)

The (N*H*W, C) view costs no copy when the input is compact (C, N, H, W) in memory; otherwise the
input is copied once into that layout (Conv2d's output, channel-major with cut rows, included), and
the output keeps it: elementwise operations between arrays of one layout run in memory order.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.layers import (
    BatchNorm1d,
    Dropout,
    batch_norm_backward,
    batch_norm_statistics,
    dropout_mask,
)


def pixels_by_channel(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C): one row per pixel, channel-major in memory (C, N*H*W).

    A view when x is already channel-major and compact, as a Conv2d's output of stride 1 is not (its
    rows are cut from wider ones): then one copy into channel-major memory, not into (N, H, W, C)
    order, so that this layer's output, and the layers after it, stay channel-major like the conv's.
    """
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).T


def images_from_pixels(rows: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """The inverse of pixels_by_channel: (N*H*W, C) -> (N, C, H, W), a view."""
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


class BatchNorm2d(BatchNorm1d):
    """y = gamma * (x - mu_c) / sqrt(var_c + eps) + beta, statistics per channel over (N, H, W).

    As torch.nn.BatchNorm2d: weight, bias (C,) (absent with affine=False), buffers running_mean,
    running_var (updated with the unbiased variance, N*H*W / (N*H*W - 1), momentum m: r <- (1 - m) r
    + m stat) and num_batches_tracked; eval normalises with the running statistics. The backward is
    BatchNorm1d's (scratch_nn.layers.batch_norm_backward) on the (N*H*W, C) view: the module docstring.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 dtype=np.float32) -> None:
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be a positive int, got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be > 0, got {eps!r}")
        super().__init__(num_features, eps, momentum, dtype)
        self.affine = affine
        if not affine:  # gamma = 1 and beta = 0 held outside params, with gradients nobody reads
            self._fixed = {name: self.params.pop(name) for name in ("weight", "bias")}
            self._fixed_grads = {name: self.grads.pop(name) for name in ("weight", "bias")}

    def _affine(self, grads: bool = False) -> dict[str, np.ndarray]:
        if self.affine:
            return self.grads if grads else self.params
        return self._fixed_grads if grads else self._fixed

    def _forward(self, x):
        """The cache is (x_hat, inv_std, training), x_hat as (N*H*W, C) rows."""
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: expected input (N, {self.num_features}, H, W), got shape {x.shape}")
        rows = pixels_by_channel(x)  # (N*H*W, C)
        if self.training:
            if rows.shape[0] < 2:
                raise ValueError(f"BatchNorm2d: expected more than 1 value per channel when training, got "
                                 f"input of shape {x.shape}; use N*H*W >= 2, or eval()")
            mean, variance, centred, inv_std = batch_norm_statistics(rows, self.eps)
            self._update_running_stats(mean, variance, rows.shape[0])
            x_hat = np.multiply(centred, inv_std, out=centred)  # in place: one (N*H*W, C) array fewer
        else:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            x_hat = (rows - self.buffers["running_mean"]) * inv_std
        out = x_hat * self._affine()["weight"]
        out += self._affine()["bias"]  # in place: saves an (N*H*W, C) array
        return images_from_pixels(out, x.shape), (x_hat, inv_std, self.training)

    def _backward(self, grad_out, cache, input_grad):
        x_hat, inv_std, training = cache
        grads = self._affine(grads=True)
        grad_rows = batch_norm_backward(pixels_by_channel(grad_out), x_hat, inv_std, self._affine()["weight"],
                                        grads["weight"], grads["bias"], training)
        return images_from_pixels(grad_rows, grad_out.shape) if input_grad else None

    def __repr__(self) -> str:
        return f"BatchNorm2d({self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine})"


class Dropout2d(Dropout):
    """Training: y = x * mask, one mask entry per (sample, channel): keep / (1 - p) over a whole plane;
    dL/dx = dL/dy * mask.  Eval: y = x.  As torch.nn.Dropout2d (its noise is (N, C, 1, 1), broadcast).

    `next_mask` and `mask` are (N, C, 1, 1), used as Dropout's are (so the torch twin can apply them).
    """

    def _forward(self, x):
        """As Dropout's: the cache is the mask applied, "eval" when none was."""
        if x.ndim != 4:
            raise ValueError(f"Dropout2d: expected input (N, C, H, W), got shape {x.shape}")
        if not self.training:
            return x, "eval"
        shape = (*x.shape[:2], 1, 1)
        if self.next_mask is not None:
            mask, self.next_mask = self.next_mask, None
            if mask.shape != shape:
                raise ValueError(f"Dropout2d.next_mask has shape {mask.shape}, the input needs {shape}")
            mask = np.asarray(mask, dtype=x.dtype)
        else:
            mask = dropout_mask(self.rng, shape, self.p, x.dtype)
        self.mask = mask
        return x * mask, mask

    def __repr__(self) -> str:
        return f"Dropout2d(p={self.p})"
