"""`svt sanity`: each check passes on a case built to pass and fails on a case built to fail.

What these tests prove:
- each of the seven checks (benchmark.sanity.checks, .training, .health) is a function returning a
  CheckResult, and it tells a healthy net from a broken one: huge output weights (1), a broken
  backward (2, 3), a symmetric zero init and a diverging learning rate (4), zeroed inputs (5), a
  tiny and a huge learning rate (6), vanishing, exploding, dead and saturated (7);
- the built-in deep-sigmoid spec fails gradient health and its fixed twins pass it;
- the command exits 0 on the default spec (and writes --json), 1 with --lr 10000 (clean lines, no
  traceback, no NumPy warnings), 2 on bad input.
The nets are small (784-32-10 and the like) on real MNIST slices, to keep the file fast.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from benchmark.data.mnist import as_inputs, as_labels
from benchmark.sanity import checks, health, training
from benchmark.study.backends import thread_environment
from scratch_nn.activations import ReLU
from scratch_nn.model import MLP
from scratch_nn.spec import ModelSpec, TrainSpec, load_spec
from scratch_nn.spec.notation import parse_layers

TRAIN = TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=64)


@pytest.fixture
def seed():
    return 7


@pytest.fixture(scope="module")
def data(mnist):
    """float64 training slice (3000 images) and held-out slice (500 images) of real MNIST."""
    x, y = as_inputs(mnist.train_images[:3000], "float64"), as_labels(mnist.train_labels[:3000])
    x_val, y_val = as_inputs(mnist.train_images[-500:], "float64"), as_labels(mnist.train_labels[-500:])
    return x, y, x_val, y_val


def small_model(seed: int, layers: str = "32:relu", **model) -> MLP:
    """784-<layers>-10 in float64, e.g. layers "32:relu" or "16:sigmoid*8" (8 such layers)."""
    units, _, rest = layers.partition(":")
    activation, _, count = rest.partition("*")
    layers = parse_layers(f"{int(count or 1)}x{units}:{activation},10")
    spec = ModelSpec(layers=layers, **{"init": "kaiming_uniform", "dtype": "float64", **model})
    return MLP(spec, np.random.default_rng(seed))


class BrokenReLU(ReLU):
    """A ReLU whose backward forgets the local gradient [x > 0] (a classic bug)."""

    def _gradient(self, grad_out, x):
        return grad_out


def broken_model(seed: int) -> MLP:
    model = small_model(seed)
    model.layers[1] = BrokenReLU()
    return model


# ---------------------------------------------------------------------------------------------
# 1-3: before training


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_initial_loss_passes_for_a_sensible_init(loss, data, seed):
    x, y, *_ = data
    result = checks.check_initial_loss(small_model(seed, loss=loss), x[:512], y[:512])
    expected = math.log(10) if loss == "cross_entropy" else 0.1
    assert result.passed and result.values["expected"] == pytest.approx(expected)
    assert abs(result.values["loss"] - expected) <= result.values["tolerance"]


def test_initial_loss_fails_for_huge_output_weights(data, seed):
    x, y, *_ = data
    model = small_model(seed)
    model.layers[-1].params["weight"] *= 100
    result = checks.check_initial_loss(model, x[:512], y[:512])
    assert not result.passed and result.values["loss"] > math.log(10) + 0.5
    assert "confidently wrong" in result.message and "init" in result.message


def test_gradient_check_passes_and_catches_a_broken_backward(data, seed):
    x, y, *_ = data
    good = checks.check_gradients(small_model(seed), x[:16], y[:16])
    assert good.passed and good.values["worst_rel_error"] <= 1e-6
    bad = checks.check_gradients(broken_model(seed), x[:16], y[:16])
    assert not bad.passed and bad.values["worst_rel_error"] > 1e-6
    assert "layers.1 (BrokenReLU)" in bad.message  # the layer where the error enters


def test_gradient_check_holds_dropout_masks_fixed(data, seed):
    x, y, *_ = data
    spec = ModelSpec(layers=parse_layers("32:relu+bn+dropout0.5,10"), dtype="float64")
    result = checks.check_gradients(MLP(spec, np.random.default_rng(seed)), x[:16], y[:16])
    assert result.passed, result.message  # with a fresh mask per evaluation it would be far off


def test_parity_passes_and_catches_a_broken_backward(data, seed):
    x, y, *_ = data
    assert checks.check_parity(small_model(seed), x[:64], y[:64]).passed
    bad = checks.check_parity(broken_model(seed), x[:64], y[:64])
    assert not bad.passed and "BREAK at layers.1.grad_input" in bad.message


# ---------------------------------------------------------------------------------------------
# 4-6: training


def test_overfit_passes_for_a_healthy_net(data, seed):
    x, y, *_ = data
    result = training.check_overfit(small_model(seed), TRAIN, x[:32], y[:32])
    assert result.passed and result.values["accuracy"] == 1.0 and result.values["steps"] <= 200


def test_overfit_retries_at_a_tenth_of_an_overshooting_learning_rate(data, seed):
    x, y, *_ = data
    result = training.check_overfit(small_model(seed), replace(TRAIN, lr=5.0), x[:32], y[:32])
    assert result.passed and result.values["lr"] == 0.5 and "at lr 0.5" in result.measured
    assert result.note.startswith("at the spec's lr 5 the loss jumped")  # shown under the PASS line


def test_overfit_fails_with_symmetric_zero_init(data, seed):
    x, y, *_ = data
    result = training.check_overfit(small_model(seed, init="zeros"), TRAIN, x[:32], y[:32])
    assert not result.passed and result.values["steps"] == 200 and result.values["accuracy"] < 0.5
    assert "init zeros" in result.message


def test_overfit_fails_cleanly_when_the_loss_overshoots(data, seed):
    x, y, *_ = data
    result = training.check_overfit(small_model(seed), replace(TRAIN, lr=1e4), x[:32], y[:32])
    assert not result.passed and result.values["lr"] == 1e3  # retried once at lr / 10
    assert "at the spec's lr 10000 the loss" in result.message and "try --lr 100 and smaller" in result.message


def test_uses_input_passes_on_real_images_and_fails_on_zeros(data, seed):
    x, y, x_val, y_val = data
    model = small_model(seed)
    real = training.check_uses_input(model, TRAIN, x[:2048], y[:2048], x_val, y_val, steps=50)
    assert real.passed and real.values["accuracy_real_inputs"] > 0.7
    zeros = training.check_uses_input(model, TRAIN, np.zeros_like(x[:2048]), y[:2048], np.zeros_like(x_val), y_val,
                                    steps=50)
    assert not zeros.passed and zeros.values["accuracy_real_inputs"] < 0.2
    assert "does not use its input" in zeros.message


@pytest.mark.parametrize("dtype, lr, passed, message", [
    ("float64", 0.1, True, "falls"),
    ("float64", 1e-6, False, "fell by only"),
    ("float64", 1e4, False, "the loss shot up to"),  # in float64 it overshoots and comes back down
    ("float32", 1e30, False, "the loss became nan at step 2: the updates overflow. Lower the learning rate"),
])
def test_loss_decreases(dtype, lr, passed, message, data, seed, recwarn):
    x, y, *_ = data
    batches = list(training.cycle_batches(x.astype(dtype), y, 64, 40))
    result = training.check_loss_decreases(small_model(seed, dtype=dtype), replace(TRAIN, lr=lr), batches)
    assert result.passed is passed and message in result.message
    assert not [warning for warning in recwarn if issubclass(warning.category, RuntimeWarning)]


# ---------------------------------------------------------------------------------------------
# 7: gradient health


@pytest.mark.parametrize("name, passed", [("deep-sigmoid", False), ("deep-relu-he", True), ("deep-sigmoid-bn", True),
                                          ("mnist-mlp", True)])
def test_gradient_health_of_the_builtin_demonstration(name, passed, data):
    spec = load_spec(name)
    x, y, *_ = data
    model = MLP(spec.model, np.random.default_rng(spec.train.seed))
    result = health.check_gradient_health(model, x[:256].astype(spec.model.dtype), y[:256])
    assert result.passed is passed
    assert passed or ("Vanishing gradients" in result.message and result.values["gradient_ratio"] < 1e-3)


def scale_layer(model: MLP, index: int, factor: float, bias: float | None = None) -> MLP:
    model.layers[index].params["weight"] *= factor
    if bias is not None:
        model.layers[index].params["bias"][...] = bias
    return model


@pytest.mark.parametrize("make, problem", [
    (lambda seed: small_model(seed, layers="32:relu*3"), None),
    (lambda seed: small_model(seed, layers="32:tanh*3", init="xavier_uniform"), None),
    (lambda seed: small_model(seed, layers="32:sigmoid*8", init="torch_default"), "Vanishing gradients"),
    (lambda seed: scale_layer(small_model(seed, layers="32:relu*3"), 0, 1e-5), "Exploding gradients"),
    (lambda seed: scale_layer(small_model(seed), 0, np.inf), "Non-finite gradients"),
    (lambda seed: scale_layer(small_model(seed, layers="32:relu*2"), 2, 1.0, bias=-100.0), "Dead ReLUs: 100%"),
    (lambda seed: scale_layer(small_model(seed, layers="32:sigmoid"), 0, 100.0), "Saturated units"),
    (lambda seed: small_model(seed, layers="32:tanh", init="zeros"), "No gradient: the weights of layers.0"),
], ids=["relu-he", "tanh-xavier", "deep-sigmoid", "tiny-first-layer", "non-finite", "dead-relu", "saturated",
        "zero-init"])
def test_gradient_health(make, problem, data, seed, recwarn):
    x, y, *_ = data
    result = health.check_gradient_health(make(seed), x[:256], y[:256])
    assert result.passed is (problem is None)
    assert problem is None or problem in result.message
    assert not [warning for warning in recwarn if issubclass(warning.category, RuntimeWarning)]


# ---------------------------------------------------------------------------------------------
# The command


def svt_sanity(*args: str) -> subprocess.CompletedProcess:
    # One BLAS thread: the matrices are small, and a thread pool only adds contention on shared cores.
    env = {**os.environ, **thread_environment(1)}
    return subprocess.run([sys.executable, "-m", "benchmark", "sanity", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_default_spec_passes_and_writes_json(tmp_path, mnist):
    result = svt_sanity("--json", str(tmp_path / "sanity.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS") == 8 and "verdict: PASS" in result.stdout  # 7 checks + the verdict
    # --layers reads the notation printed here
    assert result.stdout.startswith("sanity: spec mnist-mlp (--layers 256:relu,128:relu,10; float32,")
    document = json.loads((tmp_path / "sanity.json").read_text())
    assert document["passed"] is True and [check["name"] for check in document["checks"]] == [
        "initial loss", "gradient check", "parity with torch", "overfit one batch", "uses its input",
        "loss goes down", "gradient health"]
    assert os.listdir(tmp_path) == ["sanity.json"]  # no temporary file left behind
    assert set(document["checks"][0]) == {"name", "passed", "measured", "expected", "message", "values", "note"}


@pytest.mark.parametrize("name", ["lenet5", "lenet5-relu", "cnn-bn"])
def test_every_builtin_cnn_spec_passes_all_seven_checks(name, mnist):
    """The CNNs a user meets first: a sensible first loss (their output layers start at torch's
    default scale), finite differences explained where they straddle a kink, parity with torch in
    float32 (cnn-bn's BatchNorm2d over 50k pixels per channel once broke it), and they learn."""
    result = svt_sanity("--spec", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS - all 7 checks pass" in result.stdout


def test_huge_learning_rate_fails_cleanly(mnist):
    result = svt_sanity("--lr", "10000")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "verdict: FAIL" in result.stdout and "lower the learning rate" in result.stdout
    assert result.stderr == ""  # no traceback, no RuntimeWarning


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "lr must be a finite number in (0, inf), got -1.0"),
    (["--spec", "no-such-spec"], "unknown built-in spec 'no-such-spec'"),
    (["--json", "/no/such/folder/out.json"],
     "--json '/no/such/folder/out.json': the folder '/no/such/folder' does not exist"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = svt_sanity(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# 7 on a CNN: unit statistics per channel, vanishing through sigmoid convolutions


def cnn_model(seed: int, activation: str, depth: int, init: str) -> MLP:
    """depth x (conv 4@3x3 pad 1 - activation), flatten, linear 10, float64, on (N, 1, 28, 28)."""
    from scratch_nn.spec import spec_from_dict

    block = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": activation}]
    spec = spec_from_dict({"model": {"input_shape": [1, 28, 28], "init": init, "dtype": "float64",
                                     "layers": block * depth + [{"type": "flatten"},
                                                                {"type": "linear", "out_features": 10}]}}, "test")
    return MLP(spec.model, np.random.default_rng(seed))


def test_relu_dead_fraction_counts_channels_in_an_image_output():
    from benchmark.sides.probe import unit_stats

    output = np.zeros((3, 4, 5, 5))
    output[2, 1, 4, 4] = 1.0  # channel 1 fires once, at one position of one image: alive
    output[:, 3] = 0.5
    assert unit_stats("relu", output)["dead_fraction"] == 0.5  # channels 0 and 2 of 4


@pytest.mark.parametrize("activation, depth, init, problem", [
    ("sigmoid", 6, "torch_default", "Vanishing gradients"), ("relu", 3, "kaiming_uniform", None)])
def test_gradient_health_of_a_cnn(activation, depth, init, problem, data, seed):
    x, y, *_ = data
    images = x[:128].reshape(-1, 1, 28, 28)
    result = health.check_gradient_health(cnn_model(seed, activation, depth, init), images, y[:128])
    assert result.passed is (problem is None), result.message
    assert problem is None or (problem in result.message and result.values["gradient_ratio"] < 1e-3)
