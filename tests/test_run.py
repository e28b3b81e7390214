"""`svt run` end to end on a small slice of real MNIST: the report's files, interruption, divergence."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from benchmark.report.record import COLUMNS
from benchmark.study.backends import thread_environment

SLICE = ["--train-limit", "600", "--test-limit", "300", "--epochs", "1", "--batch-size", "64",
         "--check-every", "2", "--quiet"]


def svt_run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`svt run ...` on one thread (two threads' pools spin and wait for each other on a busy shared
    machine: 4x slower there; no figure checked here depends on the count); the timeout catches a hang."""
    return subprocess.run([sys.executable, "-m", "benchmark", "run", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **thread_environment(1)})


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist):  # `mnist`: the real data is fetched before the subprocess needs it
    out = tmp_path_factory.mktemp("reports")
    result = svt_run(*SLICE, "--out", str(out), "--name", "small", "--layers", "64:relu,32:tanh,10")
    assert result.returncode == 0, result.stderr
    return out / "small", result


def test_every_file_is_written(report):
    folder, _ = report
    expected = {"report.html", "report.md", "summary.json", "steps.csv", "epochs.csv", "confusion_scratch.csv",
                "confusion_torch.csv", "parity.csv", "layers.csv", "units.csv", "drift.csv", "classes.csv",
                "disagreements.csv", "loss_steps.png", "epochs.png", "confusion.png", "grad_norms.png",
                "parity_drift.png", "first_layer.png", "gallery.png"}
    assert expected <= {path.name for path in folder.iterdir()}
    assert not [path for path in folder.parent.iterdir() if path.name.startswith(".tmp-")]


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_csvs_parse_with_the_documented_columns(report, table):
    frame = pd.read_csv(report[0] / f"{table}.csv")
    assert list(frame.columns) == COLUMNS[table]
    assert len(frame) > 0
    if "side" in frame:
        assert set(frame["side"]) == {"scratch", "torch"}


def test_steps_cover_every_batch_on_both_sides(report):
    steps = pd.read_csv(report[0] / "steps.csv")
    assert steps.groupby("side")["step"].max().tolist() == [10, 10]  # 600 images / batch 64 -> 10 steps, the last of 24
    assert steps["loss"].notna().all()


def test_confusion_matrices_count_the_test_images(report):
    for side in ("scratch", "torch"):
        confusion = pd.read_csv(report[0] / f"confusion_{side}.csv", index_col=0)
        assert confusion.shape == (10, 10)
        assert confusion.to_numpy().sum() == 300


def test_summary_carries_both_sides_and_the_parity_verdict(report):
    summary = json.loads((report[0] / "summary.json").read_text())
    for side in ("scratch", "torch"):
        assert 0.0 <= summary["sides"][side]["test_accuracy"] <= 1.0
        assert summary["sides"][side]["train_seconds"] > 0
    assert summary["parity_verdict"].startswith("gradients agree at every check (6 checks; worst ")
    assert "scratch vs f64" in summary["parity_verdict"] and "torch vs f64" in summary["parity_verdict"]
    assert [layer["type"] for layer in summary["spec"]["model"]["layers"]][2:4] == ["linear", "tanh"]
    assert {"python", "numpy", "torch", "blas", "blas_kernels", "torch_threads"} <= set(summary["environment"])
    assert summary["targets"] and all("(on a subset" in row["target"] for row in summary["targets"])
    assert summary["stopped"] is None


def test_html_is_self_contained_and_names_both_accuracies(report):
    html = (report[0] / "report.html").read_text()
    summary = json.loads((report[0] / "summary.json").read_text())
    assert html.count("data:image/png;base64,") >= 6
    assert "<script" not in html and "src=\"http" not in html and "href=\"http" not in html
    for side in ("scratch", "torch"):
        assert f"{100 * summary['sides'][side]['test_accuracy']:.2f}%" in html
    assert "parity" in html.lower()


def test_terminal_gives_the_answer(report):
    _, result = report
    assert "test accuracy: scratch" in result.stdout and "gradient parity: gradients agree" in result.stdout


