"""Conv2d by hand: torch.nn.Conv2d's arguments, weight shape and maths, as im2col and one product per group.

Forward (a cross-correlation, as torch; xp the zero-padded input, s the stride, d the dilation,
group g holding input channels g*C/G .. and output channels g*O/G ..):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * xp[n, g*C/G + c, h*s + i*d, w*s + j*d]

im2col copies the input element each weight meets into a column matrix X (C*kH*kW, N*L), one
row per (c, i, j), one column per output position (n, h, w), so the sum is a matrix product:

    Y = W.reshape(O, C/G*kH*kW) @ X          (per group)                     # (O, N*L)
    dL/dW = G @ X^T,  dL/db = sum_{n,h,w} G,  dL/dX = W^T G                     (G = dL/dY)

and dL/dx is col2im: each entry of dL/dX added back onto the input element it was copied from.

Why it is fast (measured by `svt bench --profile`): the arrays are kept channel-major, (C, N, H, W) in
memory, so Y is already the (N, O, H, W) output seen through a transposed view and no layer
transposes. With stride 1, the columns are built over "wide rows": output rows as wide as the
padded input (Wp instead of Wo), whose last Wp - Wo entries are discarded. Then each row of X is
a 1-D shift of the flattened padded planes by i*d*Wp + j*d, a contiguous copy of Ho*Wp elements
per sample instead of Ho short rows of Wo, and col2im is kH*kW contiguous shifted additions. The
columns are built by one strided copy (`Geometry.windows`, a view of every (c, i, j) shift at once),
for a block of samples at a time (COLUMN_BLOCK_BYTES): the product of one block reads columns still
in cache, and the weight gradient builds them again, block by block, instead of keeping a matrix
25x the input (LeNet's first layer, batch 1024, float64: 183 MB). Measured on LeNet-5's two convs
(one thread, forward + backward, float32 / float64): 12-16% less time at batch 1024, the same at 64.
The backward makes a block's W^T G in that block's column array once G X^T has read it, and adds it
into dL/dx at once, while it is in cache (LeNet-5's second conv at batch 256: 0.82x the time of
making all of W^T G first).
The padded input, one block of columns and dL/dY's wide copy are arrays kept while the shape holds.
"""
from __future__ import annotations

import math

import numpy as np

from scratch_nn.init import uniform_
from scratch_nn.layer import Layer

