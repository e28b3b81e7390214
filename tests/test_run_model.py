"""`svt run --model FILE.py` end to end on a slice of real MNIST, and the loss both sides' test figures use.

The learner's files are examples/'s (tests/test_examples.py proves what each one is); the run trains
them against their twins in subprocesses, on one thread, as tests/test_run.py runs `svt run`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.check.training import output_loss, probabilities
from benchmark.check.twin import twin_loss
from benchmark.study.backends import thread_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SLICE = ["--train-limit", "640", "--test-limit", "300", "--epochs", "1", "--batch-size", "64",
         "--check-every", "4", "--quiet"]


def svt_run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`svt run ...` on one thread; the timeout catches a hang."""
    return subprocess.run([sys.executable, "-m", "benchmark", "run", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **thread_environment(1)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):  # `mnist`: the real data is fetched before the subprocesses need it
    """Two learners' runs: the online book's lists (their own step, squared error on sigmoid outputs)
    and the fused update (no step: svt's p -= lr * g)."""
    out = tmp_path_factory.mktemp("reports")
    results = {name: svt_run("--model", str(EXAMPLES / relative), "--lr", lr, *SLICE, "--out", str(out), "--name", name)
               for name, relative, lr in (("lists", "weight_lists/correct.py", "3.0"),
                                          ("fused", "fused_update/correct.py", "0.5"))}
    return out, results


@pytest.mark.parametrize("name", ["lists", "fused"])
def test_a_correct_model_trains_like_its_twin(runs, name):
    out, results = runs
    result = results[name]
    assert result.returncode == 0, result.stderr
    folder = out / name
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["sides"]) == {"correct.py", "torch"}, "the learner's side is named after their file"
    accuracies = [summary["sides"][side]["test_accuracy"] for side in ("correct.py", "torch")]
    assert accuracies[0] == accuracies[1] and summary["disagreements"] == 0  # float64 both: the same predictions
    steps = pd.read_csv(folder / "steps.csv")
    assert set(steps["side"]) == {"correct.py", "torch"} and steps.groupby("side")["step"].max().tolist() == [10, 10]
    theirs = steps[steps["side"] == "correct.py"]["loss"].to_numpy()
    assert theirs[-3:].mean() < theirs[:3].mean(), theirs  # it learns, with their step or svt's SGD
    mean_loss = steps.groupby("side")["loss"].mean()
    assert mean_loss["correct.py"] == pytest.approx(mean_loss["torch"], rel=1e-9)  # the declared loss on both sides
    parity = pd.read_csv(folder / "parity.csv")
    assert sorted(parity["step"].unique()) == [1, 4, 8] and parity["ok"].all(), parity
    assert "weights[0].grad" in set(parity["tensor"]) or "dense0.weights.grad" in set(parity["tensor"])
    drift = pd.read_csv(folder / "drift.csv")
    assert drift[drift["parameter"] == "all"]["drift"].max() < 1e-10
    assert (folder / "report.html").is_file() and "correct.py" in (folder / "report.md").read_text()
    assert "test accuracy: correct.py" in result.stdout


def test_the_periodic_checks_catch_a_wrong_gradient(mnist):
    """The run's parity check on one batch, with the summing bug's file in its own process: every
    gradient breaks (x 64), the loss itself agrees."""
    from benchmark.check.learner import LearnerProcess
    from benchmark.check.mapping import map_parameters
    from benchmark.check.training import learner_parity, learner_sides, model_run_spec
    from benchmark.check.twin import read_declaration, twin_shapes
    from benchmark.data.mnist import as_inputs, as_labels

    x, y = as_inputs(mnist.train_images[:64], "float64"), as_labels(mnist.train_labels[:64])
    with LearnerProcess(EXAMPLES / "params_dict" / "sum_not_mean.py") as model:
        declaration = read_declaration(model.declared, "sum_not_mean.py", "float64")
        params = model.declared["parameters"]
        rows = map_parameters({key: value.shape for key, value in params.items()}, twin_shapes(declaration), {},
                              declaration.twin)
        (learner, _), parity = learner_sides(model, declaration, rows, model_run_spec(declaration, "sum"), "s.py")
        report = parity(learner, x, y)
        assert [row.name for row in report.rows if not row.ok] == ["W1.grad", "b1.grad", "W2.grad", "b2.grad"]
        assert report.rows[0].name == "loss" and report.rows[0].ok
        assert learner_parity(declaration, rows, learner, x, y).first_break.name == "W1.grad"


def test_a_model_without_forward_is_refused(tmp_path):
    source = (EXAMPLES / "params_dict" / "correct.py").read_text()
    model = tmp_path / "no_forward.py"
    model.write_text(source.replace("def forward(x):", "def scores(x):"))
    result = svt_run("--model", str(model), *SLICE, "--out", str(tmp_path))
    assert result.returncode == 2
    assert "svt run: error: no_forward.py defines no forward(x); svt run --model needs it" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("*/"))


def test_a_model_that_raises_leaves_no_output_folder_behind(tmp_path):
    """--out is checked before any work but created only with the report: a run that fails on the
    learner's code leaves neither a report nor an empty folder."""
    source = (EXAMPLES / "params_dict" / "correct.py").read_text()
    model = tmp_path / "raises.py"
    raising = "def loss_and_grads(x, y):\n    raise ValueError('boom')"
    model.write_text(source.replace("def loss_and_grads(x, y):", raising))
    out = tmp_path / "reports" / "mine"
    result = svt_run("--model", str(model), *SLICE, "--out", str(out))
    assert result.returncode == 2 and "raised ValueError: boom" in result.stderr, result.stderr
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("flags, named", [(["--layers", "30:relu,10"], "--layers"), (["--dtype", "float32"], "--dtype"),
                                          (["--optimizer", "adam"], "--optimizer adam")])
def test_options_of_the_scratch_model_are_refused(flags, named, tmp_path):
    result = svt_run("--model", str(EXAMPLES / "params_dict" / "correct.py"), *flags, "--out", str(tmp_path))
    assert result.returncode == 2 and f"svt run: error: {named}" in result.stderr, result.stderr


@pytest.mark.parametrize("loss, reduction, scale", [("cross_entropy", "mean", 1.0), ("cross_entropy", "sum", 2.0),
                                                    ("squared_error", "mean", 0.5),
                                                    ("binary_cross_entropy", "sum", 1.0)])
def test_output_loss_is_the_twins_loss(loss, reduction, scale):
    """The learner side's test loss (NumPy, from their outputs) equals the twin's declared loss (torch)."""
    declaration = SimpleNamespace(loss=loss, reduction=reduction, scale=scale)
    rng = np.random.default_rng(0)
    scores, y = rng.standard_normal((16, 10)) * 3, rng.integers(0, 10, 16)
    outputs = scores if loss == "cross_entropy" else 1 / (1 + np.exp(-scores))
    expected = float(twin_loss(declaration)(torch.from_numpy(outputs), torch.from_numpy(y)))
    assert output_loss(declaration, outputs, y) == pytest.approx(expected, rel=1e-12)
    if loss == "cross_entropy":  # a forward that returns the softmax: the same loss, read as probabilities
        softmax = probabilities(declaration, scores)
        assert np.allclose(softmax.sum(axis=1), 1) and output_loss(declaration, softmax, y) == pytest.approx(expected)
