"""Residual and concat blocks: the spec forms and their one-line refusals, torch's nested names on
both sides, float64 parity against torch at 1e-10 with finite differences for each block kind, a
planted bug (the shortcut's gradient dropped) caught by `svt parity`, and what the commands read off
blocks (describe's tree, bench's FLOPs, sanity's verdicts on plain-deep and resnet-deep).

The per-layer rows (each block kind against torch, forward, backward and state) are in
tests/test_layers.py's table; here whole models on small images and real MNIST.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import torch_ref
from benchmark.bench.timing import inference_flops
from benchmark.commands.cli import main
from benchmark.data.mnist import as_inputs, as_labels
from benchmark.parity.engine import gradient_parity
from benchmark.sanity.health import check_gradient_health
from scratch_nn.blocks import Residual, run_backward
from scratch_nn.model import Sequential
from scratch_nn.spec import SpecError, load_builtin_spec, load_spec_file
from scratch_nn.spec.block_specs import ConcatSpec, ResidualSpec
from scratch_nn.spec.image_specs import AdaptiveAvgPool2dSpec, BatchNorm2dSpec, Conv2dSpec, MaxPool2dSpec
from scratch_nn.spec.layer_specs import FlattenSpec, LinearSpec, ReLUSpec, TanhSpec
from scratch_nn.spec.spec_classes import ModelSpec, validate_model

HEAD = (AdaptiveAvgPool2dSpec(1), FlattenSpec(), LinearSpec(10))
STEM = (Conv2dSpec(4, 3, padding=1), BatchNorm2dSpec(), ReLUSpec())
# block kind -> the block after a small stem, on (N, 1, 8, 8) images: each kind the issue names
BLOCKS = {
    "identity-shortcut": ResidualSpec((Conv2dSpec(4, 3, padding=1), BatchNorm2dSpec(), ReLUSpec(),
                                       Conv2dSpec(4, 3, padding=1), BatchNorm2dSpec())),
    "projection-shortcut-stride-2": ResidualSpec((Conv2dSpec(6, 3, stride=2, padding=1), BatchNorm2dSpec(), TanhSpec(),
                                                  Conv2dSpec(6, 3, padding=1), BatchNorm2dSpec()),
                                                 shortcut=(Conv2dSpec(6, 1, stride=2, bias=False), BatchNorm2dSpec())),
    "nested": ResidualSpec((Conv2dSpec(4, 3, padding=1), TanhSpec(),
                            ResidualSpec((Conv2dSpec(4, 1), TanhSpec())),
                            ConcatSpec(((Conv2dSpec(1, 1),), (Conv2dSpec(3, 3, padding=1), TanhSpec()))))),
    "branches-of-different-channels": ConcatSpec(((Conv2dSpec(2, 1),),
                                                  (Conv2dSpec(3, 1), TanhSpec(), Conv2dSpec(5, 3, padding=1)),
                                                  (Conv2dSpec(1, 1), TanhSpec(), Conv2dSpec(3, 5, padding=2)),
                                                  (MaxPool2dSpec(3, stride=1, padding=1), Conv2dSpec(2, 1)))),
}


def small_model(block, dtype="float64", seed=0) -> Sequential:
    spec = ModelSpec(layers=(*STEM, block, TanhSpec(), *HEAD), input_shape=(1, 8, 8), dtype=dtype)
    validate_model(spec)
    return Sequential(spec, np.random.default_rng(seed))


def small_batch(dtype="float64", seed=0, count=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 1, 8, 8)).astype(dtype), rng.integers(0, 10, count)


def write_spec(tmp_path, layers: str) -> str:
    path = tmp_path / "blocks.toml"
    path.write_text(f'name = "blocks"\n[model]\ninput_shape = [1, 28, 28]\n{layers}\n', encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# The spec: bad blocks refused in one line, when the spec is read


CONV = '{ type = "conv2d", out_channels = 8, kernel_size = 3, padding = 1 }'
BAD_BLOCKS = {
    "empty body": (f'layers = [{CONV}, {{ type = "residual", layers = [] }}]',
                   r"layers\.1 \(residual\): layers must be a list of at least one layer, like \[\{ type = \"conv2d\""),
    "shortcut of the wrong shape": (
        f'layers = [{CONV}, {{ type = "residual", layers = [{{ type = "conv2d", out_channels = 16, kernel_size = 3, '
        'stride = 2, padding = 1 }], shortcut = [{ type = "batch_norm2d" }] }]',
        r"model: layers\.1 \(residual\): the body gives \(N, 16, 14, 14\) but the shortcut gives \(N, 8, 28, 28\), "
        r"and the two are added: give shortcut = \[\{ type = \"conv2d\", out_channels = 16, kernel_size = 1, "
        r"stride = 2, bias = false \}, \{ type = \"batch_norm2d\" \}\]"),
    "identity shortcut, channels changed": (
        f'layers = [{CONV}, {{ type = "residual", layers = [{{ type = "conv2d", out_channels = 4, '
        'kernel_size = 1 }] }]',
        r"layers\.1 \(residual\): the body gives \(N, 4, 28, 28\) but the identity shortcut passes \(N, 8, 28, 28\)"),
    "branch of the wrong size": (
        f'layers = [{CONV}, {{ type = "concat", branches = [[{CONV}], '
        '[{ type = "conv2d", out_channels = 4, kernel_size = 3 }]] }]',
        r"model: layers\.1 \(concat\): branches\.1 gives \(N, 4, 26, 26\) but branches\.0 gives \(N, 8, 28, 28\); "
        r"concatenated on the channels, they must agree in every other dimension: make branches\.1 give "
        r"\(N, C, 28, 28\)"),
    "a block on (N, 784)": (
        'input_shape = [784]\nlayers = [{ type = "residual", layers = [{ type = "relu" }] }]',
        r"model: layers\.0 \(residual\) needs an input of shape \(N, C, H, W\), got \(N, 784\)"),
    "a bad layer inside a body": (
        f'layers = [{CONV}, {{ type = "residual", layers = [{{ type = "conv2d", out_channels = 0, '
        'kernel_size = 1 }] }]',
        r"layers\.1\.body\.0: out_channels must be an integer >= 1, got 0"),
    "a layer inside a branch that does not fit": (
        f'layers = [{CONV}, {{ type = "concat", branches = [[{CONV}], [{{ type = "linear", out_features = 3 }}]] }}]',
        r"layers\.1\.branches\.1\.0 \(linear\) needs an input of shape \(N, features\), got \(N, 8, 28, 28\)"),
}


@pytest.mark.parametrize("case", BAD_BLOCKS)
def test_a_bad_block_is_refused_in_one_line_naming_it(case, tmp_path):
    model, message = BAD_BLOCKS[case]
    path = tmp_path / "bad.toml"
    body = model if model.startswith("input_shape") else f"input_shape = [1, 28, 28]\n{model}"
    path.write_text(f'name = "bad"\n[model]\n{body}\n', encoding="utf-8")
    with pytest.raises(SpecError, match=message) as caught:
        load_spec_file(path)
    assert "\n" not in str(caught.value)


def test_the_command_line_prints_a_bad_block_as_one_error_line(tmp_path, capsys):
    model, message = BAD_BLOCKS["shortcut of the wrong shape"]
    assert main(["describe", "--spec", write_spec(tmp_path, model)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("svt describe: error: ") and "Traceback" not in captured.err
    assert "the body gives (N, 16, 14, 14) but the shortcut gives (N, 8, 28, 28)" in lines[0]


def test_blocks_read_from_toml_round_trip_through_to_dict():
    from scratch_nn.spec import spec_from_dict, to_dict

    for name in ("resnet-mini", "inception-mini", "resnet-deep"):
        spec = load_builtin_spec(name)
        assert spec_from_dict(to_dict(spec), "round trip") == spec


# ---------------------------------------------------------------------------------------------
# Names: torch's, the same on both sides


def test_nested_names_are_torchs_and_the_twins_keys_equal_scratchs():
    for name, expected in (("resnet-mini", ["layers.4.body.0.weight", "layers.6.shortcut.0.weight",
                                            "layers.6.shortcut.1.running_var"]),
                           ("inception-mini", ["layers.4.branches.1.0.weight", "layers.6.branches.3.2.bias"])):
        spec = load_builtin_spec(name)
        model = Sequential(spec.model, np.random.default_rng(0))
        twin = torch_ref.build_model(spec.model)
        assert list(twin.state_dict()) == list(model.state_dict())
        assert [key for key, _ in twin.named_parameters()] == [key for key, _ in model.named_parameters()]
        assert set(expected) <= set(model.state_dict())
        assert [entry.name for entry in spec.model.entries] == [key for key, _ in model.named_layers()] \
            == [key for key, _ in torch_ref.named_layers(twin)]


def test_weight_layers_inside_blocks_are_initialised_and_take_l1():
    spec = load_builtin_spec("resnet-mini")
    model = Sequential(spec.model, np.random.default_rng(0))
    names = [name for name, _ in model.weight_layers()]
    assert names == spec.model.weight_layer_names() and "layers.6.shortcut.0" in names and len(names) == 9
    gains = {entry.name: entry.gain for entry in spec.model.entries}
    # the first activation the signal meets after the layer, past the end of its list: the relu after the add
    assert gains["layers.4.body.3"] == gains["layers.6.shortcut.0"] == pytest.approx(np.sqrt(2))
    assert gains["layers.3"] == 1.0 and gains["layers.12"] == 1.0  # not a weight layer; the output layer


# ---------------------------------------------------------------------------------------------
# Parity: float64 at 1e-10 against torch, finite differences, each block kind


@pytest.mark.parametrize("kind", BLOCKS)
def test_each_block_kind_is_at_float64_parity_with_torch_and_finite_differences(kind):
    model = small_model(BLOCKS[kind])
    x, y = small_batch()
    report = gradient_parity(model, x, y, numerical=True)
    assert report.ok, report.verdict() + "\n" + report.table()
    torch_rows = [row for row in report.rows if not row.name.startswith("fd/")]
    assert max(row.rel_error for row in torch_rows) <= 1e-10
    names = {row.name for row in report.rows}
    block = [name for name, layer in model.named_layers() if layer is model.layers[3]][0]
    assert {f"{block}.output", f"{block}.grad_input"} <= names  # the block's own rows, and its layers'
    inner = [name for name, _ in model.named_layers() if name.startswith(f"{block}.")]
    assert inner and all(f"{name}.output" in names and f"{name}.grad_input" in names for name in inner)
    assert any(name.startswith(f"fd/{block}.") for name in names)  # finite differences inside the block


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec_name", ["resnet-mini", "inception-mini"])
def test_the_builtin_block_nets_are_at_parity_on_real_mnist(spec_name, dtype, mnist):
    spec = load_builtin_spec(spec_name)
    model = Sequential(replace(spec.model, dtype=dtype), np.random.default_rng(1))
    x = as_inputs(mnist.train_images[:24], dtype, shape=spec.model.input_shape)
    report = gradient_parity(model, x, as_labels(mnist.train_labels[:24]))
    assert report.ok, report.verdict() + "\n" + report.table()


def test_a_dropped_shortcut_gradient_is_the_first_break(monkeypatch):
    model = small_model(BLOCKS["identity-shortcut"])
    x, y = small_batch()
    assert gradient_parity(model, x, y).ok
    original = Residual._backward

    def body_only(self, grad_out, cache, input_grad):
        full = original(self, grad_out, cache, input_grad)
        return full - grad_out  # the identity shortcut's share, dropped
    monkeypatch.setattr(Residual, "_backward", body_only)
    report = gradient_parity(model, x, y)
    assert not report.ok and report.first_break.name == "layers.3.grad_input", report.table()


def test_svt_parity_catches_the_dropped_shortcut_gradient(monkeypatch, tmp_path, mnist, capsys):
    layers = ('layers = [{ type = "conv2d", out_channels = 4, kernel_size = 3, stride = 2, padding = 1 }, '
              '{ type = "residual", layers = [{ type = "conv2d", out_channels = 8, kernel_size = 3, stride = 2, '
              'padding = 1 }, { type = "tanh" }], shortcut = [{ type = "conv2d", out_channels = 8, kernel_size = 1, '
              'stride = 2 }] }, { type = "adaptive_avg_pool2d", output_size = 1 }, { type = "flatten" }, '
              '{ type = "linear", out_features = 10 }]')
    path = write_spec(tmp_path, layers)
    argv = ["parity", "--spec", path, "--dtype", "float64", "--steps", "1", "--batch", "16"]
    assert main(argv) == 0
    capsys.readouterr()

    def without_shortcut(self, grad_out, cache, input_grad):
        grad_body = run_backward(self.body, grad_out, input_grad)
        run_backward(self.shortcut, grad_out, input_grad)  # its parameters get their gradients,
        return grad_body  # but its share of dL/dx is dropped
    monkeypatch.setattr(Residual, "_backward", without_shortcut)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "layers.1.grad_input" in out and "BREAK" in out


# ---------------------------------------------------------------------------------------------
# What the commands read off blocks


def test_describe_shows_the_tree_and_says_blocks_have_no_layers_form(capsys):
    assert main(["describe", "--spec", "resnet-mini"]) == 0
    out = capsys.readouterr().out
    assert "\n  layers.6.shortcut.0  conv2d" in out and "\nlayers.6 " in out
    assert "no --layers form; blocks have none: write them in a TOML spec" in out
    model = Sequential(load_builtin_spec("resnet-mini").model, np.random.default_rng(0))
    assert f"total parameters: {model.parameter_count():,} " in out


def test_bench_flops_count_the_convolutions_inside_blocks():
    spec = load_builtin_spec("resnet-mini").model
    # stem 16@3x3 on 28x28; block 1 two 16->16 3x3 on 14x14; block 2 16->64 3x3 and 64->64 3x3 on 7x7,
    # the 1x1 16->64 shortcut on 7x7; block 3 two 64->64 3x3 on 7x7; linear 64->10: 2 * multiply-adds
    expected = 2 * (16 * 784 * 9 + 2 * 16 * 196 * 16 * 9 + 64 * 49 * 16 * 9 + 64 * 49 * 64 * 9 + 64 * 49 * 16
                    + 2 * 64 * 49 * 64 * 9 + 640)
    assert inference_flops(spec, 1) == expected


def test_sanity_flags_plain_deep_as_vanishing_and_passes_resnet_deep(mnist):
    x = as_inputs(mnist.train_images[:64], "float32", shape=(1, 28, 28))
    y = as_labels(mnist.train_labels[:64])
    verdicts = {}
    for name in ("plain-deep", "resnet-deep"):
        spec = load_builtin_spec(name)
        verdicts[name] = check_gradient_health(Sequential(spec.model, np.random.default_rng(0)), x, y)
    plain, residual = verdicts["plain-deep"], verdicts["resnet-deep"]
    assert not plain.passed and "Vanishing gradients" in plain.message and plain.values["gradient_ratio"] < 1e-3
    assert residual.passed and residual.values["gradient_ratio"] > 1e-2
    assert len(load_builtin_spec("plain-deep").model.weight_layer_names()) == 20
    assert len(load_builtin_spec("resnet-deep").model.weight_layer_names()) == 20
    inner = [row["layer"] for row in residual.values["layers"] if row.get("weight")]
    assert "layers.2.body.1" in inner  # gradient norms per layer, inside the blocks


def test_torch_side_keeps_the_two_paths_input_gradients_apart():
    """Each layer's recorded input gradient is its own share: for a residual block's first body
    layer, not the sum over body and shortcut that the block's input tensor collects."""
    model = small_model(BLOCKS["identity-shortcut"])
    x, y = small_batch()
    twin = torch_ref.build_model(model.spec)
    torch_ref.load_from_numpy(twin, model.state_dict())
    seen = torch_ref.forward_backward(twin, torch.nn.CrossEntropyLoss(), x, y)
    shortcut_share = seen.grad_inputs["layers.3"] - seen.grad_inputs["layers.3.body.0"]
    np.testing.assert_allclose(shortcut_share, seen.grad_inputs["layers.4"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("spec_name, accuracy, seconds", [("resnet-mini", "99.4%", "360 s"),
                                                          ("inception-mini", "99.0%", None),
                                                          ("lenet5-relu", "99.0%", "180 s")])
def test_svt_run_judges_a_block_spec_by_its_own_targets(spec_name, accuracy, seconds):
    """resnet-mini: >= 99.4% on both sides within 6 minutes; inception-mini: >= 99.0%, no time target;
    other CNNs keep LeNet-5's (99.0%, 180 s)."""
    from benchmark.commands.run import targets
    from benchmark.report.record import RunRecord

    spec = load_builtin_spec(spec_name)
    labels = np.arange(1000) % 10
    predictions = {"scratch": labels.copy(), "torch": labels.copy()}
    predictions["torch"][:5] = (labels[:5] + 1) % 10  # torch: 99.5%, scratch 100%
    record = RunRecord(spec=spec, test_labels=labels, predictions=predictions)
    rows = {row["target"]: row["holds"] for row in targets(record, spec, full_data=True)}
    assert rows[f"scratch test accuracy >= {accuracy}"] and rows[f"torch test accuracy >= {accuracy}"]
    timed = [target for target in rows if target.startswith("whole run")]
    assert timed == ([] if seconds is None else [f"whole run <= {seconds}"])
