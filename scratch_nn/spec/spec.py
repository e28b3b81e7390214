"""The one spec both sides are built from, read from TOML or the command line: a model spec and a
training spec, frozen dataclasses (`scratch_nn.spec.spec_classes`, re-exported here).

A spec comes from a TOML file (built-in ones ship in `scratch_nn/specs/`), or from the compact
command-line form `256:relu,128:tanh,10` (read and written by `scratch_nn.spec.notation`). It is
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
    layers = [                    # one entry per layer: see scratch_nn.spec.layer_specs (LAYER_SPECS)
      { type = "linear", out_features = 256 },
      { type = "relu" },
      { type = "linear", out_features = 10 },
    ]                             # or one [[model.layers]] table per layer: the same list

    [data]                        # optional: MNIST by default, or a function to fit (svt fit):
    source = "sin"                # scratch_nn.spec.data_spec: samples, low, high, noise, seed; then input_shape = [1],
                                  # one output, loss "mse" (the fit's default), "l1" or "huber" (huber_delta)

    [train]
    optimizer = "sgd"             # see OPTIMIZERS
    lr = 0.1
    momentum = 0.9                # sgd, rmsprop
    ...                           # see TrainSpec
"""
from __future__ import annotations

import tomllib
from dataclasses import MISSING, asdict, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from scratch_nn.spec.data_spec import DataSpec
from scratch_nn.spec.layer_specs import ACTIVATIONS, LAYER_SPECS, LayerSpec, layer_from_dict
from scratch_nn.spec.spec_checks import SpecError
from scratch_nn.spec.spec_classes import (
    DEFAULT_SPEC,
    DTYPES,
    INITS,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    ModelSpec,
    Spec,
    TrainSpec,
    validate,
    validate_model,
)

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
        if isinstance(table, dict) and "type" not in table and set(table) & OLD_KEYS:
            raise SpecError(old_form_message(table, f"{where}: layers.{index}"))
    return tuple(layer_from_dict(table, f"{where}: layers.{index}") for index, table in enumerate(value))


OLD_KEYS = {"units", "activation", "negative_slope", "batch_norm", "dropout"}  # a hidden block, before the list


def old_form_message(table: dict[str, Any], where: str) -> str:
    """The error for a hidden-block table of the old form (`units`, `activation`, ...): the same
    layers in the new form, one entry per layer."""
    from scratch_nn.spec.notation import block_layers  # here: notation builds on this module

    try:
        layers = block_layers(table["units"], table.get("activation", "relu"), table.get("negative_slope", 0.01),
                              table.get("batch_norm", False), table.get("dropout", 0.0))
        new = ", ".join(layer.toml() for layer in layers)
    except (SpecError, TypeError, KeyError):
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
    allowed = ("name", "description", "model", "train", "data")
    for key in data:
        if key not in allowed:
            raise SpecError(f"{where}: unknown top-level key {key!r}; allowed keys: {', '.join(allowed)}")
    if "model" not in data:
        raise SpecError(f"{where}: missing the [model] table (with its layers = [...])")
    model = _build(ModelSpec, _model_table(data["model"], f"{where}: [model]"), f"{where}: [model]")
    train = _build(TrainSpec, data.get("train", {}), f"{where}: [train]",
                   {"betas": lambda betas: tuple(betas) if isinstance(betas, list) else betas})
    source = _build(DataSpec, data.get("data", {}), f"{where}: [data]")
    if source.is_function:  # a fit's own defaults: MSE, all its points in one batch
        model = model if "loss" in data["model"] else replace(model, loss="mse")
        train = train if "batch_size" in data.get("train", {}) else replace(train, batch_size=0)
    name = data.get("name", default_name)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise SpecError(f"{where}: name and description must be strings")
    return validate(Spec(name=name, model=model, train=train, description=description, data=source), where)


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
# From the command line (the compact `--layers` form itself is `scratch_nn.spec.notation`)


def with_overrides(spec: Spec, *, layers: str | None = None, model: dict[str, Any] | None = None,
                   train: dict[str, Any] | None = None) -> Spec:
    """Return `spec` with command-line overrides applied (None values are ignored), validated."""
    model_changes = {key: value for key, value in (model or {}).items() if value is not None}
    train_changes = {key: value for key, value in (train or {}).items() if value is not None}
    name, description = spec.name, spec.description
    if layers is not None:
        from scratch_nn.spec.notation import parse_layers  # here: notation builds on this module

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
    if not spec.data.is_function:  # an MNIST spec's plain form stays as it was before [data]
        del plain["data"]
    return plain


# The settings that only some choices read: setting -> (the choosing setting, the choices that
# read it). Every other setting applies to every spec.
SETTING_USERS = {
    "momentum": ("optimizer", ("sgd", "rmsprop")), "dampening": ("optimizer", ("sgd",)),
    "nesterov": ("optimizer", ("sgd",)), "betas": ("optimizer", ("adam", "adamw")),
    "eps": ("optimizer", ("adam", "adamw", "rmsprop")), "alpha": ("optimizer", ("rmsprop",)),
    "step_size": ("schedule", ("step",)), "gamma": ("schedule", ("step",)),
    "init_value": ("init", ("constant",)), "label_smoothing": ("loss", ("cross_entropy",)),
    "huber_delta": ("loss", ("huber",)),
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
    "SpecError", "LayerSpec", "LAYER_SPECS", "ModelSpec", "TrainSpec", "Spec", "DataSpec", "validate_model",
    "validate", "load_spec", "load_spec_file", "load_builtin_spec", "builtin_spec_names",
    "with_overrides", "spec_from_dict", "to_dict", "settings_in_use",
]
