"""The command line as a user meets it: exit statuses, one-line errors, no tracebacks."""
from __future__ import annotations

import subprocess
import sys

import pytest

MODEL_COMMANDS = ["describe", "run", "parity", "sanity", "bench"]


def svt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("layers, message", [
    ("256:foo,10", "unknown activation 'foo'; allowed: identity, relu, leaky_relu, sigmoid, tanh, elu, gelu, softplus"),
    ("0:relu,10", "units must be a positive integer, got 0"),
    ("256:relu,7", "output size 7 does not fit MNIST, which has 10 classes"),
])
def test_every_model_command_rejects_a_bad_spec_the_same_way(command, layers, message):
    result = svt(command, "--layers", layers)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_unknown_spec_file_is_a_clear_error(command, tmp_path):
    bad = tmp_path / "typo.toml"
    bad.write_text("[model]\n[[model.layers]]\nunits = 16\nactivaton = 'relu'\n")
    result = svt(command, "--spec", str(bad))
    assert result.returncode == 2
    assert f"{bad}: model.layers[0]: unknown key 'activaton'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", MODEL_COMMANDS + ["data", "specs"])
def test_help_on_every_subcommand(command):
    result = svt(command, "--help")
    assert result.returncode == 0
    assert f"usage: svt {command}" in result.stdout


def test_describe_prints_the_table_and_total():
    result = svt("describe", "--layers", "64:tanh,32:gelu,10", "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    assert "layers.0  Linear  (N, 64)" in result.stdout
    assert "layers.3  GELU    (N, 32)" in result.stdout
    # 784*64+64 + 64*32+32 + 32*10+10 = 50,240 + 2,080 + 330
    assert "total parameters: 52,650   dtype: float64" in result.stdout


@pytest.mark.parametrize("args, shown, hidden", [
    ([], "training: sgd lr=0.1 momentum=0.9 dampening=0 nesterov=False weight_decay=0", ("betas", "alpha", "gamma")),
    (["--optimizer", "adam", "--lr", "0.001"], "training: adam lr=0.001 betas=(0.9, 0.999) eps=1e-08 weight_decay=0",
     ("momentum", "nesterov", "alpha")),
])
def test_describe_prints_the_training_settings_the_optimiser_reads(args, shown, hidden):
    result = svt("describe", *args)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("training: "))
    assert line.startswith(shown)
    assert not any(f" {name}=" in line for name in hidden)


def test_specs_lists_the_builtins():
    result = svt("specs")
    assert result.returncode == 0
    for name in ("mnist-mlp", "deep-sigmoid", "deep-relu-he", "dropout-bn", "adam"):
        assert name in result.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--spec", "dropout-bn", "--batch-size", "1"], "batch-norm needs at least 2 examples per batch"),
    (["sanity", "--spec", "dropout-bn", "--batch-size", "1"], "batch-norm needs at least 2 examples per batch"),
    (["run", "--name", "a/b"], "--name 'a/b' must be a plain folder name"),
    (["run", "--out", "/proc/no-such-folder"], "--out '/proc/no-such-folder' cannot be created"),
    (["parity", "--dump", "/proc/x.npz"], "--dump '/proc/x.npz': no file can be written in '/proc'"),
    (["parity", "--dump", "/no-such-folder/x.npz"], "the folder '/no-such-folder' does not exist"),
    (["sanity", "--json", "/proc/x.json"], "--json '/proc/x.json': no file can be written in '/proc'"),
    (["run", "--check-every", "0"], "--check-every must be a positive integer, got 0"),
    (["run", "--lr", "nan"], "lr must be a finite number"),
])
def test_output_paths_and_settings_are_refused_before_any_work(args, message, tmp_path):
    result = svt(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_given_as_an_output_file_is_refused(tmp_path):
    result = svt("parity", "--dump", str(tmp_path))
    assert result.returncode == 2
    assert f"--dump '{tmp_path}' is a folder" in result.stderr


def test_a_layer_without_units_is_a_clear_error(tmp_path):
    path = tmp_path / "no_units.toml"
    path.write_text("[model]\n[[model.layers]]\nactivation = 'relu'\n")
    result = svt("describe", "--spec", str(path))
    assert result.returncode == 2
    assert f"{path}: model.layers[0]: missing key 'units'" in result.stderr
