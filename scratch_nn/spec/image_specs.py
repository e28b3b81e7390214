"""The layer specs of a CNN's image layers: conv2d, max_pool2d, avg_pool2d, batch_norm2d, dropout2d.

As the other layer specs (`scratch_nn.spec.layer_specs`), a dataclass's fields are the keyword arguments
of torch's module, with torch's defaults; the input channels are the shape flowing in. Each size
(`kernel_size`, `stride`, `padding`, `dilation`) is an int or a pair [height, width], as torch's
`_pair`. Their input is one image (C, H, W) (batch left out), and their output shape is computed
by the layer modules' own functions (`conv2d_output_shape`, `pool2d_output_shape`), so validation
refuses exactly what the layers would: a kernel larger than its padded input, an output below
1x1, `groups` not dividing the channels.

    layers = [{ type = "conv2d", out_channels = 6, kernel_size = 5, padding = 2 }, { type = "relu" },
              { type = "max_pool2d", kernel_size = 2 }, { type = "flatten" }, ...]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scratch_nn.conv import conv2d_output_shape
from scratch_nn.init import SCHEMES
from scratch_nn.pooling import pool2d_output_shape
from scratch_nn.spec.layer_spec_base import LayerSpec
from scratch_nn.spec.spec_checks import SpecError, check_bool, check_choice, check_int, check_number

Size = int | tuple[int, int]


def as_size(value: Any) -> Any:
    """A TOML list [h, w] as the tuple (h, w) (specs stay hashable and compare equal); others unchanged."""
    return tuple(value) if isinstance(value, list) else value


def check_size(value: Any, what: str, where: str, minimum: int) -> None:
    """An int or a pair of ints, each >= minimum, as torch's `_pair` takes them."""
    parts = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and len(value) != 2 or any(
            isinstance(part, bool) or not isinstance(part, int) or part < minimum for part in parts):
        raise SpecError(f"{where}: {what} must be an integer >= {minimum} or a pair [height, width] of them, "
                        f"got {value!r}")


def fitted(compute, *arguments, name: str = "") -> tuple[int, ...]:
    """The output shape from a layer module's shape function, its ValueError made a SpecError (without
    the function's own "name: " prefix: the message says the layer's index and type before it)."""
    try:
        return compute(*arguments)
    except ValueError as error:
        raise SpecError(str(error).removeprefix(f"{name}: ")) from None


@dataclass(frozen=True)
class ImageSpec(LayerSpec):
    """Base of the image layer specs: sizes read from TOML lists become pairs."""

    image_input = True
    sizes = ("kernel_size", "stride", "padding", "dilation")

    def __post_init__(self) -> None:
        for name in self.sizes:
            if hasattr(self, name):
                object.__setattr__(self, name, as_size(getattr(self, name)))


@dataclass(frozen=True)
class Conv2dSpec(ImageSpec):
    """nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True), zero padding; in_channels is the channel count flowing in."""

    out_channels: int
    kernel_size: Size
    stride: Size = 1
    padding: Size = 0
    dilation: Size = 1
    groups: int = 1
    bias: bool = True
    init: str | None = None  # this layer's init scheme; None: the model's

    type = "conv2d"
    role = "weight"
    always_shown = ("kernel_size",)

    def check(self, where):
        check_int(self.out_channels, "out_channels", where)
        check_int(self.groups, "groups", where)
        check_bool(self.bias, "bias", where)
        for name, minimum in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            check_size(getattr(self, name), name, where, minimum)
        if self.init is not None:
            check_choice(self.init, SCHEMES, "init", where)

    def output_shape(self, shape):
        return fitted(conv2d_output_shape, shape, self.out_channels, self.kernel_size, self.stride, self.padding,
                      self.dilation, self.groups)


def check_pool_window(spec, where) -> None:
    """The arguments both poolings share: kernel_size, stride (None: kernel_size), padding, ceil_mode."""
    check_size(spec.kernel_size, "kernel_size", where, 1)
    if spec.stride is not None:
        check_size(spec.stride, "stride", where, 1)
    check_size(spec.padding, "padding", where, 0)
    check_bool(spec.ceil_mode, "ceil_mode", where)


@dataclass(frozen=True)
class MaxPool2dSpec(ImageSpec):
    """nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False); stride None: kernel_size."""

    kernel_size: Size
    stride: Size | None = None
    padding: Size = 0
    dilation: Size = 1
    ceil_mode: bool = False

    type = "max_pool2d"
    always_shown = ("kernel_size",)

    def check(self, where):
        check_pool_window(self, where)
        check_size(self.dilation, "dilation", where, 1)

    def output_shape(self, shape):
        return fitted(pool2d_output_shape, shape, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.ceil_mode, "max_pool2d", name="max_pool2d")


@dataclass(frozen=True)
class AvgPool2dSpec(ImageSpec):
    """nn.AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)."""

    kernel_size: Size
    stride: Size | None = None
    padding: Size = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    type = "avg_pool2d"
    always_shown = ("kernel_size",)

    def check(self, where):
        check_pool_window(self, where)
        check_bool(self.count_include_pad, "count_include_pad", where)

    def output_shape(self, shape):
        return fitted(pool2d_output_shape, shape, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode,
                      "avg_pool2d", name="avg_pool2d")


@dataclass(frozen=True)
class BatchNorm2dSpec(ImageSpec):
    """nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True): num_features is the channel count."""

    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True

    type = "batch_norm2d"

    def check(self, where):
        check_number(self.eps, "eps", where, 0.0, 1.0, low_open=True)
        check_number(self.momentum, "momentum", where, 0.0, 1.0, high_open=False)
        check_bool(self.affine, "affine", where)


@dataclass(frozen=True)
class Dropout2dSpec(ImageSpec):
    """nn.Dropout2d(p=0.5): whole channels dropped, one draw per (sample, channel)."""

    p: float = 0.5

    type = "dropout2d"
    always_shown = ("p",)

    def check(self, where):
        check_number(self.p, "p", where, 0.0, 1.0)


@dataclass(frozen=True)
class AdaptiveAvgPool2dSpec(ImageSpec):
    """nn.AdaptiveAvgPool2d(output_size): the window sizes follow from the input's, so output_size = 1
    is global average pooling (ResNet's and GoogLeNet's head)."""

    output_size: Size

    type = "adaptive_avg_pool2d"
    always_shown = ("output_size",)
    sizes = ("output_size",)

    def check(self, where):
        check_size(self.output_size, "output_size", where, 1)

    def output_shape(self, shape):
        height, width = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        return (shape[0], height, width)


IMAGE_SPECS = (Conv2dSpec, MaxPool2dSpec, AvgPool2dSpec, BatchNorm2dSpec, Dropout2dSpec, AdaptiveAvgPool2dSpec)
