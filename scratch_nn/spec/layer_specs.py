"""One spec dataclass per layer type, the registry `LAYER_SPECS` from `type` to it, and what is read
off the list once: each layer's output shape and each weight layer's init gain.

A model's layers are a list of these, one entry per layer, as in a TOML spec:

    layers = [{ type = "linear", out_features = 256 }, { type = "relu" },
              { type = "dropout", p = 0.2 }, { type = "linear", out_features = 10 }]

`type` is torch's module name in snake_case and the other keys are the arguments of torch's
constructor, with torch's defaults (`nn.Linear(in_features, out_features, bias=True)`,
`nn.LeakyReLU(negative_slope=0.01)`, ...). The input sizes (`in_features`, `num_features`) are not
written: they are the shape flowing in. A `linear` may also name its own `init` (the model's
`init` otherwise). Shapes here leave out the batch dimension: `(784,)` is an (N, 784) batch.

A dataclass's fields are exactly its scratch class's and torch module's keyword arguments (but
`init`), so both sides build an activation as `Class(**spec.arguments())`.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from scratch_nn.init import SCHEMES, calculate_gain
from scratch_nn.spec.block_specs import BLOCK_SPECS
from scratch_nn.spec.image_specs import IMAGE_SPECS
from scratch_nn.spec.layer_spec_base import LayerSpec, shape_text
from scratch_nn.spec.spec_checks import SpecError, check_bool, check_choice, check_int, check_number


@dataclass(frozen=True)
class LinearSpec(LayerSpec):
    """nn.Linear(in_features, out_features, bias=True): in_features is the size flowing in."""

    out_features: int
    bias: bool = True
    init: str | None = None  # this layer's init scheme; None: the model's

    type = "linear"
    role = "weight"
    vector_input = True

    def check(self, where):
        check_int(self.out_features, "out_features", where)
        check_bool(self.bias, "bias", where)
        if self.init is not None:
            check_choice(self.init, SCHEMES, "init", where)

    def output_shape(self, shape):
        return (self.out_features,)


@dataclass(frozen=True)
class BatchNorm1dSpec(LayerSpec):
    """nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1): num_features is the size flowing in."""

    eps: float = 1e-5
    momentum: float = 0.1

    type = "batch_norm1d"
    vector_input = True

    def check(self, where):
        check_number(self.eps, "eps", where, 0.0, 1.0, low_open=True)
        check_number(self.momentum, "momentum", where, 0.0, 1.0, high_open=False)


@dataclass(frozen=True)
class DropoutSpec(LayerSpec):
    """nn.Dropout(p=0.5)."""

    p: float = 0.5

    type = "dropout"
    always_shown = ("p",)

    def check(self, where):
        check_number(self.p, "p", where, 0.0, 1.0)


@dataclass(frozen=True)
class FlattenSpec(LayerSpec):
    """nn.Flatten(start_dim=1, end_dim=-1): dimensions counted with the batch as dimension 0."""

    start_dim: int = 1
    end_dim: int = -1

    type = "flatten"

    def check(self, where):
        for name in ("start_dim", "end_dim"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise SpecError(f"{where}: {name} must be an integer, got {getattr(self, name)!r}")

    def output_shape(self, shape):
        full = (None, *shape)  # with the batch dimension
        start, end = self.start_dim % len(full), self.end_dim % len(full)
        if not 1 <= start <= end:
            raise SpecError(f"flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does not fit an input "
                            f"of shape (N, {', '.join(map(str, shape))}): it must keep the batch dimension 0 "
                            "and have start_dim <= end_dim")
        return (*full[1:start], math.prod(full[start:end + 1]), *full[end + 1:])


@dataclass(frozen=True)
class ActivationSpec(LayerSpec):
    """An elementwise activation. Its init gain is torch's `calculate_gain(nonlinearity)`."""

    role = "activation"
    nonlinearity: ClassVar[str] = "linear"

    def gain(self) -> float:
        return calculate_gain(self.nonlinearity)


