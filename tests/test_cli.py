"""The command line as a user meets it: exit statuses, one-line errors, no tracebacks."""
from __future__ import annotations

import os
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
    ("256:relu,7", "layers.2 (linear) gives (N, 7), which does not fit MNIST's 10 classes"),
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
    bad.write_text("[model]\nlayers = [{ type = 'linear', out_features = 16 }, { type = 'relu', inplace = true }]\n")
    result = svt(command, "--spec", str(bad))
    assert result.returncode == 2
    assert f"{bad}: [model]: layers.1: unknown key 'inplace' for a relu layer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", MODEL_COMMANDS + ["data", "specs"])
def test_help_on_every_subcommand(command):
    result = svt(command, "--help")
    assert result.returncode == 0
    assert f"usage: svt {command}" in result.stdout


def test_describe_prints_the_table_and_total():
    result = svt("describe", "--layers", "64:tanh,32:gelu,10", "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    assert "layers.0  linear  (N, 64)       out_features=64  50,240  kaiming_uniform" in result.stdout
    assert "layers.3  gelu    (N, 32)                             0" in result.stdout
    assert "layers.4  linear  (N, 10)       out_features=10     330  kaiming_uniform" in result.stdout
    # 784*64+64 + 64*32+32 + 32*10+10 = 50,240 + 2,080 + 330
    assert "total parameters: 52,650   dtype: float64" in result.stdout


def test_describe_shows_a_cnn_layer_by_layer_with_image_shapes():
    result = svt("describe", "--spec", "lenet5-relu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "layers.0   conv2d      (N, 6, 28, 28)   out_channels=6 kernel_size=5 padding=2     156" in result.stdout
    assert any(line.startswith("layers.5   max_pool2d  (N, 16, 5, 5)") for line in lines)
    assert any(line.startswith("layers.6   flatten     (N, 400)") for line in lines)
    # 6*25+6 + 16*6*25+16 + 400*120+120 + 120*84+84 + 84*10+10
    assert "total parameters: 61,706   dtype: float32   input: (N, 1, 28, 28)" in result.stdout


def test_a_cnn_shape_error_is_one_line_on_stderr(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[model]\ninput_shape = [1, 28, 28]\nlayers = [{ type = "conv2d", out_channels = 4, '
                    'kernel_size = 3, groups = 2 }, { type = "flatten" }, { type = "linear", out_features = 10 }]\n')
    result = svt("describe", "--spec", str(spec))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "layers.0 (conv2d): groups=2 must divide in_channels=1" in result.stderr


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


@pytest.mark.parametrize("columns", [100, 72])
def test_specs_fits_the_terminal_and_wraps_without_losing_a_word(columns):
    from scratch_nn.spec import builtin_spec_names, load_builtin_spec

    result = subprocess.run([sys.executable, "-m", "benchmark", "specs"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": str(columns)})
    assert max(len(line) for line in result.stdout.splitlines()) <= columns, result.stdout
    lines = result.stdout.splitlines()
    column = lines[0].index("what it shows")
    words = " ".join(line[column:] for line in lines[2:]).split()  # the last column, its wrapped lines joined
    for name in builtin_spec_names():  # each description still there, word for word, wrapped
        description = load_builtin_spec(name).description.split()
        assert any(words[i:i + len(description)] == description for i in range(len(words))), name


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


def test_an_old_form_spec_is_a_clear_error_showing_the_new_form(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[model]\n[[model.layers]]\nunits = 16\nactivation = 'tanh'\n")
    result = svt("describe", "--spec", str(path))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert (f"{path}: [model]: layers.0: {{ units = ... }} is the old form of a hidden block; one entry is now "
            'one layer: write it as { type = "linear", out_features = 16 }, { type = "tanh" }') in result.stderr


def test_a_layer_without_out_features_is_a_clear_error(tmp_path):
    path = tmp_path / "no_units.toml"
    path.write_text("[model]\n[[model.layers]]\ntype = 'linear'\n")
    result = svt("describe", "--spec", str(path))
    assert result.returncode == 2
    assert f"{path}: [model]: layers.0: a linear layer needs out_features" in result.stderr


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_an_abbreviated_option_is_refused_not_guessed(command):
    """`--epoch 1` is a typo: argparse's prefix matching would silently take it for `--epochs 1`."""
    result = svt(command, "--epoch", "1")
    assert result.returncode == 2
    assert f"svt {command}: error: unrecognized arguments: --epoch 1 (did you mean --epochs?)" in result.stderr


@pytest.mark.parametrize("command", MODEL_COMMANDS + ["data", "specs"])
def test_no_subcommand_takes_abbreviations(command):
    from benchmark.commands.cli import build_parser

    parser = build_parser()
    assert parser.allow_abbrev is False and parser.subcommands[command].allow_abbrev is False


@pytest.mark.parametrize("args, message", [
    (["run", "--batch-size", "100000"],
     "--batch-size 100000 is larger than the 60000 training images it draws from; the largest allowed is 60000"),
    (["run", "--train-limit", "500", "--batch-size", "501"],
     "--batch-size 501 is larger than the 500 training images it draws from (--train-limit); "
     "the largest allowed is 500"),
    (["run", "--train-limit", "60001"], "--train-limit 60001 is larger than the 60000 MNIST training images; "
                                        "the largest allowed is 60000"),
    (["run", "--test-limit", "10001"], "--test-limit 10001 is larger than the 10000 MNIST test images; "
                                       "the largest allowed is 10000"),
    (["run", "--test-limit", "0"], "--test-limit must be a positive integer, got 0"),
    (["parity", "--batch", "60001", "--steps", "1"], "--batch 60001 is larger than the 60000 MNIST training images; "
                                                     "the largest allowed is 60000"),
    (["parity", "--batch", "7000"], "--batch 7000 is larger than 1/10 of the 60000 MNIST training images "
                                    "(--steps 10: distinct batches); the largest allowed is 6000"),
    (["sanity", "--batch-size", "2049"], "--batch-size 2049 is larger than the 2048 training images check 5 "
                                         "(uses its input) trains on; the largest allowed is 2048"),
    (["bench", "--batch-size", "12001"], "--batch-size 12001 is larger than the 12000 images a memory run trains on; "
                                         "the largest allowed is 12000"),
])
def test_a_batch_larger_than_its_data_is_refused_before_any_work(args, message):
    result = svt(*args, timeout=30)  # before any work: no data loaded, nothing trained
    assert result.returncode == 2
    assert result.stderr == f"svt {args[0]}: error: {message}\n"
    assert result.stdout == ""


def test_a_spec_batch_size_larger_than_the_data_is_named_as_the_spec_s(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("[model]\nlayers = [{ type = 'linear', out_features = 10 }]\n[train]\nbatch_size = 70000\n")
    result = svt("run", "--spec", str(path), timeout=30)
    assert result.returncode == 2
    assert "the spec's batch_size 70000 is larger than the 60000 training images" in result.stderr
