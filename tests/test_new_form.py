"""A spec in the list form with everything the form allows (tests/specs/new-form.toml: image input,
flatten, a layer's own init, batch-norm, leaky_relu with its slope, dropout, silu) through the
subcommands, end to end on real MNIST: describe, parity (float32 and float64) and run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.study.backends import thread_environment
from scratch_nn.model import Sequential
from scratch_nn.spec import load_spec

SPEC = str(Path(__file__).parent / "specs" / "new-form.toml")


def svt(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`svt ...` on one thread, as test_run's (a busy machine slows two threads' pools most)."""
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **thread_environment(1)})


def test_the_spec_builds_its_list_as_written():
    spec = load_spec(SPEC)
    model = Sequential(spec.model, np.random.default_rng(0))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Flatten", "Linear", "BatchNorm1d", "LeakyReLU", "Dropout", "Linear", "SiLU", "Linear"]
    assert model.layers[3].negative_slope == 0.2 and model.layers[4].p == 0.25
    assert [name for name, _ in model.weight_layers()] == ["layers.1", "layers.5", "layers.7"]
    bound = np.sqrt(6 / (784 + 32))  # layers.1 has its own init, xavier_uniform (gain 1)
    assert 0.95 * bound < np.abs(model.layers[1].params["weight"]).max() <= bound
    x = np.zeros((3, 1, 28, 28), np.float32)
    assert model.forward(x).shape == (3, 10)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 1, 28, 28\)"):
        model.forward(np.zeros((3, 784), np.float32))


def test_describe_shows_one_row_per_entry():
    result = svt("describe", "--spec", SPEC)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:2] for line in result.stdout.splitlines() if line.startswith("layers.")]
    assert rows == [[f"layers.{index}", kind] for index, kind in enumerate(
        ["flatten", "linear", "batch_norm1d", "leaky_relu", "dropout", "linear", "silu", "linear"])]
    assert "layers.3  leaky_relu    (N, 32)       negative_slope=0.2       0" in result.stdout
    assert "layers.1  linear        (N, 32)       out_features=32     25,120  xavier_uniform" in result.stdout
    assert "input: (N, 1, 28, 28)" in result.stdout and "total parameters: 25,882" in result.stdout
    assert "no --layers form" in result.stdout


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parity_passes_on_real_mnist(dtype, mnist):
    result = svt("parity", "--spec", SPEC, "--dtype", dtype, "--steps", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "layers.2.running_var" in result.stdout and "layers.4" in result.stdout  # batch-norm and dropout rows
    assert "fd/layers.1.weight.grad" in result.stdout and "BREAK" not in result.stdout


def test_run_trains_both_sides_and_names_the_layers_as_the_list(tmp_path, mnist):
    result = svt("run", "--spec", SPEC, "--train-limit", "320", "--test-limit", "200", "--check-every", "5",
                 "--quiet", "--out", str(tmp_path), "--name", "new-form")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "new-form"
    steps = pd.read_csv(folder / "steps.csv")
    assert steps.groupby("side")["step"].max().tolist() == [10, 10] and steps["loss"].notna().all()
    layers = set(pd.read_csv(folder / "layers.csv")["parameter"])
    assert {"layers.1.weight", "layers.2.weight", "layers.5.bias", "layers.7.weight"} <= layers
    units = pd.read_csv(folder / "units.csv")
    assert set(units["layer"]) <= {"layers.3", "layers.6"}  # the activation layers
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["spec"]["model"]["input_shape"] == [1, 28, 28]
    assert summary["spec"]["model"]["layers"][1] == {"type": "linear", "out_features": 32, "bias": True,
                                                      "init": "xavier_uniform"}
    assert summary["parity_verdict"].startswith("gradients agree at every check")
    assert (folder / "first_layer.png").exists()
