"""The PyTorch twin of the scratch model, built from the same `ModelSpec` list out of torch's own modules.

Nothing here is a port of `scratch_nn`: the layers are `nn.Linear`, `nn.BatchNorm1d`, `nn.ReLU`, ...,
the loss is `nn.CrossEntropyLoss` or `nn.MSELoss`. What the two sides share is the spec's layer
list and so the parameter names: entry i of `model.layers` is module i of one `nn.Sequential`
called `layers`, built by the table `TORCH_BUILDERS` from the entry and the shape flowing in:

    [linear 256, batch_norm1d, relu, dropout 0.2, linear 10]  ->  layers.0 Linear, layers.1 BatchNorm1d,
                                                                  layers.2 ReLU, layers.3 Dropout, layers.4 Linear

so `TorchSequential.state_dict()` has the keys of scratch's `Sequential.state_dict()` (layers.0.weight,
layers.1.running_mean, ...). In a comparison the weights are not drawn here but copied from the
scratch model (`load_from_numpy`), and so are the dropout masks (`set_dropout_masks`): the two
sides never depend on two random number generators agreeing.

This package imports torch and `scratch_nn.spec`, never `benchmark`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratch_nn.spec import ModelSpec

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MaskedDropout(nn.Dropout):
    """`nn.Dropout` that applies an injected mask when one is set, else draws its own as usual.

    `next_mask` holds the scaled mask drawn on the scratch side, `keep / (1 - p)` (values 0 and
    1/(1-p)), shape (N, features); the next training forward computes `x * next_mask` and clears it,
    as scratch's `Dropout.next_mask` does. Without a mask it is plain `F.dropout`.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.next_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.next_mask is None:
            return F.dropout(x, self.p, self.training)
        mask, self.next_mask = self.next_mask, None
        if mask.shape != x.shape:
            raise ValueError(f"dropout mask has shape {tuple(mask.shape)}, the input has {tuple(x.shape)}")
        return x * mask


