"""The layer protocol, written once: every layer of scratch_nn (Linear, BatchNorm1d, Dropout, Flatten,
the activations) is a `Layer`.

    layer.params    dict: torch's parameter names and shapes ("weight" (out, in), "bias" (out,))
    layer.grads     dict, same keys and shapes, overwritten (not accumulated) by backward
    layer.buffers   dict: state that is not trained (BatchNorm1d's running_mean, running_var, ...)
    layer.training  bool, set by Sequential.train() / eval()
    layer.forward(x)                          -> output; caches only what backward needs
    layer.backward(grad_out, input_grad=True) -> dL/dx (None when input_grad is False); fills grads

A subclass writes `_forward(x) -> (output, cache)` and `_backward(grad_out, cache, input_grad)`;
`backward` before any `forward` raises the one RuntimeError below. `input_grad=False` lets a layer
skip the product that only its input's gradient needs (the first Linear's input is data, which
needs none, as torch skips it for a tensor without requires_grad).

`channel_major` and `full_in_layout` are the memory-layout helpers the image layers share: a
Conv2d's output is (C, N, H, W) in memory, and the layers after it keep that layout.
"""
from __future__ import annotations

import numpy as np


def channel_major(x: np.ndarray) -> bool:
    """Whether an (N, C, H, W) array is (C, N, H, W) in memory, as Conv2d's output is."""
    return x.strides[1] > x.strides[0]


def full_in_layout(shape: tuple[int, int, int, int], fill, dtype, channels_first: bool) -> np.ndarray:
    """An (N, C, H, W) array filled with `fill` (None: left unset), (C, N, H, W) in memory if
    channels_first: elementwise operations between arrays run fastest when they share one layout."""
    def make(memory_shape):
        return np.empty(memory_shape, dtype=dtype) if fill is None else np.full(memory_shape, fill, dtype=dtype)

    if channels_first:
        return make((shape[1], shape[0], *shape[2:])).transpose(1, 0, 2, 3)
    return make(shape)


class Layer:
    """Base of every layer: parallel `params`/`grads` dicts, `buffers`, `training`, forward/backward."""

    _settings: tuple[str, ...] = ()  # attributes shown by repr, as torch shows them

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self._cache = None  # what the last forward left for backward; None before any forward

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = self._forward(x)
        return out

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fill `grads` from dL/d(output); return dL/d(input), or None if `input_grad` is False."""
        if self._cache is None:
            raise missing_forward(self)
        return self._backward(grad_out, self._cache, input_grad)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        raise NotImplementedError

    def _backward(self, grad_out: np.ndarray, cache: object, input_grad: bool) -> np.ndarray | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)}" for name in self._settings)
        return f"{type(self).__name__}({settings})"


def missing_forward(layer: object) -> RuntimeError:
    """The error of a backward that came before any forward (the protocol's one error)."""
    return RuntimeError(f"{type(layer).__name__}.backward called before forward: call forward(x) first, "
                        "backward uses what forward cached")


class Flatten(Layer):
    """y = x.reshape(N, -1) from `start_dim` to `end_dim` (torch.nn.Flatten);  dL/dx = dL/dy reshaped back."""

    _settings = ("start_dim", "end_dim")

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def _forward(self, x):
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
        # a conv's (N, C, H, W) output is (C, N, H, W) in memory: its gradient is given back in that
        # layout, one small copy that keeps the pooling and conv backward below in one layout
        return x.reshape(shape), (x.shape, x.ndim == 4 and channel_major(x))

    def _backward(self, grad_out, cache, input_grad):
        if not input_grad:
            return None
        input_shape, channels_first = cache
        if not channels_first:
            return grad_out.reshape(input_shape)
        grad_in = full_in_layout(input_shape, None, grad_out.dtype, channels_first=True)
        grad_in[...] = grad_out.reshape(input_shape)
        return grad_in
