"""One notation for layers: what `svt specs`, `describe`, `sanity` and the report print, `--layers` reads
back into the same model."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scratch_nn.spec import ModelSpec, SpecError, builtin_spec_names, load_builtin_spec, with_overrides
from scratch_nn.spec.layer_specs import BatchNorm1dSpec, ELUSpec, FlattenSpec, LinearSpec, ReLUSpec
from scratch_nn.spec.notation import block_layers, format_layers, layers_text, parse_layers


def blocks(*hidden: tuple, output: int = 10) -> tuple:
    """The list of hidden blocks given as block_layers arguments, then the output linear."""
    return tuple(layer for block in hidden for layer in block_layers(*block)) + (LinearSpec(output),)


def svt(*args: str, columns: int = 100) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": str(columns)})


@pytest.mark.parametrize("name", builtin_spec_names())
def test_every_builtin_spec_survives_the_round_trip(name):
    spec = load_builtin_spec(name)
    text = format_layers(spec.model)
    again = with_overrides(spec, layers=text)
    assert again.model == spec.model and again.train == spec.train  # the same model, the same training


@pytest.mark.parametrize("text, expected", [
    ("256:relu,128:tanh,64,10", blocks((256, "relu"), (128, "tanh"), (64, "relu"))),
    ("3x64:sigmoid+bn,10", blocks(*[(64, "sigmoid", 0.01, True)] * 3)),
    ("512:relu+dropout0.25+bn,10", blocks((512, "relu", 0.01, True, 0.25))),
    ("32:leaky_relu0.2,2x16:leaky_relu,10", blocks((32, "leaky_relu", 0.2), *[(16, "leaky_relu")] * 2)),
])
def test_the_grammar(text, expected):
    assert parse_layers(text) == expected


def test_a_block_is_its_layers_in_torchs_order():
    kinds = [layer.type for layer in parse_layers("64:tanh+dropout0.5+bn,10")]
    assert kinds == ["linear", "batch_norm1d", "tanh", "dropout", "linear"]


@pytest.mark.parametrize("layers, text", [
    (blocks(*[(128, "sigmoid")] * 8), "8x128:sigmoid,10"),
    (blocks((64, "gelu", 0.01, True, 0.1), (64, "gelu")), "64:gelu+bn+dropout0.1,64:gelu,10"),
    (blocks((16, "leaky_relu", 0.125)), "16:leaky_relu0.125,10"),
    (blocks((16, "leaky_relu"), (16, "leaky_relu", 0.01, False, 1e-05)),
     "16:leaky_relu,16:leaky_relu+dropout1e-05,10"),
])
def test_format_then_parse_gives_the_layers_back(layers, text):
    model = ModelSpec(layers=layers)
    assert format_layers(model) == text
    assert parse_layers(text) == layers


@pytest.mark.parametrize("layers", [
    (FlattenSpec(), LinearSpec(10)),  # a flatten
    (LinearSpec(16, init="xavier_normal"), ReLUSpec(), LinearSpec(10)),  # a layer's own init
    (LinearSpec(16), BatchNorm1dSpec(eps=1e-3), ReLUSpec(), LinearSpec(10)),  # batch-norm's eps
    (LinearSpec(16), ELUSpec(alpha=2.0), LinearSpec(10)),  # an activation's setting
    (LinearSpec(16), LinearSpec(10)),  # a linear with no activation after it
    (LinearSpec(16), ReLUSpec(), ReLUSpec(), LinearSpec(10)),  # two activations
    (LinearSpec(16, bias=False), ReLUSpec(), LinearSpec(10)),  # no bias
])
def test_a_list_that_is_not_blocks_has_no_compact_form(layers):
    model = ModelSpec(layers=layers)
    assert format_layers(model) is None
    assert layers_text(model).endswith("no --layers form)") and f"{len(layers)} layers" in layers_text(model)


@pytest.mark.parametrize("text, pattern", [
    ("2xx64:relu,10", r"repeat count .* must be a positive integer, got '2x' in '2xx64:relu'"),
    ("0x64:relu,10", r"repeat count .* must be a positive integer, got 0"),
    ("64:relu+bn+bn,10", r"unknown or repeated layer option '\+bn'.*allowed, once each: \+bn"),
    ("64:relu+batchnorm,10", r"unknown or repeated layer option '\+batchnorm'"),
    ("64:relu+dropout,10", r"dropout p must be a number in \[0, 1\) .* got ''"),
    ("64:relu+dropout1.5,10", r"item 1 '64:relu\+dropout1\.5': p must be a finite number in \[0, 1\), got 1.5"),
    ("64:relu0.2,10", r"unknown activation 'relu0.2'"),
    ("64:leaky_reluX,10", r"the leaky_relu slope must be a number"),
    ("64:relu,10+bn", r"the last item is the output size alone"),
])
def test_grammar_errors_say_what_is_wrong(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_layers(text)


def test_what_specs_prints_is_accepted_by_layers():
    listed = svt("specs", columns=1000)  # wide enough that no line wraps: one spec, one line
    assert listed.returncode == 0, listed.stderr
    for name in builtin_spec_names():
        line = next(line for line in listed.stdout.splitlines() if line.startswith(f"{name} "))
        form = format_layers(load_builtin_spec(name).model)
        if form is None:  # a CNN's list has no --layers form, and the line says so
            assert line.split()[1] == f"{len(load_builtin_spec(name).model.layers)}" and "no --layers form" in line
            continue
        text = line.split()[1]
        assert text == form
        described = svt("describe", "--spec", name, "--layers", text)
        assert described.returncode == 0, described.stderr
        assert f"layers: {text}   (the --layers form)" in described.stdout


def test_describe_of_layers_matches_describe_of_the_spec():
    """The table of the model --layers builds is the spec's own (the names differ, the layers not)."""
    def table(*args):
        lines = svt("describe", *args).stdout.splitlines()
        return lines[1:]  # all but the "model: NAME" line

    spec = load_builtin_spec("dropout-bn")
    assert table("--spec", "dropout-bn") == table("--spec", "dropout-bn", "--layers", format_layers(spec.model))


def test_the_report_prints_the_notation():  # sanity's header: tests/test_sanity.py
    from benchmark.report.page import spec_blocks

    spec = load_builtin_spec("deep-sigmoid-bn")
    assert ("p", "Layers, as --layers takes them: 8x128:sigmoid+bn,10") in spec_blocks(spec)


@pytest.mark.parametrize("text, kinds", [
    ("30:sigmoid,10:sigmoid", ["linear", "sigmoid", "linear", "sigmoid"]),
    ("100:relu,10:leaky_relu0.2", ["linear", "relu", "linear", "leaky_relu"]),
    ("10:tanh", ["linear", "tanh"]),
])
def test_an_output_activation_is_read_and_printed_back(text, kinds):
    layers = parse_layers(text)
    assert [layer.type for layer in layers] == kinds
    assert format_layers(ModelSpec(layers=layers)) == text


@pytest.mark.parametrize("text, pattern", [
    ("30:sigmoid,10:", r"the last item is the output size alone \(e.g. 10\) or with an output activation"),
    ("30:sigmoid,10:sigmoid+bn", r"no batch-norm, dropout or repeat count"),
    ("30:sigmoid,10:softmax", r"unknown activation 'softmax'"),
])
def test_a_bad_output_activation_says_what_is_allowed(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_layers(text)
