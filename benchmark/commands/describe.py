"""`svt describe` prints the resolved model as a table; `svt specs` lists the built-in specs.

    $ svt describe --layers 256:relu+dropout0.2,10
    layer     type     output shape  settings  params   init
    layers.0  linear   (N, 256)                200,960  kaiming_uniform
    layers.1  relu     (N, 256)                      0
    layers.2  dropout  (N, 256)      p=0.2           0
    ...

One row per entry of the spec's layer list (`benchmark.report.layer_table`).
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from benchmark.commands.specargs import add_model_arguments, spec_from_args
from benchmark.core.tables import format_table, terminal_width
from benchmark.report.layer_table import COLUMNS, layer_rows
from scratch_nn.spec import Spec, TrainSpec, builtin_spec_names, load_builtin_spec, settings_in_use
from scratch_nn.spec.layer_specs import shape_text
from scratch_nn.spec.notation import format_layers, layers_text


def add_describe_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)


def add_specs_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def training_line(spec: Spec) -> str:
    """`training: sgd lr=0.1 momentum=0.9 ...`: the training settings this spec's choices use."""
    names = {field.name for field in fields(TrainSpec)} - {"optimizer"}
    settings = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                for name, value in settings_in_use(spec).items() if name in names]
    return f"training: {spec.train.optimizer} {' '.join(settings)}"


def run_describe(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    rows = layer_rows(spec)
    total = sum(row["params"] for row in rows if not row["layer"].startswith(" "))  # a block's row counts its own
    print(f"model: {spec.name}" + (f" — {spec.description}" if spec.description else ""))
    print(format_table(rows, COLUMNS, right=("params",)))
    compact = format_layers(spec.model)
    print(f"layers: {compact}   (the --layers form)" if compact else f"layers: {layers_text(spec.model)}")
    print(f"total parameters: {total:,}   dtype: {spec.model.dtype}   input: {shape_text(spec.model.input_shape)}   "
          f"loss: {spec.model.loss}")
    print(training_line(spec))
    if spec.data.is_function:
        print(data_line(spec))
    return 0


def data_line(spec: Spec) -> str:
    """`data: sin on 64 points in [-3, 3], noise 0.05 (seed 1)` or `data: points of FILE.csv`: a fit's [data]."""
    data = spec.data
    if data.is_file:
        return f"data: the x,y points of {data.source} (svt fit)"
    noise = f", noise {data.noise:g} (seed {data.seed})" if data.noise else ""
    return f"data: {data.source} on {data.samples} points in [{data.low:g}, {data.high:g}]{noise} (svt fit)"


def run_specs(args: argparse.Namespace) -> int:
    specs = [load_builtin_spec(name) for name in builtin_spec_names()]
    rows = [{"spec": spec.name, "layers": layers_text(spec.model), "optimizer": spec.train.optimizer,
             "what it shows": spec.description} for spec in specs]
    print(format_table(rows, ["spec", "layers", "optimizer", "what it shows"], wrap=("layers", "what it shows"),
                       width=terminal_width()))
    print("\nuse one with --spec NAME, e.g. `svt describe --spec deep-sigmoid`;")
    print("or give --spec a TOML file of your own")
    return 0
