"""`svt describe` prints the resolved model as a table; `svt specs` lists the built-in specs.

    $ svt describe --layers 256:relu,128:tanh,10
    layer      type         output shape  activation  params   init
    layers.0   Linear       (N, 256)                  200,960  kaiming_uniform
    layers.1   ReLU         (N, 256)      relu        0
    ...
"""
from __future__ import annotations

import argparse
from dataclasses import fields

import numpy as np

from benchmark.commands.specargs import add_model_arguments, spec_from_args
from benchmark.core.tables import format_table
from scratch_nn.activations import ACTIVATION_CLASSES
from scratch_nn.notation import format_layers
from scratch_nn.spec import Spec, TrainSpec, builtin_spec_names, load_builtin_spec, settings_in_use

ACTIVATION_TYPES = {cls.__name__: name for name, cls in ACTIVATION_CLASSES.items()}  # "ReLU" -> "relu"


def add_describe_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)


def add_specs_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def describe_rows(spec: Spec) -> list[dict]:
    """One row per layer of the flat sequence the scratch MLP builds (the torch twin's too)."""
    from scratch_nn.model import MLP  # the real model, so the table cannot drift from it

    model = MLP(spec.model, np.random.default_rng(spec.train.seed))
    rows = []
    features = spec.model.input_size
    for name, layer in model.named_layers():
        kind = type(layer).__name__
        if "weight" in layer.params and kind == "Linear":
            features = layer.params["weight"].shape[0]
        rows.append({
            "layer": name,
            "type": kind,
            "output shape": f"(N, {features})",
            "activation": ACTIVATION_TYPES.get(kind, ""),
            "params": sum(value.size for value in layer.params.values()),
            "init": spec.model.init if kind == "Linear" else "",
        })
    return rows


def training_line(spec: Spec) -> str:
    """`training: sgd lr=0.1 momentum=0.9 ...`: the training settings this spec's choices use."""
    names = {field.name for field in fields(TrainSpec)} - {"optimizer"}
    settings = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                for name, value in settings_in_use(spec).items() if name in names]
    return f"training: {spec.train.optimizer} {' '.join(settings)}"


def run_describe(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    rows = describe_rows(spec)
    total = sum(row["params"] for row in rows)
    print(f"model: {spec.name}" + (f" — {spec.description}" if spec.description else ""))
    print(format_table(rows, ["layer", "type", "output shape", "activation", "params", "init"],
                       right=("params",)))
    print(f"layers: {format_layers(spec.model)}   (the --layers form)")
    print(f"total parameters: {total:,}   dtype: {spec.model.dtype}   input: (N, {spec.model.input_size})   "
          f"loss: {spec.model.loss}")
    print(training_line(spec))
    return 0


def run_specs(args: argparse.Namespace) -> int:
    specs = [load_builtin_spec(name) for name in builtin_spec_names()]
    rows = [{"spec": spec.name, "layers": format_layers(spec.model), "optimizer": spec.train.optimizer,
             "what it shows": spec.description} for spec in specs]
    print(format_table(rows, ["spec", "layers", "optimizer", "what it shows"]))
    print("\nuse one with --spec NAME, e.g. `svt describe --spec deep-sigmoid`; or give a TOML file")
    return 0