@pytest.mark.parametrize("lr", ["1000", "1e4"])
def test_divergence_stops_with_a_message_and_still_writes(tmp_path, mnist, lr):
    result = svt_run(*SLICE, "--out", str(tmp_path), "--name", "diverged", "--lr", lr)
    assert result.returncode == 1
    # The project's message alone on stderr: no traceback, no NumPy RuntimeWarning before it.
    line, = result.stderr.splitlines()
    assert line.startswith("svt run: stopped: the scratch loss became ") and " at step " in line, result.stderr
    assert line.endswith(f"training diverged: lower the learning rate (--lr, now {float(lr):g})")
    summary = json.loads((tmp_path / "diverged" / "summary.json").read_text())
    assert "diverged" in summary["stopped"]
    assert summary["sides"]["scratch"]["test_accuracy"] is None


def test_interrupted_run_leaves_the_previous_report_intact(tmp_path, report):
    previous = report[0]
    out = previous.parent
    before = {path.name: path.read_bytes() for path in previous.iterdir()}
    unbuffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    process = subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--out", str(out), "--name", "small",
                                "--train-limit", "6000", "--epochs", "50", "--check-every", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=unbuffered,
                               # a shell's background job ignores SIGINT, and Python keeps an ignored
                               # SIGINT ignored: give the run the default, as a terminal's Ctrl-C finds it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen, printed, deadline = "", "", time.monotonic() + 120
        # the first epoch's line on stdout, a block-buffered pipe as `svt run | tee` makes it: flushed
        # as the epoch ends, not at exit (the bar on stderr says training has begun)
        while "epoch 1/50 " not in printed and time.monotonic() < deadline:
            for ready in select.select([process.stderr, process.stdout], [], [], 1.0)[0]:
                text = os.read(ready.fileno(), 4096).decode(errors="replace")
                seen, printed = (seen + text, printed) if ready is process.stderr else (seen, printed + text)
        assert "epoch 1/50 " in printed and "scratch: loss" in printed, (printed, seen)
        assert "epoch 1/50" in seen, seen
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    stderr = seen + stderr.decode(errors="replace")
    assert process.returncode == 130
    assert "epoch 1/50 (scratch 47 + torch 47)" in stderr  # the bar says that it counts both sides' steps
    # On a line of its own (not glued to the bar), saying what was left behind.
    assert "\nsvt run: interrupted; no report written; the previous one, if any, is untouched\n" in stderr
    assert "Traceback" not in stderr
    assert {path.name: path.read_bytes() for path in previous.iterdir()} == before
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith("small")) == [], os.listdir(out)


def test_a_cnn_run_shows_its_filters_and_feature_maps(tmp_path, mnist):
    """lenet5-relu on a slice: the first conv layer's filters as images and the first test digit's
    feature maps after each conv layer, both sides; the MLP figures are written as before."""
    import json

    result = svt_run("--spec", "lenet5-relu", "--train-limit", "256", "--test-limit", "64", "--epochs", "1",
                     "--check-every", "2", "--quiet", "--out", str(tmp_path), "--name", "cnn")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "cnn"
    assert {"first_layer.png", "feature_maps.png", "gallery.png", "units.png"} <= {p.name for p in folder.iterdir()}
    page = (folder / "report.html").read_text()
    assert "Feature maps" in page and "each filter of a first conv layer" in page
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["spec"]["model"]["input_shape"] == [1, 28, 28]
    assert summary["targets"][0]["target"].startswith("scratch test accuracy >= 99.0%")  # a CNN's targets
    assert summary["targets"][3]["target"].startswith("whole run <= 180 s")


def test_a_float64_cnn_run_is_held_to_identical_predictions_not_to_the_float32_time(tmp_path, mnist):
    import json

    result = svt_run("--spec", "lenet5-relu", "--dtype", "float64", "--train-limit", "128", "--test-limit", "64",
                     "--epochs", "1", "--check-every", "1000", "--quiet", "--out", str(tmp_path), "--name", "cnn64")
    assert result.returncode == 0, result.stderr
    targets = [row["target"] for row in json.loads((tmp_path / "cnn64" / "summary.json").read_text())["targets"]]
    assert any(target.startswith("float64: identical test predictions") for target in targets)
    assert not any(target.startswith("whole run") for target in targets), targets
