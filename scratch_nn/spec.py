"""The one spec both sides are built from: a model spec and a training spec, as frozen dataclasses.

A spec comes from a TOML file (built-in ones ship in `scratch_nn/specs/`), or from the compact
command-line form `256:relu,128:tanh,10` (read and written by `scratch_nn.notation`). It is
validated once, here, at the edge; the code that builds models and optimisers trusts it. Every
error is a `SpecError` whose message says what was given, what is allowed, and where (file and key).

TOML layout (every key optional except the layers; unknown keys are errors):

    name = "mnist-mlp"
    description = "what this spec shows"

    [model]
    input_shape = [784]           # the shape of one example: [784], or [1, 28, 28] for image layers
    init = "kaiming_uniform"      # see INITS; the default of every weight layer (a layer may set its own)
    loss = "cross_entropy"        # or "mse" (on one-hot targets)
    label_smoothing = 0.0
    dtype = "float32"             # or "float64"
    layers = [                    # one entry per layer: see scratch_nn.layer_specs (LAYER_SPECS)
      { type = "linear", out_features = 256 },
      { type = "relu" },
      { type = "linear", out_features = 10 },
    ]                             # or one [[model.layers]] table per layer: the same list

    [train]
    optimizer = "sgd"             # see OPTIMIZERS
    lr = 0.1
    momentum = 0.9                # sgd, rmsprop
    ...                           # see TrainSpec
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from scratch_nn.init import SCHEMES
from scratch_nn.layer_specs import (
    ACTIVATIONS,
    LAYER_SPECS,
    LayerSpec,
    SpecError,
    check_choice,
    check_int,
    check_number,
    init_gain,
    layer_from_dict,
    propagate_shapes,
    shape_text,
)

INITS = SCHEMES  # torch_default, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, zeros, constant
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")
DTYPES = ("float32", "float64")

MNIST_INPUT_SIZE = 784
MNIST_CLASSES = 10
DEFAULT_SPEC = "mnist-mlp"


@dataclass(frozen=True)
class ModelSpec:
    """The network: its layers in order (one entry per layer, `scratch_nn.layer_specs`), the shape of
    one input example, and the settings every layer shares."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...] = (MNIST_INPUT_SIZE,)
    init: str = "kaiming_uniform"  # the weight layers' scheme, unless a layer names its own
    init_value: float = 0.0  # for init = "constant"
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    dtype: str = "float32"

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's output shape, batch dimension left out: shapes[i] is what layers.{i} gives."""
        return propagate_shapes(self.layers, self.input_shape)

    @property
    def output_size(self) -> int:
        """The number of logits (classes) of the last layer."""
        return self.shapes[-1][0]

    def weight_init(self, index: int) -> tuple[str, float]:
        """(scheme, Kaiming gain) of weight layer `index`: its own init or the model's, and the gain of
        the first activation after it (`scratch_nn.layer_specs.init_gain`)."""
        return self.layers[index].init or self.init, init_gain(self.layers, index)

    def weight_layers(self) -> list[int]:
        """The indices of the weight layers (those initialised by `init`, and whose weights L1 sums)."""
        return [index for index, layer in enumerate(self.layers) if layer.role == "weight"]


