"""MaxPool2d and AvgPool2d by hand, with torch's output sizes, tie rule, NaN rule and divisors.

Both look at the input through one strided view per kernel offset (i, j): window(i, j) is the
(N, C, H_out, W_out) array of the elements at offset (i, j) of every window, so the forward is
kH*kW elementwise passes over the output, whatever the stride, and no window is copied out. The
input is padded (max: -inf, average: 0) only when padding or ceil_mode asks for it.

Output size, as torch (aten/src/ATen/native/Pool.h, pooling_output_shape_pad_lr):

    H_out = floor((H + 2 padding - dilation (kH - 1) - 1 + (stride - 1 if ceil_mode)) / stride) + 1,
    less one if ceil_mode made the last window start at or past H + padding (it must start inside
    the input or its left padding); padding may be at most half the effective kernel size.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.conv import pair
from scratch_nn.layer import Layer, channel_major, full_in_layout


def pooled_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """One axis of torch's pooling_output_shape (the module docstring)."""
    reach = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - reach + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def check_padding(kernel, padding, dilation, name: str) -> None:
    """torch's rule (Pool.h): "pad should be at most half of effective kernel size"."""
    for axis in range(2):
        reach = dilation[axis] * (kernel[axis] - 1) + 1
        if padding[axis] > reach // 2:
            raise ValueError(f"{name}: padding {padding} must be at most half the kernel's reach {reach} "
                             f"(kernel_size {kernel}, dilation {dilation}), rounded down")


def pool2d_output_shape(input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        name: str = "MaxPool2d") -> tuple[int, int, int]:
    """(C, H_out, W_out) for an input of (C, H, W), or ValueError naming what does not fit."""
    channels, height, width = input_shape
    kernel = pair(kernel_size, f"{name}: kernel_size", 1)
    stride = kernel if stride is None else pair(stride, f"{name}: stride", 1)
    padding, dilation = pair(padding, f"{name}: padding", 0), pair(dilation, f"{name}: dilation", 1)
    check_padding(kernel, padding, dilation, name)
    sizes = [pooled_size(size, kernel[axis], stride[axis], padding[axis], dilation[axis], ceil_mode)
             for axis, size in enumerate((height, width))]
    if min(sizes) < 1:
        raise ValueError(f"{name}: kernel_size {kernel} (dilation {dilation}, padding {padding}) gives an output "
                         f"of {sizes[0]}x{sizes[1]} for an input of {height}x{width}; the output needs at least 1x1")
    return channels, sizes[0], sizes[1]


class Pool2d(Layer):
    """What both poolings share: arguments, output shape, padded input and the per-offset windows."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode: bool) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{name}: kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name}: stride", 1)
        self.padding = pair(padding, f"{name}: padding", 0)
        self.dilation = pair(dilation, f"{name}: dilation", 1)
        self.ceil_mode = bool(ceil_mode)
        check_padding(self.kernel_size, self.padding, self.dilation, name)

    def _output_size(self, x: np.ndarray) -> tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected input (N, C, H, W), got shape {x.shape}")
        _, out_h, out_w = pool2d_output_shape(x.shape[1:], self.kernel_size, self.stride, self.padding,
                                              self.dilation, self.ceil_mode, type(self).__name__)
        return out_h, out_w

    def _padded_shape(self, x_shape, out_size) -> tuple[int, int, int, int]:
        """The input plus padding, and on the bottom/right as far as ceil_mode's last windows reach."""
        n, c = x_shape[:2]
        sizes = []
        for axis in range(2):
            reach = (out_size[axis] - 1) * self.stride[axis] + self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
            sizes.append(max(reach, x_shape[2 + axis] + 2 * self.padding[axis]))
        return n, c, sizes[0], sizes[1]

    def _pad(self, x: np.ndarray, out_size, fill) -> np.ndarray:
        """x itself when no padding is needed (no copy), else a copy inside a `fill`-padded array."""
        shape = self._padded_shape(x.shape, out_size)
        if shape == x.shape:
            return x
        padded = full_in_layout(shape, fill, x.dtype, channel_major(x))
        self._interior(padded, x.shape)[...] = x
        return padded

    def _interior(self, padded: np.ndarray, x_shape) -> np.ndarray:
        (top, left), (height, width) = self.padding, x_shape[2:]
        return padded[:, :, top:top + height, left:left + width]

    def _windows(self, padded: np.ndarray, out_size):
        """(offset number, window(i, j)) in row-major order of (i, j): the order torch scans a window."""
        (stride_h, stride_w), (dil_h, dil_w) = self.stride, self.dilation
        span_h, span_w = stride_h * (out_size[0] - 1) + 1, stride_w * (out_size[1] - 1) + 1
        for i in range(self.kernel_size[0]):
            for j in range(self.kernel_size[1]):
                top, left = i * dil_h, j * dil_w
                yield (i * self.kernel_size[1] + j,
                       padded[:, :, top:top + span_h:stride_h, left:left + span_w:stride_w])


