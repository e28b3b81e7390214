"""`svt fit`: both sides from the same weights on the same batches agree (float64 to 1e-9, float32
within 1%), every optimiser, init and schedule trains a fit, the report folder, --vary, the errors."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from chromium_page import check_page, start_chromium

from benchmark.commands.cli import main
from benchmark.data.functions import load_points
from benchmark.fit.training import fit_both
from benchmark.fit.variants import default_fit_spec, hidden_layers, varied
from scratch_nn.spec import INITS, OPTIMIZERS, SCHEDULES, validate

FIT_SPEC = "tests/specs/fit-sin.toml"


def spec_of(target="sin", shape=(8, 1, "tanh"), dtype="float64", epochs=200, **train):
    spec = default_fit_spec(target)
    spec = replace(spec, model=replace(spec.model, layers=hidden_layers(*shape), dtype=dtype),
                   train=replace(spec.train, epochs=epochs, **train))
    return validate(spec)


def fit(spec, checks=2):
    return fit_both(spec, load_points(spec.data, spec.model.dtype), checks)


def svt(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=timeout)


def test_float64_sides_agree_to_1e9_in_final_loss_and_curve():
    result = fit(spec_of(epochs=500), checks=3)
    assert result.losses["scratch"][0] == result.losses["torch"][0]  # the same start
    assert result.loss_gap() <= 1e-9
    assert result.curve_gap() <= 1e-9
    assert result.parity_ok() and len(result.checks) == 3
    assert result.final_losses["scratch"] < result.losses["scratch"][0] / 10  # it did learn


def test_float32_final_losses_agree_within_one_percent():
    result = fit(spec_of(dtype="float32", epochs=1000))
    assert result.curves["scratch"].dtype == np.float64  # drawn in float64, computed in float32
    assert result.loss_gap() <= 0.01
    assert result.parity_ok()


def test_one_linear_neuron_learns_the_least_squares_line():
    spec = spec_of("line", shape=(1, 0, "none"), epochs=1500, momentum=0.0)
    spec = replace(spec, data=replace(spec.data, noise=0.3, seed=2))
    result = fit(spec)
    slope, intercept = result.least_squares()
    assert result.one_linear_neuron() and slope != pytest.approx(0.5, abs=1e-3)  # the noise moved it
    for side in ("scratch", "torch"):
        assert result.weights[side]["layers.0.weight"][0, 0] == pytest.approx(slope, abs=1e-9)
        assert result.weights[side]["layers.0.bias"][0] == pytest.approx(intercept, abs=1e-9)


def test_relu_breakpoints_are_minus_b_over_w_and_no_more_than_the_neurons():
    result = fit(spec_of(shape=(6, 1, "relu"), epochs=100, lr=0.01))
    weight, bias = result.weights["scratch"]["layers.0.weight"][:, 0], result.weights["scratch"]["layers.0.bias"]
    np.testing.assert_allclose(result.breakpoints(), np.sort(-bias / weight))
    assert result.breakpoints_inside() <= result.neurons() == 6
    assert fit(spec_of(epochs=5)).breakpoints() is None  # tanh units bend everywhere


def test_mini_batches_take_a_step_per_batch_in_the_same_order_on_both_sides():
    result = fit(spec_of(epochs=3, batch_size=20))  # 64 points: batches of 20, 20, 20, 4
    assert result.steps == 12
    np.testing.assert_allclose(result.losses["scratch"], result.losses["torch"], rtol=1e-12)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_optimiser_and_schedule_fits_alike_on_both_sides(optimizer, schedule):
    # Noisy points: on sin's noiseless points, symmetric about 0, the zero-initialised first-layer biases
    # have a gradient of exactly 0 but for rounding (1e-18, either sign); Adam and RMSprop divide it by
    # its own size and take a full step of +-lr, a different one on each side (docs/fit.md).
    lr = {"sgd": 0.05, "adam": 0.01, "adamw": 0.01, "rmsprop": 0.001}[optimizer]
    spec = spec_of(epochs=60, optimizer=optimizer, lr=lr, schedule=schedule, step_size=20, gamma=0.5)
    result = fit(replace(spec, data=replace(spec.data, noise=0.05)))
    assert result.loss_gap() <= 1e-9 and result.curve_gap() <= 1e-9
    assert result.parity_ok()


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("loss", ["l1", "huber"])
def test_every_init_and_loss_fits_alike_on_both_sides(init, loss):
    spec = varied(varied(spec_of(shape=(6, 1, "relu"), epochs=40, lr=0.01), "init", init), "loss", loss)
    result = fit(spec)
    assert result.loss_gap() <= 1e-9 and result.curve_gap() <= 1e-9
    assert result.parity_ok()


@pytest.fixture(scope="module")
def abs_report(tmp_path_factory):
    """`svt fit` run once: (the --out folder, the finished process)."""
    out = tmp_path_factory.mktemp("fit")
    result = svt("fit", "--target", "abs", "--layers", "5:relu,1", "--lr", "0.01", "--epochs", "300",
                 "--dtype", "float64", "--out", str(out), "--name", "abs")
    return out, result


def test_svt_fit_writes_the_report_folder(abs_report):
    tmp_path, result = abs_report
    assert result.returncode == 0, result.stderr
    assert "ReLU breakpoints:" in result.stdout and "for 5 neurons" in result.stdout
    folder = tmp_path / "abs"
    assert {path.name for path in folder.iterdir()} == {"report.html", "report.md", "fit.png", "loss.png",
                                                      "losses.csv", "curve.csv", "checks.csv", "summary.json"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["target"] == "abs" and summary["steps"] == 300 and summary["parity_ok"]
    assert summary["final_loss_relative_gap"] <= 1e-9 and summary["curve_max_abs_gap"] <= 1e-9
    assert summary["breakpoints"]["all"] <= 5 and summary["spec"]["data"]["source"] == "abs"
    curve = pd.read_csv(folder / "curve.csv")
    assert list(curve.columns) == ["x", "target", "scratch", "torch"]
    assert curve["x"].min() < -3 and curve["x"].max() > 3  # wider than the data: extrapolation shown
    assert list(pd.read_csv(folder / "losses.csv").columns) == ["step", "scratch", "torch"]
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "ReLU breakpoints" in page
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # nothing half-written left


@pytest.mark.browser
def test_the_fit_page_in_chromium(abs_report, tmp_path):
    driver = start_chromium(tmp_path / "profile")
    try:
        check_page(driver, abs_report[0] / "abs" / "report.html", "#verdict dl.facts", tmp_path / "fit.png")
    finally:
        driver.quit()


def test_svt_fit_vary_trains_every_combination(tmp_path):
    result = svt("fit", "--target", "sin", "--layers", "4:tanh,1", "--epochs", "50", "--checks", "1",
                 "--vary", "activation=relu,tanh", "--vary", "lr=0.01,0.05", "--out", str(tmp_path), "--name", "v")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "v" / "vary.csv")
    assert list(table["combination"]) == ["activation=relu lr=0.01", "activation=relu lr=0.05",
                                          "activation=tanh lr=0.01", "activation=tanh lr=0.05"]
    assert list(table["layers"]) == ["4:relu,1", "4:relu,1", "4:tanh,1", "4:tanh,1"]
    assert len(set(table["final loss scratch"])) == 4  # four different fits
    assert (tmp_path / "v" / "grid.png").stat().st_size > 10_000
    assert "activation=tanh lr=0.05" in result.stdout


@pytest.mark.parametrize("arguments, message", [
    (["--target", "cosh"], "unknown source 'cosh'; allowed: mnist, line, parabola, sin, abs, step, plateau"),
    (["--target", "{bad}"], "line 3: 'abc' is not a finite number"),
    (["--target", "{one}"], "line 1: expected two columns x,y, got 1"),
    (["--layers", "5:relu,3"], "a fit's network gives one number: its last layer must give (N, 1), got (N, 3)"),
    (["--loss", "cross_entropy"], "loss 'cross_entropy' is a classification loss; a fit takes one of mse, l1, huber"),
    (["--vary", "width=a"], "--vary width=a: 'a' is not allowed; width takes an integer >= 1"),
    (["--spec", "mnist-mlp"], "spec 'mnist-mlp' trains on MNIST; give --target"),
    (["--tour", "--target", "sin"], "--tour draws its own fits"),
    (["--batch-size", "65"], "--batch-size 65 is larger than the 64 points; the largest allowed is 64"),
    (["--interval", "3,1"], "the interval must have low < high, got [3.0, 1.0]"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, arguments, message):
    (tmp_path / "bad.csv").write_text("x,y\n0,1\n1,abc\n")
    (tmp_path / "one.csv").write_text("1\n2\n")
    arguments = [argument.format(bad=tmp_path / "bad.csv", one=tmp_path / "one.csv") for argument in arguments]
    result = svt("fit", *arguments, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_parity_and_describe_take_a_fit_spec(capsys):
    assert main(["parity", "--spec", FIT_SPEC, "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "parity: spec fit-sin (a fit of sin), float64, batch all points, 2 steps of adam" in out
    assert "fd/layers.0.weight.grad" in out and out.strip().splitlines()[-1].startswith("parity: ")
    assert main(["describe", "--spec", FIT_SPEC]) == 0
    assert "data: sin on 48 points in [-3, 3], noise 0.05 (seed 1) (svt fit)" in capsys.readouterr().out