@dataclass(frozen=True)
class TrainSpec:
    """How to train: the optimiser with torch's hyper-parameter names, the schedule, the data order."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0        # sgd, rmsprop
    dampening: float = 0.0       # sgd
    nesterov: bool = False       # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8            # adam, adamw, rmsprop
    alpha: float = 0.99          # rmsprop smoothing constant
    weight_decay: float = 0.0    # L2 added to the gradient (adamw: decoupled), all parameters
    l1: float = 0.0              # l1 * sum|w| added to the loss, Linear weights only
    schedule: str = "constant"   # per epoch: "step" (StepLR) or "cosine" (CosineAnnealingLR)
    step_size: int = 1           # schedule = "step"
    gamma: float = 0.1           # schedule = "step"
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Spec:
    """A named pair of model and training specs: what every subcommand takes."""

    name: str
    model: ModelSpec
    train: TrainSpec
    description: str = ""


# ---------------------------------------------------------------------------------------------
# Validation: one function per dataclass, called by every constructor path (TOML, CLI, Python).


def validate_model(model: ModelSpec, where: str = "model") -> None:
    """Check every layer and setting, and propagate the shapes once (a layer that does not fit its
    input is refused, naming the layer, its index and the shapes)."""
    if not isinstance(model.layers, tuple) or not model.layers:
        raise SpecError(f"{where}: layers must be a non-empty tuple of layer specs, got {model.layers!r}")
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, LayerSpec):
            raise SpecError(f"{where}: layers.{index} is not a layer spec, got {layer!r}")
        layer.check(f"{where}: layers.{index} ({layer.type})")
    shape = model.input_shape
    if not isinstance(shape, tuple) or not shape or any(isinstance(size, bool) or not isinstance(size, int)
                                                        or size < 1 for size in shape):
        raise SpecError(f"{where}: input_shape must be a list of positive integers like [784] or [1, 28, 28], "
                        f"got {shape!r}")
    if len(propagate_shapes(model.layers, shape, where)[-1]) != 1:
        raise SpecError(f"{where}: the last layer gives {shape_text(model.shapes[-1])}; it must give "
                        "(N, classes) logits: put a flatten and a linear at the end")
    check_choice(model.init, INITS, "init", where)
    check_number(model.init_value, "init_value", where, -1e6, 1e6)
    check_choice(model.loss, LOSSES, "loss", where)
    check_number(model.label_smoothing, "label_smoothing", where, 0.0, 1.0)
    if model.label_smoothing and model.loss != "cross_entropy":
        raise SpecError(f"{where}: label_smoothing only applies to loss = \"cross_entropy\"")
    check_choice(model.dtype, DTYPES, "dtype", where)


def validate_train(train: TrainSpec, where: str = "train") -> None:
    check_choice(train.optimizer, OPTIMIZERS, "optimizer", where)
    check_number(train.lr, "lr", where, 0.0, math.inf, low_open=True)
    check_number(train.momentum, "momentum", where, 0.0, 1.0)
    check_number(train.dampening, "dampening", where, 0.0, 1.0, high_open=False)
    if train.nesterov and (train.momentum <= 0 or train.dampening != 0):
        raise SpecError(f"{where}: nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
    if not (isinstance(train.betas, tuple) and len(train.betas) == 2):
        raise SpecError(f"{where}: betas must be a pair [beta1, beta2], got {train.betas!r}")
    for beta in train.betas:
        check_number(beta, "each of betas", where, 0.0, 1.0)
    check_number(train.eps, "eps", where, 0.0, 1.0)
    check_number(train.alpha, "alpha", where, 0.0, 1.0, high_open=False)
    check_number(train.weight_decay, "weight_decay", where, 0.0, math.inf)
    check_number(train.l1, "l1", where, 0.0, math.inf)
    check_choice(train.schedule, SCHEDULES, "schedule", where)
    check_int(train.step_size, "step_size", where)
    check_number(train.gamma, "gamma", where, 0.0, 1.0, low_open=True, high_open=False)
    check_int(train.batch_size, "batch_size", where)
    check_int(train.epochs, "epochs", where)
    check_int(train.seed, "seed", where, minimum=0)


def validate(spec: Spec, where: str = "spec") -> Spec:
    """Check every field of `spec`, and that it fits MNIST (784 pixels in, 10 classes out)."""
    validate_model(spec.model, f"{where}: model")
    validate_train(spec.train, f"{where}: train")
    if math.prod(spec.model.input_shape) != MNIST_INPUT_SIZE:
        raise SpecError(f"{where}: input_shape {list(spec.model.input_shape)} does not fit MNIST images, which "
                        f"have {MNIST_INPUT_SIZE} pixels (28x28); use [{MNIST_INPUT_SIZE}] or [1, 28, 28]")
    if spec.train.batch_size < 2 and any(layer.type == "batch_norm1d" for layer in spec.model.layers):
        raise SpecError(f"{where}: batch_size {spec.train.batch_size} with batch_norm1d: batch-norm needs "
                        "at least 2 examples per batch for its statistics (torch refuses 1 too)")
    if spec.model.shapes[-1] != (MNIST_CLASSES,):
        last = len(spec.model.layers) - 1
        raise SpecError(f"{where}: model: layers.{last} ({spec.model.layers[last].type}) gives "
                        f"{shape_text(spec.model.shapes[-1])}, which does not fit MNIST's {MNIST_CLASSES} classes: "
                        f"the last layer must give (N, {MNIST_CLASSES})")
    return spec


# ---------------------------------------------------------------------------------------------
# From TOML


def _build(cls: type, table: Any, where: str, converters: dict[str, Any] | None = None) -> Any:
    """Make dataclass `cls` from a TOML table, refusing keys it does not have (typos)."""
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table, got {table!r}")
    allowed = [f.name for f in fields(cls)]
    for key in table:
        if key not in allowed:
            raise SpecError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [key for key in required if key not in table]
    if missing:
        raise SpecError(f"{where}: missing key {missing[0]!r} (required: {', '.join(required)})")
    values = dict(table)
    for key, convert in (converters or {}).items():
        if key in values:
            values[key] = convert(values[key])
    return cls(**values)


def _layers_from_toml(value: Any, where: str) -> tuple[LayerSpec, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected layers = [{{ type = ... }}, ...], one entry per layer "
                        f"(types: {', '.join(LAYER_SPECS)})")
    for index, table in enumerate(value):
        if isinstance(table, dict) and "type" not in table and "units" in table:
            raise SpecError(old_form_message(table, f"{where}.layers[{index}]"))
    return tuple(layer_from_dict(table, f"{where}: layers.{index}") for index, table in enumerate(value))


def old_form_message(table: dict[str, Any], where: str) -> str:
    """The error for a hidden-block table of the old form (`units`, `activation`, ...): the same
    layers in the new form, one entry per layer."""
    from scratch_nn.notation import block_layers  # here: notation builds on this module

    try:
        layers = block_layers(table["units"], table.get("activation", "relu"), table.get("negative_slope", 0.01),
                              table.get("batch_norm", False), table.get("dropout", 0.0))
        new = ", ".join(layer.toml() for layer in layers)
    except (SpecError, TypeError):
        new = '{ type = "linear", out_features = UNITS }, { type = "relu" }, ...'
    return (f"{where}: {{ units = ... }} is the old form of a hidden block; one entry is now one layer: write "
            f"it as {new} (and end the list with the output layer, {{ type = \"linear\", out_features = 10 }})")


def _model_table(table: Any, where: str) -> dict[str, Any]:
    """The [model] table with its layers and input_shape made into spec values; old keys explained."""
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table, got {table!r}")
    table = dict(table)
    if "input_size" in table:
        raise SpecError(f"{where}: input_size is now input_shape, the shape of one example: "
                        f"input_shape = [{table['input_size']}]")
    if "output_size" in table:
        raise SpecError(f"{where}: output_size is now the last layer's own: end the layers with "
                        f"{{ type = \"linear\", out_features = {table['output_size']} }}")
    table["layers"] = _layers_from_toml(table.get("layers"), where)
    if isinstance(table.get("input_shape"), list):
        table["input_shape"] = tuple(table["input_shape"])
    return table


def spec_from_dict(data: dict[str, Any], where: str, default_name: str = "spec") -> Spec:
    """Build and validate a Spec from parsed TOML; `where` names the file in messages."""
    allowed = ("name", "description", "model", "train")
    for key in data:
        if key not in allowed:
            raise SpecError(f"{where}: unknown top-level key {key!r}; allowed keys: {', '.join(allowed)}")
    if "model" not in data:
        raise SpecError(f"{where}: missing the [model] table (with its layers = [...])")
    model = _build(ModelSpec, _model_table(data["model"], f"{where}: [model]"), f"{where}: [model]")
    train = _build(TrainSpec, data.get("train", {}), f"{where}: [train]",
                   {"betas": lambda betas: tuple(betas) if isinstance(betas, list) else betas})
    name = data.get("name", default_name)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise SpecError(f"{where}: name and description must be strings")
    return validate(Spec(name=name, model=model, train=train, description=description), where)


def load_spec_file(path: str | Path) -> Spec:
    """Read a spec from a TOML file, with the file name (and line, for syntax errors) in errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist; give a path to a .toml file "
                        f"or one of the built-in names: {', '.join(builtin_spec_names())}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"spec file {str(path)!r} cannot be read: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # its message carries "(at line L, column C)"
        raise SpecError(f"spec file {str(path)!r} is not valid TOML: {error}") from None
    return spec_from_dict(data, where=str(path), default_name=path.stem)


