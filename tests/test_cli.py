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


def test_specs_lists_the_builtins():
    result = svt("specs")
    assert result.returncode == 0
    for name in ("mnist-mlp", "deep-sigmoid", "deep-relu-he", "dropout-bn", "adam"):
        assert name in result.stdout
