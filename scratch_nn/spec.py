"""The one spec both sides are built from: a model spec and a training spec, as frozen dataclasses.

A spec comes from a TOML file (built-in ones ship in `scratch_nn/specs/`), or from the compact
command-line form `256:relu,128:tanh,10` (read and written by `scratch_nn.notation`). It is
validated once, here, at the edge; the code that builds models and optimisers trusts it. Every
error is a `SpecError` whose message says what was given, what is allowed, and where (file and key).

TOML layout (every key optional except the layers; unknown keys are errors):

    name = "mnist-mlp"
    description = "what this spec shows"

    [model]
    input_size = 784
    output_size = 10
    init = "kaiming_uniform"      # see INITS
    loss = "cross_entropy"        # or "mse" (on one-hot targets)
    label_smoothing = 0.0
    dtype = "float32"             # or "float64"

    [[model.layers]]              # one table per hidden layer, in order
    units = 256
    activation = "relu"           # see ACTIVATIONS
    negative_slope = 0.01         # leaky_relu only
    batch_norm = false            # BatchNorm1d after the Linear, before the activation
    dropout = 0.0                 # Dropout(p) after the activation

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

from scratch_nn.activations import ACTIVATION_CLASSES
from scratch_nn.init import SCHEMES

ACTIVATIONS = tuple(ACTIVATION_CLASSES)  # identity, relu, leaky_relu, sigmoid, tanh, elu, gelu, softplus
INITS = SCHEMES  # torch_default, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, zeros, constant
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")
DTYPES = ("float32", "float64")

MNIST_INPUT_SIZE = 784
MNIST_CLASSES = 10
DEFAULT_SPEC = "mnist-mlp"


class SpecError(ValueError):
    """A spec that cannot be built: the message names the value, what is allowed, and where."""


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: Linear(units) -> [BatchNorm1d] -> activation -> [Dropout(p)]."""

    units: int
    activation: str = "relu"
    negative_slope: float = 0.01
    batch_norm: bool = False
    dropout: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """The network: hidden layers, then a Linear output layer with `output_size` units."""

    layers: tuple[LayerSpec, ...]
    input_size: int = MNIST_INPUT_SIZE
    output_size: int = MNIST_CLASSES
    init: str = "kaiming_uniform"
    init_value: float = 0.0  # for init = "constant"
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    dtype: str = "float32"


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


def _check_choice(value: Any, allowed: tuple[str, ...], what: str, where: str) -> None:
    if value not in allowed:
        raise SpecError(f"{where}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def _check_int(value: Any, what: str, where: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: {what} must be an integer >= {minimum}, got {value!r}")