@dataclass(frozen=True)
class IdentitySpec(ActivationSpec):
    """nn.Identity()."""

    type = nonlinearity = "identity"


@dataclass(frozen=True)
class ReLUSpec(ActivationSpec):
    """nn.ReLU()."""

    type = nonlinearity = "relu"


@dataclass(frozen=True)
class LeakyReLUSpec(ActivationSpec):
    """nn.LeakyReLU(negative_slope=0.01)."""

    negative_slope: float = 0.01

    type = nonlinearity = "leaky_relu"
    always_shown = ("negative_slope",)

    def check(self, where):
        check_number(self.negative_slope, "negative_slope", where, 0.0, 1.0)

    def gain(self):
        return calculate_gain("leaky_relu", self.negative_slope)


@dataclass(frozen=True)
class SigmoidSpec(ActivationSpec):
    """nn.Sigmoid()."""

    type = nonlinearity = "sigmoid"


@dataclass(frozen=True)
class TanhSpec(ActivationSpec):
    """nn.Tanh()."""

    type = nonlinearity = "tanh"


@dataclass(frozen=True)
class ELUSpec(ActivationSpec):
    """nn.ELU(alpha=1.0)."""

    alpha: float = 1.0

    type = nonlinearity = "elu"

    def check(self, where):
        check_number(self.alpha, "alpha", where, 0.0, math.inf)


@dataclass(frozen=True)
class GELUSpec(ActivationSpec):
    """nn.GELU() (the exact erf form, torch's approximate='none')."""

    type = nonlinearity = "gelu"


@dataclass(frozen=True)
class SoftplusSpec(ActivationSpec):
    """nn.Softplus(beta=1.0, threshold=20.0)."""

    beta: float = 1.0
    threshold: float = 20.0

    type = nonlinearity = "softplus"

    def check(self, where):
        check_number(self.beta, "beta", where, 0.0, math.inf, low_open=True)
        check_number(self.threshold, "threshold", where, 0.0, math.inf, low_open=True)


@dataclass(frozen=True)
class SiLUSpec(ActivationSpec):
    """nn.SiLU(). torch's calculate_gain has no entry for it: relu's sqrt 2, as for gelu."""

    type, nonlinearity = "silu", "relu"


@dataclass(frozen=True)
class HardtanhSpec(ActivationSpec):
    """nn.Hardtanh(min_val=-1.0, max_val=1.0). Gain 1 (torch has none): the identity between the clips."""

    min_val: float = -1.0
    max_val: float = 1.0

    type, nonlinearity = "hardtanh", "linear"
    always_shown = ("min_val", "max_val")

    def check(self, where):
        check_number(self.min_val, "min_val", where, -math.inf, math.inf, low_open=True)
        check_number(self.max_val, "max_val", where, -math.inf, math.inf, low_open=True)
        if not self.min_val < self.max_val:
            raise SpecError(f"{where}: min_val must be below max_val, got {self.min_val!r} and {self.max_val!r}")


LAYER_SPECS: dict[str, type[LayerSpec]] = {spec.type: spec for spec in (
    LinearSpec, BatchNorm1dSpec, DropoutSpec, FlattenSpec, IdentitySpec, ReLUSpec, LeakyReLUSpec, SigmoidSpec,
    TanhSpec, ELUSpec, GELUSpec, SoftplusSpec, SiLUSpec, HardtanhSpec, *IMAGE_SPECS, *BLOCK_SPECS)}
ACTIVATIONS = tuple(name for name, spec in LAYER_SPECS.items() if spec.role == "activation")