class MaxPool2d(Pool2d):
    """y = max over the window;  dL/dx = dL/dy at the element torch picks, 0 elsewhere.

    torch's CPU kernel (aten/src/ATen/native/cpu/MaxPoolKernel.cpp, cpu_max_pool) scans each window
    in row-major order and replaces its running maximum when `(val > maxval) || isnan(val)`: so of
    equal values the first one wins (a tie never replaces), and a NaN always does, so the window's
    last NaN wins and the output is NaN. Padding never wins (torch skips it; here it is -inf), and
    torch's running index starts at the window's first in-bounds element, so a window of only -inf
    values routes its gradient there (not to padding, where it would be dropped).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)

    def _maximum(self, padded: np.ndarray, out_size) -> np.ndarray:
        """The window maxima, over the window's rows first (contiguous reads), then its columns.

        Half the passes of kH*kW window-by-window maxima, and the first ones read whole rows.
        np.maximum propagates NaN, as torch's output does. Returns an array in x's memory layout.
        """
        (stride_h, stride_w), (dil_h, dil_w) = self.stride, self.dilation
        span_h, span_w = stride_h * (out_size[0] - 1) + 1, stride_w * (out_size[1] - 1) + 1
        rows = [padded[:, :, i * dil_h:i * dil_h + span_h:stride_h] for i in range(self.kernel_size[0])]
        row_max = np.copy(rows[0]) if len(rows) == 1 else np.maximum(rows[0], rows[1])
        for row in rows[2:]:
            np.maximum(row_max, row, out=row_max)
        columns = [row_max[..., j * dil_w:j * dil_w + span_w:stride_w] for j in range(self.kernel_size[1])]
        out = np.copy(columns[0]) if len(columns) == 1 else np.maximum(columns[0], columns[1])
        for column in columns[2:]:
            np.maximum(out, column, out=out)
        return out

    def _torch_winners(self, padded: np.ndarray, out_size, x_shape) -> np.ndarray:
        """Per output, the offset number torch's scan ends on: its last NaN, else its first maximum,
        else (only -inf in the window) its first in-bounds element.

        As cpu_max_pool: the running maximum starts at -inf and the running index at the first
        in-bounds element; in-bounds values replace them when `(val > maxval) || isnan(val)`.
        """
        inside = np.zeros((1, 1, *padded.shape[2:]), dtype=bool)  # the input's own elements, not padding
        self._interior(inside, x_shape)[...] = True
        best = np.full(padded.shape[:2] + tuple(out_size), -np.inf, dtype=padded.dtype)
        winner = np.zeros(best.shape, dtype=np.min_scalar_type(self.kernel_size[0] * self.kernel_size[1]))
        seen = np.zeros((1, 1, *out_size), dtype=bool)
        for (offset, window), (_, in_bounds) in zip(self._windows(padded, out_size), self._windows(inside, out_size)):
            np.copyto(winner, offset, where=in_bounds & ~seen)  # the window's first in-bounds element
            seen |= in_bounds
            take = np.greater(window, best)  # strict: a later equal value leaves the first maximum
            take |= np.isnan(window)  # padding is -inf: never greater than best, never NaN
            np.copyto(best, window, where=take)
            np.copyto(winner, offset, where=take)
        return winner

    def _forward(self, x):
        out_size = self._output_size(x)
        padded = self._pad(x, out_size, -np.inf)
        out = self._maximum(padded, out_size)
        # the equality test of the backward would send a NaN window's gradient nowhere, and an
        # all -inf window's to its first element even if that is padding: track those as torch does
        unusual = np.isnan(out).any() or (padded is not x and np.isneginf(out).any())
        winner = self._torch_winners(padded, out_size, x.shape) if unusual else None
        return out, (padded, out, winner, x.shape, padded is x, channel_major(x))

    def _backward(self, grad_out, cache, input_grad):
        """Route dL/dy to each window's first maximum in row-major order (or its last NaN).

        Without NaNs the winners are found again from the cached input and output: offset by
        offset, an element wins if it equals its window's maximum and no earlier offset won. That
        costs less than tracking the winner in the forward pass (a masked copy per offset).
        """
        if not input_grad:
            return None
        padded, out, winner, x_shape, unpadded, channels_first = cache
        overlapping = any(stride < dilation * (kernel - 1) + 1 for kernel, stride, dilation
                          in zip(self.kernel_size, self.stride, self.dilation))
        tiled = self.stride == self.kernel_size and self.dilation == (1, 1) and padded.shape[2:] == tuple(
            size * kernel for size, kernel in zip(out.shape[2:], self.kernel_size))
        # windows that tile the input write every element of dL/dx: no zero-filling needed
        grad_padded = full_in_layout(padded.shape, None if tiled else 0, grad_out.dtype, channels_first)
        # the work arrays in out's memory layout: a ufunc over arrays of one layout runs in memory order
        hit, taken = np.empty_like(out, dtype=bool), np.zeros_like(out, dtype=bool)
        last = self.kernel_size[0] * self.kernel_size[1] - 1
        for (offset, window), (_, grad_window) in zip(self._windows(padded, out.shape[2:]),
                                                      self._windows(grad_padded, out.shape[2:])):
            if winner is None:
                np.equal(window, out, out=hit)
                if offset > 0:
                    np.greater(hit, taken, out=hit)  # hit and not taken: an earlier equal element won
                if offset < last:
                    taken |= hit
            else:
                np.equal(winner, offset, out=hit)
            if overlapping:
                grad_window += grad_out * hit  # an element in several windows gets the sum
            else:
                np.multiply(grad_out, hit, out=grad_window)
        return grad_padded if unpadded else self._interior(grad_padded, x_shape)

    def window_values(self, x: np.ndarray) -> np.ndarray:
        """(kH*kW, N, C, H_out, W_out): each window's elements in torch's scan order (padding -inf).
        With `winners`, what a parity check needs to see two near-equal maxima picked differently."""
        out_size = self._output_size(x)
        padded = self._pad(x, out_size, -np.inf)
        return np.stack([window for _, window in self._windows(padded, out_size)])

    def winners(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H_out, W_out): the offset in its window (row-major) of the element each output takes."""
        out_size = self._output_size(x)
        return self._torch_winners(self._pad(x, out_size, -np.inf), out_size, x.shape)

    def window_members(self, x_shape: tuple[int, ...], selected: np.ndarray) -> np.ndarray:
        """A boolean array of x's shape: the elements of the windows where `selected` (N, C, H_out, W_out)."""
        padded_shape = self._padded_shape(x_shape, selected.shape[2:])
        members = np.zeros(padded_shape, dtype=bool)
        for _, window in self._windows(members, selected.shape[2:]):
            window |= selected
        return self._interior(members, x_shape) if padded_shape != tuple(x_shape) else members

    def __repr__(self) -> str:
        return (f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode})")