def _check_number(value: Any, what: str, where: str, low: float, high: float,
                  low_open: bool = False, high_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SpecError(f"{where}: {what} must be a finite number in {interval}, got {value!r}")


def validate_layer(layer: LayerSpec, where: str) -> None:
    _check_int(layer.units, "units", where)
    _check_choice(layer.activation, ACTIVATIONS, "activation", where)
    _check_number(layer.negative_slope, "negative_slope", where, 0.0, 1.0)
    if not isinstance(layer.batch_norm, bool):
        raise SpecError(f"{where}: batch_norm must be true or false, got {layer.batch_norm!r}")
    _check_number(layer.dropout, "dropout", where, 0.0, 1.0)


def validate_model(model: ModelSpec, where: str = "model") -> None:
    if not isinstance(model.layers, tuple):
        raise SpecError(f"{where}: layers must be a tuple of LayerSpec, got {type(model.layers).__name__}")
    for index, layer in enumerate(model.layers):
        validate_layer(layer, f"{where}.layers[{index}]")
    _check_int(model.input_size, "input_size", where)
    _check_int(model.output_size, "output_size", where)
    _check_choice(model.init, INITS, "init", where)
    _check_number(model.init_value, "init_value", where, -1e6, 1e6)
    _check_choice(model.loss, LOSSES, "loss", where)
    _check_number(model.label_smoothing, "label_smoothing", where, 0.0, 1.0)
    if model.label_smoothing and model.loss != "cross_entropy":
        raise SpecError(f"{where}: label_smoothing only applies to loss = \"cross_entropy\"")
    _check_choice(model.dtype, DTYPES, "dtype", where)


def validate_train(train: TrainSpec, where: str = "train") -> None:
    _check_choice(train.optimizer, OPTIMIZERS, "optimizer", where)
    _check_number(train.lr, "lr", where, 0.0, math.inf, low_open=True)
    _check_number(train.momentum, "momentum", where, 0.0, 1.0)
    _check_number(train.dampening, "dampening", where, 0.0, 1.0, high_open=False)
    if train.nesterov and (train.momentum <= 0 or train.dampening != 0):
        raise SpecError(f"{where}: nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
    if not (isinstance(train.betas, tuple) and len(train.betas) == 2):
        raise SpecError(f"{where}: betas must be a pair [beta1, beta2], got {train.betas!r}")
    for beta in train.betas:
        _check_number(beta, "each of betas", where, 0.0, 1.0)
    _check_number(train.eps, "eps", where, 0.0, 1.0)
    _check_number(train.alpha, "alpha", where, 0.0, 1.0, high_open=False)
    _check_number(train.weight_decay, "weight_decay", where, 0.0, math.inf)
    _check_number(train.l1, "l1", where, 0.0, math.inf)
    _check_choice(train.schedule, SCHEDULES, "schedule", where)
    _check_int(train.step_size, "step_size", where)
    _check_number(train.gamma, "gamma", where, 0.0, 1.0, low_open=True, high_open=False)
    _check_int(train.batch_size, "batch_size", where)
    _check_int(train.epochs, "epochs", where)
    _check_int(train.seed, "seed", where, minimum=0)


def validate(spec: Spec, where: str = "spec") -> Spec:
    """Check every field of `spec`, and that it fits MNIST (784 inputs, 10 classes)."""
    validate_model(spec.model, f"{where}: model")
    validate_train(spec.train, f"{where}: train")
    if spec.model.input_size != MNIST_INPUT_SIZE:
        raise SpecError(f"{where}: input_size {spec.model.input_size} does not fit MNIST images, "
                        f"which have {MNIST_INPUT_SIZE} pixels (28x28); use input_size = {MNIST_INPUT_SIZE}")
    if spec.train.batch_size < 2 and any(layer.batch_norm for layer in spec.model.layers):
        raise SpecError(f"{where}: batch_size {spec.train.batch_size} with batch_norm: batch-norm needs "
                        "at least 2 examples per batch for its statistics (torch refuses 1 too)")
    if spec.model.output_size != MNIST_CLASSES:
        raise SpecError(f"{where}: output size {spec.model.output_size} does not fit MNIST, which has "
                        f"{MNIST_CLASSES} classes; the last layer must have {MNIST_CLASSES} units")
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
        raise SpecError(f"{where}.layers: expected at least one [[model.layers]] table")
    return tuple(_build(LayerSpec, table, f"{where}.layers[{index}]") for index, table in enumerate(value))


def spec_from_dict(data: dict[str, Any], where: str, default_name: str = "spec") -> Spec:
    """Build and validate a Spec from parsed TOML; `where` names the file in messages."""
    allowed = ("name", "description", "model", "train")
    for key in data:
        if key not in allowed:
            raise SpecError(f"{where}: unknown top-level key {key!r}; allowed keys: {', '.join(allowed)}")
    if "model" not in data:
        raise SpecError(f"{where}: missing the [model] table (with at least one [[model.layers]])")
    model_table = dict(data["model"]) if isinstance(data["model"], dict) else data["model"]
    if isinstance(model_table, dict):
        model_table["layers"] = _layers_from_toml(model_table.get("layers"), f"{where}: model")
    model = _build(ModelSpec, model_table, f"{where}: [model]")
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
        from scratch_nn.notation import parse_layers  # here: notation builds on this module's LayerSpec

        hidden, output_size = parse_layers(layers)
        model_changes.update(layers=hidden, output_size=output_size)
        name = "layers-" + layers.replace(",", "-").replace(":", "")
        description = f"the {spec.name} spec with --layers {layers}"
    new = replace(spec, name=name, description=description, model=replace(spec.model, **model_changes),
                  train=replace(spec.train, **train_changes))
    return validate(new, "command line")


def to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain data (for summary.json and reports)."""
    return asdict(spec)


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
    "SpecError", "LayerSpec", "ModelSpec", "TrainSpec", "Spec",
    "validate", "load_spec", "load_spec_file", "load_builtin_spec", "builtin_spec_names",
    "with_overrides", "spec_from_dict", "to_dict", "settings_in_use",
]