def layer_from_dict(table: Any, where: str) -> LayerSpec:
    """One layer entry of a spec (a TOML table with `type`), checked: unknown types and keys are refused."""
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table like {{ type = \"relu\" }}, got {table!r}")
    if "type" not in table:
        raise SpecError(f"{where}: missing key 'type'; allowed types: {', '.join(LAYER_SPECS)}")
    kind = table["type"]
    check_choice(kind, tuple(LAYER_SPECS), "layer type", where)
    cls = LAYER_SPECS[kind]
    allowed = [field.name for field in fields(cls)]
    for key in table:
        if key != "type" and key not in allowed:
            raise SpecError(f"{where}: unknown key {key!r} for a {kind} layer; allowed keys: "
                            f"{', '.join(['type', *allowed]) if allowed else 'type (it has no settings)'}")
    values = {key: value for key, value in table.items() if key != "type"}
    for key in set(getattr(cls, "nested", ())) & set(values):  # a block's lists of layers
        values[key] = nested_layers(values[key], key, where, kind)
    try:
        layer = cls(**values)
    except TypeError:  # a required key is missing
        required = [field.name for field in fields(cls) if field.default is MISSING]
        raise SpecError(f"{where}: a {kind} layer needs {', '.join(required)}") from None
    layer.check(where)
    return layer


def nested_layers(value: Any, key: str, where: str, kind: str) -> tuple:
    """A block's list of layer tables (`layers`, `shortcut`) read into specs, or for `branches` a list
    of such lists; named as torch names them (`layers.3.body.0`, `layers.5.branches.1.0`)."""
    if key == "branches":
        if not isinstance(value, list) or not value:
            raise SpecError(f"{where} ({kind}): branches must be a list of at least one list of layers, like "
                            f"[[{{ type = \"conv2d\", out_channels = 8, kernel_size = 1 }}], [...]], got {value!r}")
        return tuple(nested_layers(branch, f"branches.{index}", where, kind) for index, branch in enumerate(value))
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where} ({kind}): {key} must be a list of at least one layer, like [{{ type = \"conv2d\", "
                        f"out_channels = 16, kernel_size = 3, padding = 1 }}], got {value!r}")
    name = {"layers": "body"}.get(key, key)
    return tuple(layer_from_dict(table, f"{where}.{name}.{index}") for index, table in enumerate(value))


def propagate_shapes(layers: tuple[LayerSpec, ...], input_shape: tuple[int, ...],
                     where: str = "model", prefix: str = "layers") -> tuple[tuple[int, ...], ...]:
    """Every layer's output shape (batch left out), checking that each layer fits what flows in; a
    block checks its own lists, naming their layers `prefix.i.body.j` and so on."""
    shapes, shape = [], tuple(input_shape)
    for index, layer in enumerate(layers):
        name = f"{prefix}.{index}"
        if layer.vector_input and len(shape) != 1:
            raise SpecError(f"{where}: {name} ({layer.type}) needs an input of shape (N, features), "
                            f"got {shape_text(shape)}; put {{ type = \"flatten\" }} before it")
        if layer.image_input and len(shape) != 3:
            raise SpecError(f"{where}: {name} ({layer.type}) needs an input of shape (N, C, H, W), "
                            f"got {shape_text(shape)}; for MNIST images set input_shape = [1, 28, 28]")
        if layer.role == "block":  # its messages name the layer inside it
            shapes.append(shape := layer.output_shape(shape, where, name))
            continue
        try:
            shape = layer.output_shape(shape)
        except SpecError as error:
            raise SpecError(f"{where}: {name} ({layer.type}): {error}") from None
        shapes.append(shape)
    return tuple(shapes)


def init_gain(layers: tuple[LayerSpec, ...], index: int) -> float:
    """The init gain of weight layer `index`: that of the first activation after it, before the next
    weight layer (1, torch's "linear", when there is none: the output layer, whose softmax is the
    loss's). Layers between them (batch-norm, dropout) are passed over, as today's Linear ->
    BatchNorm1d -> activation takes the activation's gain. Kaiming init uses it; xavier keeps
    torch's default gain 1."""
    for layer in layers[index + 1:]:
        if layer.role in ("weight", "block"):
            break
        if layer.role == "activation":
            return layer.gain()
    return calculate_gain("linear")
