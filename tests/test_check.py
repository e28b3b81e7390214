"""`svt check`: planted mistakes in a learner's own network, each found and said in words
(benchmark/check). The model is tests/check_models/planted.py with BUG (and its shape) replaced;
every check runs it in its own process, as `svt check` does, on real MNIST."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.check.engine import CheckOptions, check
from benchmark.check.learner import LearnerProcess, TheirError
from benchmark.core.errors import UserError
from benchmark.study.backends import thread_environment

PLANTED = Path(__file__).parent / "check_models" / "planted.py"
ONE_THREAD = thread_environment(1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """torch and NumPy's OpenBLAS on one thread here, as in the learner's processes and svt's below:
    the checks' tensors are small, and on a busy machine threads cost more than they give (the same
    figures either way: no assertion depends on it)."""
    import torch

    from scratch_nn.blas import openblas_function

    set_blas, get_blas = openblas_function("openblas_set_num_threads"), openblas_function("openblas_get_num_threads")
    torch_threads, blas_threads = torch.get_num_threads(), get_blas() if get_blas else None
    torch.set_num_threads(1)
    if set_blas:
        set_blas(1)
    yield
    torch.set_num_threads(torch_threads)
    if set_blas and blas_threads:
        set_blas(blas_threads)


def planted(folder: Path, name: str = "model.py", text: str = "", **settings) -> Path:
    """A copy of the planted model with its settings (BUG="...", HIDDEN=[16, 16], ...) replaced."""
    source = PLANTED.read_text()
    for key, value in settings.items():
        shown = value if isinstance(value, str) and value.startswith("np.") else repr(value)
        source, count = re.subn(rf"^{key} = .*$", f"{key} = {shown}", source, count=1, flags=re.M)
        assert count == 1, key
    path = folder / name
    path.write_text(source + text)
    return path


def checked(path: Path, **options):
    with LearnerProcess(path, timeout=60, threads=1) as model:
        return check(model, CheckOptions(batch=32, **options), path.name)


def svt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", "check", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ONE_THREAD})


@pytest.mark.parametrize("settings", [{}, {"HIDDEN": [16, 16]}, {"OUTPUT": "sigmoid"}])
def test_a_correct_network_agrees_with_its_twin(tmp_path, settings):
    report = checked(planted(tmp_path, **settings))
    assert report.ok, report.table() + "\n" + report.verdict()
    assert not report.findings
    names = [row.name for row in report.rows]
    assert {"loss", "output", "W1.grad", "b1.grad", "fd/W1.grad", "2nd call/W1.grad", "step 1/W1"} <= set(names)


@pytest.mark.parametrize("bug, words", [
    ("sum_over_batch", r"W1, b1, W2, b2: each gradient is the right one times N = 32: summed over the batch "
                       r"where the loss averages"),
    ("divided_twice", r"the right one times 1/N = 1/32: divided by the batch size where the loss sums"),
    ("missing_half", r"times 2: a missing ½"),
    ("extra_half", r"times 0.5: an extra ½"),
    ("wrong_sign", r"times -1: the wrong sign"),
    ("bias_scalar", r"b1's gradient is a scalar \(shape \(\)\) but b1 is \(16,\): summed over every axis"),
    ("transposed_shape", r"W1's gradient has shape \(16, 784\), W1 has \(784, 16\): transposed"),
    ("accumulate", r"gradients accumulate from call to call: the second call's are the first call's plus"),
    ("mutate_x", r"loss_and_grads changed the x it was given"),
    ("no_relu_backward", r"W2, b2 right; W1, b1 wrong: look at the backward through the relu \(layers.1\) "
                         r"between them"),
    ("bias_axis_1", r"b2's gradient has shape \(32,\), one number per example \(the batch has 32\), but b2 is "
                    r"\(10,\): summed over the wrong axis"),
    ("softmax_unshifted", r"your loss is nan \(instead of [\d.]+\) when every output score is raised by 1000 "
                          r"\(b2 \+ 1000\), .*exp overflows; subtract each row's largest score"),
    ("double_step", r"your step\(grads, lr\) moves W\d by -lr \* grad times 2"),
])
def test_a_planted_mistake_is_said_in_words(tmp_path, bug, words):
    settings = {"OUTPUT": "sigmoid"} if bug in ("missing_half", "extra_half") else {}
    report = checked(planted(tmp_path, BUG=bug, **settings))
    assert not report.ok
    assert any(re.search(words, finding) for finding in report.findings), report.findings


def test_a_transposed_square_gradient_is_found_and_the_square_layout_decided_by_a_probe(tmp_path):
    report = checked(planted(tmp_path, BUG="transposed_square", HIDDEN=[16, 16]))
    square = next(row for row in report.mapping if row.theirs == "W2")
    assert square.transposed is True and square.how == "probe through your loss"
    assert any("W2's gradient is the right one transposed (a square layer" in f for f in report.findings), \
        report.findings
    assert len(report.findings) == 2 and "(fd/W2.grad)" in report.findings[1]  # W1, b1, W3, b3 and b2 are right


@pytest.mark.parametrize("dtype", ["np.float64", "np.float32"])
def test_a_step_with_momentum_is_judged_against_torchs_sgd_with_that_momentum(tmp_path, dtype):
    report = checked(planted(tmp_path, MOMENTUM=0.9, DTYPE=dtype), steps=3)
    assert report.ok, report.table() + "\n" + "\n".join(report.findings)
    assert {"step 1/W1", "step 2/W1 (momentum 0.9)", "step 3/b2 (momentum 0.9)"} <= {row.name for row in report.rows}


def test_a_wrong_step_with_momentum_is_still_wrong(tmp_path):
    report = checked(planted(tmp_path, MOMENTUM=0.9, BUG="double_step"), steps=2)
    assert not report.ok and "your step(grads, lr) moves W1 by -lr * grad times 2" in report.findings[0]


def test_softmax_without_the_max_shift_that_asserts_a_finite_loss_is_said_in_words_too(tmp_path):
    text = ("\n_plain = loss_and_grads\n\n\ndef loss_and_grads(x, y):\n    loss, grads = _plain(x, y)\n"
            "    assert np.isfinite(loss), 'the loss is not finite'\n    return loss, grads\n")
    report = checked(planted(tmp_path, BUG="softmax_unshifted", text=text))
    assert report.findings[0].startswith("your loss_and_grads raises AssertionError: the loss is not finite when "
                                         "every output score is raised by 1000"), report.findings


def test_a_loss_that_is_nan_at_the_weights_themselves_is_not_blamed_on_exp_overflow(tmp_path):
    text = ("\n_plain = loss_and_grads\n\n\ndef loss_and_grads(x, y):\n    loss, grads = _plain(x, y)\n"
            "    return float('nan'), grads\n")
    report = checked(planted(tmp_path, text=text))
    assert not report.ok and any("your loss differs from the twin's" in finding for finding in report.findings)
    assert not any("raised by 1000" in finding for finding in report.findings), report.findings


@pytest.mark.parametrize("hidden, words", [  # a hidden layer as wide as the right input, and x: another shape
    ([16, 16], "W3's gradient is computed with W2's input (the output of layers.1, relu) instead of its own (the "
               "output of layers.3, relu)"),
    ([16], "W2's gradient is computed with W1's input (x, the network's input) instead of its own (the output of "
           "layers.1, relu)")])
def test_a_gradient_computed_with_another_layers_input_is_named(tmp_path, hidden, words):
    report = checked(planted(tmp_path, BUG="wrong_input", HIDDEN=hidden))
    assert report.findings[0] == (f"{words}: in dW = aᵀ·delta (or delta·aᵀ), a must be the activation that feeds "
                                  "this layer"), report.findings


def test_labels_taken_for_one_hot_rows_get_a_hint(tmp_path):
    with pytest.raises(TheirError, match=r"operands could not be broadcast.*; svt passes y as int labels of shape "
                                         r"\(N,\); if your code wants one-hot rows \(N, 10\), .*np.eye\(10\)\[y\]"):
        checked(planted(tmp_path, BUG="one_hot_labels"))


def test_a_wrong_forward_is_told_apart_from_a_wrong_backward(tmp_path):
    report = checked(planted(tmp_path, BUG="forward_tanh"))
    assert report.findings[0].startswith("your loss differs from the twin's from the same weights")
    assert "your gradients fit your own loss (finite differences agree at" in report.findings[1]
    assert all(row.ok for row in report.rows if row.name.startswith("fd/"))


def test_a_wrong_reduction_is_told_by_the_ratio_of_the_losses(tmp_path):
    report = checked(planted(tmp_path, text='\nREDUCTION = "sum"\n'))
    assert report.findings[0].startswith("your loss differs from the twin's from the same weights")
    assert 'yours is the twin\'s divided by N: a mean over the batch? declare REDUCTION = "mean"' in report.findings[0]
    assert "your gradients fit your own loss" in report.findings[1]


def test_a_wrong_backward_does_not_fit_its_own_loss_either(tmp_path):
    report = checked(planted(tmp_path, BUG="no_relu_backward"))
    assert not all(row.ok for row in report.rows if row.name.startswith("fd/W1"))
    assert report.rows[0].name == "loss" and report.rows[0].ok


def test_their_exception_is_their_traceback_and_exit_2(tmp_path):
    path = planted(tmp_path, text="\n\ndef loss_and_grads(x, y):\n    return helper(x)\n\n\n"
                                  "def helper(x):\n    raise ValueError('shapes (32,784) and (10,16) not aligned')\n")
    with pytest.raises(TheirError, match=r"model.py, in loss_and_grads, raised ValueError: shapes"):
        checked(path)
    result = svt(str(path))
    assert result.returncode == 2
    assert "--- your code raised an exception" in result.stderr and "in helper" in result.stderr
    assert "benchmark/check" not in result.stderr  # their frames only
    assert result.stderr.strip().splitlines()[-1].startswith("svt check: error: model.py, in loss_and_grads, raised")


def test_a_file_that_asks_for_input_meets_the_end_of_a_file_not_svts_requests(tmp_path):
    with pytest.raises(TheirError, match=r"model.py, loading the file, raised EOFError: EOF when reading a line"):
        checked(planted(tmp_path, text="\nname = input('your name? ')\n"))


@pytest.mark.parametrize("text, settings, words", [
    ("\ndel loss_and_grads\n", {}, r"model.py: defines no loss_and_grads; a model file needs TWIN"),
    ("\nloss_and_grad = loss_and_grads\ndel loss_and_grads\n", {},
     r"defines no loss_and_grads \(did you mean loss_and_grad\?\)"),
    ("", {"BUG": "wrong_keys"}, r"gradients for other keys than parameters\(\): missing \['W1'\], "
                                r"unexpected \['dW1'\]"),
    ("\nparams['W9'] = np.zeros((3, 5))\n", {}, r"parameters\(\)\['W9'\] has shape \(3, 5\), which no twin parameter"),
    ("\nTWIN = '16:relu,32:relu,10'\n", {}, r"parameters\(\)\['W2'\] has shape \(16, 10\), which no twin "
                                           r"parameter left has \(TWIN '16:relu,32:relu,10': layers.2.weight"),
    ("\nTWIN = '16:relu,10:relu,10'\n", {}, r"the twin \(TWIN '16:relu,10:relu,10'\) has layers.4.weight \(10, 10\), "
                                           r"layers.4.bias \(10,\) that none of your parameters maps to"),
    ("\n\ndef parameters():\n    return {key: value.copy() for key, value in params.items()}\n", {},
     r"parameters\(\) must return the model's own arrays, .* W1, b1, W2, b2 are new each time"),
    ("\n_plain = loss_and_grads\n\n\ndef loss_and_grads(x, y):\n    loss, grads = _plain(x, y)\n    step(grads, 0.1)\n"
     "    return loss, grads\n", {}, r"loss_and_grads\(x, y\) changed the parameters \(W1, b1, W2, b2\): it must only "
                                  r"compute the loss and the gradients; an update belongs in step\(grads, lr\)"),
    ("\nforward = lambda x: None\n", {}, r"forward\(x\) must be an array of numbers, got NoneType"),
    ("\nLOSS = 'hinge'\n", {}, r"LOSS 'hinge' is not one of cross_entropy, squared_error, binary_cross_entropy"),
    ("\nTWIN = '16:relu,10:softmax'\n", {}, r"unknown activation 'softmax'"),
])
def test_a_file_that_does_not_meet_the_interface_is_one_line_and_exit_2(tmp_path, text, settings, words):
    path = planted(tmp_path, text=text, **settings)
    with pytest.raises(UserError, match=words):
        checked(path)


def test_the_command_says_an_unusable_file_in_one_line_and_exits_2(tmp_path, capsys):
    from benchmark.commands.cli import main  # in this process: the command's own code, without a 2nd torch import

    assert main(["check", str(planted(tmp_path, BUG="wrong_keys"))]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("svt check: error: model.py: loss_and_grads returned gradients for other keys")


def test_the_command_prints_the_mapping_the_tensors_the_findings_and_exits_1(tmp_path):
    result = svt(str(planted(tmp_path, BUG="sum_over_batch")), "--batch", "32")
    assert result.returncode == 1, result.stderr
    assert re.search(r"W1\s+784x16\s+layers.0.weight\s+16x784\s+transposed \(in, out\)", result.stdout)
    assert "what is wrong:" in result.stdout and "times N = 32" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("model.py: WRONG: ")


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], r"--batch must be a positive integer, got 0"),
    (["--timeout", "0"], r"--timeout must be a positive number of seconds, got 0"),
    (["--csv", "/no/such/folder/class.csv"], r"--csv '/no/such/folder/class.csv': the folder '/no/such/folder' does"),
    (["--map", "W1"], r"--map: expected their=twin pairs separated by commas"),
    ([], r"no-such.py: no such model file"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(args, message):
    result = svt("no-such.py", *args)
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, make, message", [
    ("folder.py", lambda path: path.mkdir(), r"folder.py: is a folder, not a model file; give the path of a \.py"),
    ("notes.txt", lambda path: path.write_text("TWIN = '10'\n"),
     r"notes.txt: not a Python file \(it ends in '\.txt'\)"),
    ("model", lambda path: path.write_text("TWIN = '10'\n"), r"model: not a Python file \(it ends in 'no suffix'\)"),
])
def test_a_path_that_is_no_python_file_is_one_line_not_their_traceback(tmp_path, name, make, message):
    make(tmp_path / name)
    result = svt(str(tmp_path / name))
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