def builtin_spec_names() -> list[str]:
    folder = resources.files("scratch_nn") / "specs"
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_builtin_spec(name: str) -> Spec:
    names = builtin_spec_names()
    if name not in names:
        raise SpecError(f"unknown built-in spec {name!r}; built-in specs: {', '.join(names)} "
                        f"(or give a path to a .toml file)")
    entry = resources.files("scratch_nn") / "specs" / f"{name}.toml"
    return spec_from_dict(tomllib.loads(entry.read_text(encoding="utf-8")), where=f"built-in spec {name!r}",
                          default_name=name)


def load_spec(name_or_path: str) -> Spec:
    """A built-in spec name (`mnist-mlp`) or a path to a TOML file (anything with `/` or `.toml`)."""
    if name_or_path in builtin_spec_names():  # a built-in name wins over a same-named file here
        return load_builtin_spec(name_or_path)
    if name_or_path.endswith(".toml") or "/" in name_or_path or Path(name_or_path).is_file():
        return load_spec_file(name_or_path)
    return load_builtin_spec(name_or_path)  # raises, listing the built-in names


# ---------------------------------------------------------------------------------------------
# From the command line (the compact `--layers` form itself is `scratch_nn.notation`)


def with_overrides(spec: Spec, *, layers: str | None = None, model: dict[str, Any] | None = None,
                   train: dict[str, Any] | None = None) -> Spec:
    """Return `spec` with command-line overrides applied (None values are ignored), validated."""
    model_changes = {key: value for key, value in (model or {}).items() if value is not None}
    train_changes = {key: value for key, value in (train or {}).items() if value is not None}
    name, description = spec.name, spec.description
    if layers is not None:
        from scratch_nn.notation import parse_layers  # here: notation builds on this module

        model_changes.update(layers=parse_layers(layers))
        name = "layers-" + layers.replace(",", "-").replace(":", "")
        description = f"the {spec.name} spec with --layers {layers}"
    new = replace(spec, name=name, description=description, model=replace(spec.model, **model_changes),
                  train=replace(spec.train, **train_changes))
    return validate(new, "command line")


