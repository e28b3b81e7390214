"""`svt check` on every file of examples/: the correct ones agree, each buggy one fails with the
diagnosis its docstring names (issue 24: "their buggy twins fail with the named diagnoses").

Each file runs in its own process (benchmark.check.learner.LearnerProcess) and is checked by the
engine (benchmark.check.engine.check) on real MNIST, as `svt check FILE.py --steps 0` does (the
diagnoses come from the gradients; the update steps are the engine's own tests' business). The
files themselves are proven without the engine in tests/test_examples.py.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CORRECT = ["params_dict/correct.py", "weight_lists/correct.py", "layer_objects/correct.py",
           "columns/correct.py", "fused_update/correct.py"]
DIAGNOSES = {  # buggy file -> words its findings must hold (what the file's docstring says svt check should say)
    "params_dict/sum_not_mean.py": ["times N = 64", "summed over the batch where the loss averages"],
    "params_dict/missing_relu_mask.py": ["W2, b2 right; W1, b1 wrong", "backward through the relu"],
    "weight_lists/missing_sigmoid_prime.py": ["weights[1], biases[1] right; weights[0], biases[0] wrong",
                                              "backward through the sigmoid"],
    "layer_objects/accumulating.py": ["gradients accumulate from call to call"],
    "columns/db_summed_everywhere.py": ["b1's gradient is a scalar", "b2's gradient is a scalar",
                                        "b3's gradient is a scalar", "summed over every axis"],
    "fused_update/wrong_sign.py": ["dense0.weights", "dense1.weights", "times -1", "the wrong sign"],
}


def check_example(relative: str):
    from benchmark.check.engine import CheckOptions, check
    from benchmark.check.learner import LearnerProcess

    path = EXAMPLES / relative
    with LearnerProcess(path, timeout=120) as model:
        return check(model, CheckOptions(batch=64, seed=0, steps=0, folder=str(path.parent)), path.name)


@pytest.fixture(scope="module")
def reports(mnist):  # `mnist`: fetched once before the checks load it
    """Every example checked, two at a time (each file's code runs in its own process)."""
    names = CORRECT + list(DIAGNOSES)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(check_example, names)))


@pytest.mark.parametrize("relative", CORRECT)
def test_correct_example_agrees(reports, relative):
    report = reports[relative]
    assert report.ok, report.verdict() + "\n" + report.table()
    assert report.verdict().startswith("correct.py: ok: ")


@pytest.mark.parametrize("relative, words", DIAGNOSES.items())
def test_buggy_example_fails_with_its_diagnosis(reports, relative, words):
    report = reports[relative]
    assert not report.ok and "WRONG" in report.verdict()
    said = "\n".join(report.findings)
    for phrase in words:
        assert phrase in said, f"{relative}: {phrase!r} not in the findings:\n{said}"
    if relative == "fused_update/wrong_sign.py":  # the biases' update keeps its minus: no finding names them
        assert "bias" not in said, said