class MaskedDropout2d(MaskedDropout):
    """`nn.Dropout2d`'s maths (whole channels) with an injected mask: `next_mask` is (N, C, 1, 1), the
    scaled mask of scratch's `Dropout2d`, broadcast over each plane; without one it is `F.dropout2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.next_mask is None:
            return F.dropout2d(x, self.p, self.training)
        mask, self.next_mask = self.next_mask, None
        if mask.shape != (*x.shape[:2], 1, 1):
            raise ValueError(f"dropout2d mask has shape {tuple(mask.shape)}, the input {tuple(x.shape)} needs "
                             f"{(*x.shape[:2], 1, 1)}")
        return x * mask


class Residual(nn.Module):
    """y = body(x) + shortcut(x), torchvision's BasicBlock pattern (its ReLU after the add is the
    next layer of the list): `body` and `shortcut` are `nn.Sequential`s; no shortcut is the identity
    (then no module: the state_dict has no `shortcut` keys, as scratch's has none)."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class Concat(nn.Module):
    """y = torch.cat([branch(x) for branch in branches], dim=1), GoogLeNet's Inception module:
    `branches` is an `nn.ModuleList` of `nn.Sequential`s (names `branches.1.0.weight`)."""

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def sequential(layer_specs, input_shape: tuple[int, ...], dtype: torch.dtype) -> nn.Sequential:
    """One `nn.Sequential` of a list of layer specs (the model's own, or a block's)."""
    modules, shape = [], tuple(input_shape)
    for layer_spec in layer_specs:
        modules.append(TORCH_BUILDERS[layer_spec.type](layer_spec, shape, dtype))
        shape = layer_spec.output_shape(shape)
    return nn.Sequential(*modules)


def elementwise(module: type[nn.Module]):
    """The builder of an activation: torch's module with the spec's settings (torch's argument names)."""
    return lambda spec, shape, dtype: module(**spec.arguments())


# type -> builder(layer spec, input shape without the batch, torch dtype) -> torch's module
TORCH_BUILDERS = {
    "linear": lambda spec, shape, dtype: nn.Linear(shape[0], spec.out_features, spec.bias, dtype=dtype),
    "batch_norm1d": lambda spec, shape, dtype: nn.BatchNorm1d(shape[0], spec.eps, spec.momentum, dtype=dtype),
    "dropout": lambda spec, shape, dtype: MaskedDropout(spec.p),  # takes the scratch side's masks
    "flatten": lambda spec, shape, dtype: nn.Flatten(spec.start_dim, spec.end_dim),
    "conv2d": lambda spec, shape, dtype: nn.Conv2d(shape[0], spec.out_channels, spec.kernel_size, spec.stride,
                                                   spec.padding, spec.dilation, spec.groups, spec.bias, dtype=dtype),
    "max_pool2d": lambda spec, shape, dtype: nn.MaxPool2d(**spec.arguments()),
    "avg_pool2d": lambda spec, shape, dtype: nn.AvgPool2d(**spec.arguments()),
    "batch_norm2d": lambda spec, shape, dtype: nn.BatchNorm2d(shape[0], spec.eps, spec.momentum, spec.affine,
                                                              dtype=dtype),
    "dropout2d": lambda spec, shape, dtype: MaskedDropout2d(spec.p),  # takes the scratch side's masks
    "adaptive_avg_pool2d": lambda spec, shape, dtype: nn.AdaptiveAvgPool2d(spec.output_size),
    "residual": lambda spec, shape, dtype: Residual(sequential(spec.layers, shape, dtype),
                                                    spec.shortcut and sequential(spec.shortcut, shape, dtype)),
    "concat": lambda spec, shape, dtype: Concat([sequential(branch, shape, dtype) for branch in spec.branches]),
    "identity": elementwise(nn.Identity),
    "relu": elementwise(nn.ReLU),
    "leaky_relu": elementwise(nn.LeakyReLU),
    "sigmoid": elementwise(nn.Sigmoid),
    "tanh": elementwise(nn.Tanh),
    "elu": elementwise(nn.ELU),
    "gelu": elementwise(nn.GELU),  # exact (erf) form, torch's default
    "softplus": elementwise(nn.Softplus),
    "silu": elementwise(nn.SiLU),
    "hardtanh": elementwise(nn.Hardtanh),
}


class TorchSequential(nn.Module):
    """The model of a `ModelSpec`: `self.layers` is one `nn.Sequential`, entry i of the list as module i."""

    def __init__(self, model_spec: ModelSpec) -> None:
        super().__init__()
        dtype = TORCH_DTYPES[model_spec.dtype]
        self.layers = sequential(model_spec.layers, model_spec.input_shape, dtype)
        self.dtype = dtype
        self.spec = model_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (N, *input_shape) -> logits (N, classes)

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        """The modules the spec names as weight layers (L1 sums their weights), by name, inside blocks too."""
        modules = dict(named_layers(self))
        return [(name, modules[name]) for name in self.spec.weight_layer_names()]


TorchMLP = TorchSequential  # the name the project started with


def build_model(model_spec: ModelSpec) -> TorchSequential:
    """The torch twin, with torch's default initialisation (overwrite it with `load_from_numpy`)."""
    return TorchSequential(model_spec)


def named_layers(module: TorchSequential) -> list[tuple[str, nn.Module]]:
    """[("layers.0", Linear), ("layers.1", ReLU), ...], the names scratch's `named_layers()` uses: a
    block, then its own layers ("layers.3.body.0", "layers.5.branches.1.0"), as `spec.entries`."""
    modules = dict(module.named_modules())
    return [(entry.name, modules[entry.name]) for entry in module.spec.entries]


def load_from_numpy(module: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Copy a scratch `state_dict()` into `module` exactly: same keys, shapes and dtypes, no casts.

    Raises ValueError naming the first key that is missing, unexpected, or of another shape or dtype.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"state keys differ from the torch model's: missing {missing}, unexpected {unexpected}")
    tensors = {}
    for key, target in own.items():
        tensor = torch.from_numpy(np.array(state[key]))  # a copy: the module never shares scratch's memory
        if tensor.shape != target.shape or tensor.dtype != target.dtype:
            raise ValueError(f"{key}: got {tuple(tensor.shape)} {tensor.dtype}, "
                             f"the torch model has {tuple(target.shape)} {target.dtype}")
        tensors[key] = tensor
    module.load_state_dict(tensors, strict=True)


def load_npz(module: nn.Module, path) -> None:
    """Load weights saved by `scratch_nn.io.save_npz` (torch's state_dict keys) into `module`."""
    with np.load(path, allow_pickle=False) as archive:
        load_from_numpy(module, {key: archive[key] for key in archive.files})


def set_dropout_masks(module: TorchSequential, masks: dict[str, np.ndarray]) -> None:
    """Give each named `MaskedDropout` (e.g. "layers.3") the mask its next forward must apply."""
    layers = dict(named_layers(module))
    for name, mask in masks.items():
        layer = layers.get(name)
        if not isinstance(layer, MaskedDropout):
            raise ValueError(f"{name!r} is not a dropout layer of this model; "
                             f"dropout layers: {[n for n, m in layers.items() if isinstance(m, MaskedDropout)]}")
        tensor = torch.from_numpy(np.array(mask))
        if tensor.dtype != module.dtype:
            raise ValueError(f"{name}: dropout mask is {tensor.dtype}, the model is {module.dtype}")
        layer.next_mask = tensor