def to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain data (for summary.json and reports); `spec_from_dict` reads it back."""
    plain = asdict(spec)
    plain["model"]["layers"] = [{"type": layer.type, **layer.arguments()} for layer in spec.model.layers]
    plain["model"]["input_shape"] = list(spec.model.input_shape)
    return plain


# The settings that only some choices read: setting -> (the choosing setting, the choices that
# read it). Every other setting applies to every spec.
SETTING_USERS = {
    "momentum": ("optimizer", ("sgd", "rmsprop")), "dampening": ("optimizer", ("sgd",)),
    "nesterov": ("optimizer", ("sgd",)), "betas": ("optimizer", ("adam", "adamw")),
    "eps": ("optimizer", ("adam", "adamw", "rmsprop")), "alpha": ("optimizer", ("rmsprop",)),
    "step_size": ("schedule", ("step",)), "gamma": ("schedule", ("step",)),
    "init_value": ("init", ("constant",)), "label_smoothing": ("loss", ("cross_entropy",)),
}


def settings_in_use(spec: Spec) -> dict[str, Any]:
    """The model settings (but the layers) and training settings this spec's choices read, as
    plain data: an SGD run shows no betas, a constant schedule no step_size."""
    plain = to_dict(spec)
    settings = {key: value for key, value in plain["model"].items() if key != "layers"} | plain["train"]
    return {key: value for key, value in settings.items()
            if key not in SETTING_USERS or settings[SETTING_USERS[key][0]] in SETTING_USERS[key][1]}


__all__ = [
    "ACTIVATIONS", "INITS", "LOSSES", "OPTIMIZERS", "SCHEDULES", "DTYPES", "DEFAULT_SPEC",
    "SpecError", "LayerSpec", "LAYER_SPECS", "ModelSpec", "TrainSpec", "Spec", "validate_model",
    "validate", "load_spec", "load_spec_file", "load_builtin_spec", "builtin_spec_names",
    "with_overrides", "spec_from_dict", "to_dict", "settings_in_use",
]