def average_divisors(size: int, out_size: int, kernel: int, stride: int, padding: int,
                     count_include_pad: bool) -> np.ndarray:
    """Per output index on one axis, the window's length torch divides by (AvgPoolKernel.cpp, cpu_avg_pool).

    The window [o*stride - padding, + kernel) is first cut at the far padding's end (so ceil_mode's
    overhang is never counted): that length with count_include_pad; without, it is cut to the input.
    """
    start = np.arange(out_size) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


class AvgPool2d(Pool2d):
    """y = sum over the window / divisor;  dL/dx = sum over the windows holding x of dL/dy / divisor.

    The divisor as torch's CPU kernel (see `average_divisors`): the window cut to the padded input
    with count_include_pad=True, cut to the input itself with False. The sum runs over the window in
    row-major order, as torch's, and zero padding adds nothing, so the forward rounds as torch's does.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _divisors(self, x_shape, out_size, dtype) -> np.ndarray:
        rows, columns = (average_divisors(x_shape[2 + axis], out_size[axis], self.kernel_size[axis],
                                          self.stride[axis], self.padding[axis], self.count_include_pad)
                         for axis in range(2))
        return np.outer(rows, columns).astype(dtype)  # (H_out, W_out)

    def _forward(self, x):
        out_size = self._output_size(x)
        padded = self._pad(x, out_size, 0)
        windows = self._windows(padded, out_size)
        _, first = next(windows)
        out = np.copy(first)
        for _, window in windows:
            out += window
        divisors = self._divisors(x.shape, out_size, x.dtype)
        out /= divisors  # torch divides (sum / divide_factor), not multiplies by a reciprocal
        return out, (divisors, x.shape, padded.shape, padded is x, channel_major(x))

    def _backward(self, grad_out, cache, input_grad):
        if not input_grad:
            return None
        divisors, x_shape, padded_shape, unpadded, channels_first = cache
        share = grad_out / divisors  # each element of a window gets dL/dy / divisor
        grad_padded = full_in_layout(padded_shape, 0, grad_out.dtype, channels_first)
        for _, window in self._windows(grad_padded, grad_out.shape[2:]):
            window += share
        return grad_padded if unpadded else self._interior(grad_padded, x_shape)

    def __repr__(self) -> str:
        return (f"AvgPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad})")
