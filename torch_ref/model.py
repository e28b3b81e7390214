"""The PyTorch twin of the scratch MLP, built from the same `ModelSpec` out of torch's own modules.

Nothing here is a port of `scratch_nn`: the layers are `nn.Linear`, `nn.BatchNorm1d`, `nn.ReLU`, ...,
the loss is `nn.CrossEntropyLoss` or `nn.MSELoss`. What the two sides share is the layer sequence
and so the parameter names (docs/architecture.md): for each hidden layer `Linear`, `BatchNorm1d` if
`batch_norm`, the activation (`Identity` for "identity"), `Dropout` if `dropout > 0`; then the
output `Linear`, all in one `nn.Sequential` called `layers`:

    784-256:relu(bn, dropout .2)-10  ->  layers.0 Linear, layers.1 BatchNorm1d, layers.2 ReLU,
                                         layers.3 Dropout, layers.4 Linear

so `TorchMLP.state_dict()` has the keys of scratch's `MLP.state_dict()` (layers.0.weight,
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

from scratch_nn.spec import LayerSpec, ModelSpec

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


def activation_module(layer: LayerSpec) -> nn.Module:
    """torch's module for a spec activation name (see `scratch_nn.spec.ACTIVATIONS`)."""
    modules = {
        "identity": nn.Identity,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(layer.negative_slope),
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "elu": nn.ELU,
        "gelu": nn.GELU,  # exact (erf) form, torch's default
        "softplus": nn.Softplus,
    }
    return modules[layer.activation]()


class TorchMLP(nn.Module):
    """The MLP of a `ModelSpec`: `self.layers` is the flat `nn.Sequential` of docs/architecture.md."""

    def __init__(self, model_spec: ModelSpec) -> None:
        super().__init__()
        dtype = TORCH_DTYPES[model_spec.dtype]
        modules: list[nn.Module] = []
        in_features = model_spec.input_size
        for layer in model_spec.layers:
            modules.append(nn.Linear(in_features, layer.units, dtype=dtype))
            if layer.batch_norm:
                modules.append(nn.BatchNorm1d(layer.units, dtype=dtype))
            modules.append(activation_module(layer))
            if layer.dropout > 0:
                modules.append(MaskedDropout(layer.dropout))
            in_features = layer.units
        modules.append(nn.Linear(in_features, model_spec.output_size, dtype=dtype))
        self.layers = nn.Sequential(*modules)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (N, input_size) -> logits (N, output_size)


def build_model(model_spec: ModelSpec) -> TorchMLP:
    """The torch twin, with torch's default initialisation (overwrite it with `load_from_numpy`)."""
    return TorchMLP(model_spec)


def named_layers(module: TorchMLP) -> list[tuple[str, nn.Module]]:
    """[("layers.0", Linear), ("layers.1", ReLU), ...], the names scratch's `named_layers()` uses."""
    return [(f"layers.{name}", layer) for name, layer in module.layers.named_children()]


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


def set_dropout_masks(module: TorchMLP, masks: dict[str, np.ndarray]) -> None:
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