WIDE_ROWS = True  # stride-1 columns over wide rows (the module docstring); False: exact rows, for measuring
COLUMN_BLOCK_BYTES = 4 * 1024 * 1024  # the columns are built for at most this many bytes of samples at a time


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, as torch's _pair, each checked to be >= minimum."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def conv2d_output_shape(input_shape, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                        groups: int = 1) -> tuple[int, int, int]:
    """(out_channels, H_out, W_out) for an input of (C, H, W), or ValueError saying what does not fit.

    H_out = floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1, as torch.nn.Conv2d's docs.
    """
    channels, height, width = input_shape
    kernel, stride = pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1)
    padding, dilation = pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    if channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={channels} and out_channels={out_channels}")
    sizes = []
    for axis, size in enumerate((height, width)):
        padded, reach = size + 2 * padding[axis], dilation[axis] * (kernel[axis] - 1) + 1
        if reach > padded:
            raise ValueError(f"kernel_size {kernel} (dilation {dilation}) reaches {reach} pixels, more than the "
                             f"padded input {height + 2 * padding[0]}x{width + 2 * padding[1]} of an input "
                             f"{height}x{width} with padding {padding}")
        sizes.append((padded - reach) // stride[axis] + 1)
    return out_channels, sizes[0], sizes[1]


class Geometry:
    """The sizes of one input shape: padded planes, output, the column layout (wide rows or exact)
    and the blocks of samples the columns are built for, one block at a time."""

    def __init__(self, layer: Conv2d, x_shape: tuple[int, ...], itemsize: int) -> None:
        self.n, self.channels, self.height, self.width = x_shape
        _, self.out_height, self.out_width = conv2d_output_shape(
            x_shape[1:], layer.out_channels, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
            layer.groups)
        (self.pad_h, self.pad_w), (self.dil_h, self.dil_w) = layer.padding, layer.dilation
        self.stride_h, self.stride_w = layer.stride
        self.kernel_h, self.kernel_w = layer.kernel_size
        self.padded_h, self.padded_w = self.height + 2 * self.pad_h, self.width + 2 * self.pad_w
        self.wide = layer.stride == (1, 1) and WIDE_ROWS
        self.row_width = self.padded_w if self.wide else self.out_width  # output row width in the columns
        self.length = self.out_height * self.row_width  # columns per sample
        tail = (self.kernel_w - 1) * self.dil_w if self.wide else 0  # the last shift reads this far past a plane
        self.plane = self.padded_h * self.padded_w + tail
        self.rows = self.channels * self.kernel_h * self.kernel_w  # rows of the columns, all groups
        self.block = max(1, min(self.n, COLUMN_BLOCK_BYTES // (self.rows * self.length * itemsize)))

    def blocks(self):
        """(first, last) sample of each block, in order."""
        return [(first, min(first + self.block, self.n)) for first in range(0, self.n, self.block)]

    def images(self, flat: np.ndarray) -> np.ndarray:
        """The padded images (C, n, Hp, Wp) inside a (C, n, plane) array."""
        return flat[:, :, :self.padded_h * self.padded_w].reshape(*flat.shape[:2], self.padded_h, self.padded_w)

    def interior(self, flat: np.ndarray) -> np.ndarray:
        """The unpadded input (C, N, H, W) inside a (C, N, plane) array."""
        return self.images(flat)[:, :, self.pad_h:self.pad_h + self.height, self.pad_w:self.pad_w + self.width]

    def windows(self, flat: np.ndarray) -> np.ndarray:
        """A read-only view (C, kH, kW, n, L) or (C, kH, kW, n, Ho, Wo) of the padded samples (C, n, plane):
        the input element each weight (c, i, j) meets at each output position, not copied."""
        channel_stride, sample_stride, item = flat.strides
        row, column = self.padded_w * item, item  # one step down, one step right in a padded plane
        head = (self.channels, self.kernel_h, self.kernel_w, flat.shape[1])
        head_strides = (channel_stride, self.dil_h * row, self.dil_w * column, sample_stride)
        if self.wide:
            shape, strides = (*head, self.length), (*head_strides, item)
        else:
            shape = (*head, self.out_height, self.out_width)
            strides = (*head_strides, self.stride_h * row, self.stride_w * column)
        return np.lib.stride_tricks.as_strided(flat, shape, strides, writeable=False)

    def window(self, flat: np.ndarray, i: int, j: int) -> np.ndarray:
        """The elements weight (i, j) meets in a (C, N, plane) array, writable: (C, N, L) or (C, N, Ho, Wo)."""
        if self.wide:
            shift = i * self.dil_h * self.padded_w + j * self.dil_w
            return flat[:, :, shift:shift + self.length]
        top, left = i * self.dil_h, j * self.dil_w
        return self.images(flat)[:, :, top:top + self.stride_h * (self.out_height - 1) + 1:self.stride_h,
                                 left:left + self.stride_w * (self.out_width - 1) + 1:self.stride_w]

    def offsets(self):
        return ((i, j) for i in range(self.kernel_h) for j in range(self.kernel_w))


def im2col(x_flat: np.ndarray, geometry: Geometry, columns: np.ndarray) -> None:
    """Fill columns (C*kH*kW, n*L) from n padded samples (C, n, plane): one strided copy."""
    windows = geometry.windows(x_flat)
    np.copyto(columns.reshape(windows.shape), windows)


def col2im(columns: np.ndarray, geometry: Geometry, grad_flat: np.ndarray) -> None:
    """Add every column entry of n samples (C*kH*kW, n*L) onto the element of the padded-input
    gradient (C, n, plane) it was copied from."""
    n = grad_flat.shape[1]
    rows = columns.reshape(geometry.channels, geometry.kernel_h, geometry.kernel_w, n, geometry.length)
    for i, j in geometry.offsets():
        window = geometry.window(grad_flat, i, j)
        window += rows[:, i, j].reshape(window.shape)  # windows overlap: added one offset after another


class Conv2d(Layer):
    """y = W * x + b (cross-correlation);  dL/dW = G X^T,  dL/db = sum G,  dL/dx = col2im(W^T G).

    As torch.nn.Conv2d: weight (out_channels, in_channels / groups, kH, kW), bias (out_channels,),
    kernel_size, stride, padding (zeros), dilation an int or a pair. Given an `rng`, weight and bias get
    torch's default init (reset_parameters: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with fan_in = in_channels / groups * kH * kW, for both); without one they are
    zero, to be filled by `scratch_nn.init`. The maths and the memory layout: the module docstring.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, dtype=np.float32, rng: np.random.Generator | None = None):
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size", 1)
        self.stride = pair(stride, "Conv2d: stride", 1)
        self.padding = pair(padding, "Conv2d: padding", 0)
        self.dilation = pair(dilation, "Conv2d: dilation", 1)
        dtype = np.dtype(dtype)
        self.params = {"weight": np.zeros((out_channels, in_channels // groups, *self.kernel_size), dtype=dtype)}
        if bias:
            self.params["bias"] = np.zeros(out_channels, dtype=dtype)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self._work: dict[str, np.ndarray] = {}  # padded input, columns, wide dL/dY: reused while shapes hold
        if rng is not None:
            self.reset_parameters(rng)

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """torch's default: weight, then bias, ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        bound = 1.0 / math.sqrt(self.params["weight"][0].size)  # fan_in = in/groups * kH * kW
        for name in ("weight", "bias"):
            if name in self.params:
                uniform_(self.params[name], -bound, bound, rng)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A zero-initialised work array kept across calls; remade when the shape or dtype changes."""
        array = self._work.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._work[name] = np.zeros(shape, dtype=dtype)
        return array

    def _weight_rows(self, group: int) -> np.ndarray:
        per_group = self.out_channels // self.groups
        return self.params["weight"].reshape(self.out_channels, -1)[group * per_group:(group + 1) * per_group]

    def _group_slices(self):
        """(output-channel rows, column rows) of each group."""
        out_per_group = self.out_channels // self.groups
        rows_per_group = self.params["weight"][0].size
        return [(slice(g * out_per_group, (g + 1) * out_per_group), slice(g * rows_per_group, (g + 1) * rows_per_group))
                for g in range(self.groups)]

    def _block_columns(self, geometry: Geometry, first: int, last: int) -> np.ndarray:
        """The columns (C*kH*kW, n*L) of samples first..last, built in a work array of one block."""
        padded = self._work["padded"]
        size = geometry.rows * (last - first) * geometry.length
        work = self._buffer("columns", (geometry.rows * geometry.block * geometry.length,), padded.dtype)
        columns = work[:size].reshape(geometry.rows, -1)
        im2col(padded[:, first:last], geometry, columns)
        return columns

    def _forward(self, x):
        """The cache is the input's Geometry; the padded input stays in the work arrays for backward."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d: expected input (N, {self.in_channels}, H, W), got shape {x.shape}")
        weight = self.params["weight"]
        geometry = Geometry(self, x.shape, weight.itemsize)
        padded = self._buffer("padded", (geometry.channels, geometry.n, geometry.plane), weight.dtype)
        np.copyto(geometry.interior(padded), x.transpose(1, 0, 2, 3))  # borders stay zero
        out = np.empty((self.out_channels, geometry.n * geometry.length), dtype=weight.dtype)  # (O, N*L)
        for first, last in geometry.blocks():
            columns = self._block_columns(geometry, first, last)
            block_out = out[:, first * geometry.length:last * geometry.length]
            for group, (out_rows, column_rows) in enumerate(self._group_slices()):
                np.matmul(self._weight_rows(group), columns[column_rows], out=block_out[out_rows])
        if "bias" in self.params:
            out += self.params["bias"][:, None]
        out = out.reshape(self.out_channels, geometry.n, geometry.out_height, geometry.row_width)
        return out[..., :geometry.out_width].transpose(1, 0, 2, 3), geometry  # (N, O, Ho, Wo), channel-major

    def _backward(self, grad_out, geometry, input_grad):
        """Fill grads["weight"], grads["bias"]; return dL/dx (N, C, H, W), or None with input_grad=False."""
        dtype = self.params["weight"].dtype
        grad_wide = self._buffer("grad_wide", (self.out_channels, geometry.n, geometry.out_height,
                                               geometry.row_width), dtype)  # discarded columns stay zero
        np.copyto(grad_wide[..., :geometry.out_width], grad_out.transpose(1, 0, 2, 3))
        grad_rows = grad_wide.reshape(self.out_channels, -1)  # G: (O, N*L)
        groups, blocks = self._group_slices(), geometry.blocks()
        partial = self._buffer("partial_weight_grads", (len(blocks), *self.grads["weight"].shape), dtype)
        partial = partial.reshape(len(blocks), self.out_channels, -1)
        grad_flat = np.zeros((geometry.channels, geometry.n, geometry.plane), dtype=dtype) if input_grad else None
        for index, (first, last) in enumerate(blocks):
            columns = self._block_columns(geometry, first, last)  # built again: only one block is kept
            block_grad = grad_rows[:, first * geometry.length:last * geometry.length]
            for out_rows, column_rows in groups:
                np.matmul(block_grad[out_rows], columns[column_rows].T, out=partial[index, out_rows])  # G X^T
            if input_grad:  # W^T G into the block's column array (X is done with), then col2im
                for group, (out_rows, column_rows) in enumerate(groups):
                    np.matmul(self._weight_rows(group).T, block_grad[out_rows], out=columns[column_rows])
                col2im(columns, geometry, grad_flat[:, first:last])
        np.sum(partial, axis=0, out=self.grads["weight"].reshape(self.out_channels, -1))
        if "bias" in self.grads:  # a sum of N*Ho*Wo terms (50,176 in LeNet's first layer), accumulated in
            # float64: in float32 it was the worst row of a LeNet-5 run's parity checks (2.1e-6 from the
            # float64 result, torch 5.7e-7); now 6.5e-8 (torch 2.7e-7) on `svt parity`'s first batch
            self.grads["bias"][...] = np.sum(grad_rows, axis=1, dtype=np.float64)  # rounded once (not out=)
        if not input_grad:
            return None
        return geometry.interior(grad_flat).transpose(1, 0, 2, 3)  # (N, C, H, W), channel-major memory

    def __repr__(self) -> str:
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={'bias' in self.params})")
