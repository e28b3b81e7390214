"""AdaptiveAvgPool2d: average pooling whose windows follow from the input's size and the output's.

Window i of an axis of input size H and output size h covers [floor(i H / h), ceil((i + 1) H / h)), as
torch's `start_index`/`end_index` (aten/src/ATen/native/AdaptiveAveragePooling.cpp); output_size = 1
is global average pooling, which torch computes as `input.mean((-1, -2), keepdim=True)` (the same
file), and so does this layer.
"""
from __future__ import annotations

import math

import numpy as np

from scratch_nn.layer import Layer, channel_major, full_in_layout


def window_bounds(size: int, out_size: int) -> list[tuple[int, int]]:
    """[(start, end)] of each output position along one axis, as torch's adaptive pooling."""
    return [(index * size // out_size, math.ceil((index + 1) * size / out_size)) for index in range(out_size)]


class AdaptiveAvgPool2d(Layer):
    """y[n, c, i, j] = mean of x[n, c] over window (i, j);  dL/dx = sum over the windows holding x of
    dL/dy / (window height * window width). With output_size 1: y = mean over (H, W), dL/dx = dL/dy / (H W)."""

    _settings = ("output_size",)

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2

    def _forward(self, x):
        if self.output_size == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True), (x.shape, channel_major(x))  # (N, C, 1, 1)
        rows, columns = (window_bounds(x.shape[2 + axis], self.output_size[axis]) for axis in range(2))
        out = np.empty((*x.shape[:2], *self.output_size), dtype=x.dtype)
        for i, (top, bottom) in enumerate(rows):
            for j, (left, right) in enumerate(columns):
                out[:, :, i, j] = x[:, :, top:bottom, left:right].sum(axis=(2, 3)) / (bottom - top) / (right - left)
        return out, (x.shape, channel_major(x))

    def _backward(self, grad_out, cache, input_grad):
        if not input_grad:
            return None
        x_shape, channels_first = cache
        if self.output_size == (1, 1):  # torch's mean backward: dL/dy / (H W), broadcast over the plane
            grad_in = full_in_layout(x_shape, None, grad_out.dtype, channels_first)  # x's memory layout
            grad_in[...] = grad_out / (x_shape[2] * x_shape[3])
            return grad_in
        grad_in = np.zeros(x_shape, dtype=grad_out.dtype)
        rows, columns = (window_bounds(x_shape[2 + axis], self.output_size[axis]) for axis in range(2))
        for i, (top, bottom) in enumerate(rows):
            for j, (left, right) in enumerate(columns):
                share = grad_out[:, :, i, j] / ((bottom - top) * (right - left))
                grad_in[:, :, top:bottom, left:right] += share[:, :, None, None]
        return grad_in
