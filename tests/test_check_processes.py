"""`svt check` keeps the learner's code in its own process: a NumPy patched there changes no figure,
a file that hangs, crashes or raises is one row of a batch (local threads and Ray), and the same
engine runs on functions in memory (`check_model`) and on other conventions' layouts."""
from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_check import ONE_THREAD, PLANTED, checked, one_thread, planted  # noqa: F401 (a fixture)

from benchmark.check import check_model
from benchmark.core.errors import UserError

PATCHES = """
import numpy
numpy.dot = lambda a, b: 2 * numpy.matmul(a, b)          # as a popular course helper replaces np.dot
numpy.vdot = lambda a, b: 0.0
numpy.max = lambda *args, **kwargs: 1e30
numpy.abs = lambda a: a * 0
numpy.linalg.norm = lambda *args, **kwargs: 1.0
"""


def default_sigint() -> None:
    """In the `svt` child, SIGINT at its default, as a terminal's Ctrl-C finds it: a shell's background job
    (pytest started with `&`) ignores SIGINT, and a process keeps an ignored SIGINT ignored (test_run.py)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_a_file_that_patches_numpy_changes_no_figure(tmp_path):
    plain = checked(planted(tmp_path, "plain.py"))
    patched = checked(planted(tmp_path, "patched.py", text=PATCHES))
    assert plain.ok and patched.ok, patched.verdict()
    for one, other in zip(plain.records(), patched.records(), strict=True):
        assert all(same(one[key], other[key]) for key in one), (one, other)


HANG = "\nimport time\n\n\ndef loss_and_grads(x, y):\n    time.sleep(600)\n"
CRASH = "\nimport os\n\n\ndef loss_and_grads(x, y):\n    os._exit(3)\n"
RAISE = "\n\ndef loss_and_grads(x, y):\n    raise KeyError('W3')\n"
CHATTY = "\nfor line in range(20000):\n    print('debug', line, 'W1', params['W1'].shape)\n"
SYNTAX = "\ndef parameters()\n    return params\n"


@pytest.fixture
def classroom(tmp_path):
    """Seven submissions: right, wrong, hanging, crashing, raising, printing a lot, a syntax error."""
    return [str(planted(tmp_path, "right.py")), str(planted(tmp_path, "wrong.py", BUG="wrong_sign")),
            str(planted(tmp_path, "hangs.py", text=HANG)), str(planted(tmp_path, "crashes.py", text=CRASH)),
            str(planted(tmp_path, "raises.py", text=RAISE)), str(planted(tmp_path, "chatty.py", text=CHATTY)),
            str(planted(tmp_path, "syntax.py", text=SYNTAX))]


def test_a_batch_keeps_going_past_a_hanging_and_a_crashing_file(classroom, tmp_path):
    table = tmp_path / "class.csv"
    result = subprocess.run([sys.executable, "-m", "benchmark", "check", *classroom, "--timeout", "5", "--jobs", "2",
                             "--batch", "32", "--csv", str(table)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **ONE_THREAD})
    assert result.returncode == 2, result.stderr
    rows = {row["file"]: row for row in csv.DictReader(table.open())}
    assert [rows[path]["status"] for path in classroom] == ["ok", "wrong", "unusable", "unusable", "unusable", "ok",
                                                            "unusable"]
    assert "times -1: the wrong sign" in rows[classroom[1]]["finding"]
    assert rows[classroom[2]]["finding"] == ("hangs.py: in loss_and_grads did not finish within 5 s (--timeout); an "
                                             "endless loop, or a model too slow for one batch?")
    assert rows[classroom[2]]["verdict"].startswith("hangs.py: cannot be checked: in loss_and_grads did not finish")
    assert "the process running it ended (exit status 3)" in rows[classroom[3]]["finding"]
    line = PLANTED.read_text().count("\n") + 4  # the raise, in the text added to the planted model
    assert rows[classroom[4]]["finding"] == f"raises.py, in loss_and_grads raised KeyError: 'W3' (line {line})"
    assert rows[classroom[6]]["finding"].startswith("syntax.py, loading the file raised SyntaxError:")
    assert all("traceback above" not in row["verdict"] + row["finding"] for row in rows.values())  # none is shown
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(classroom) + 2 and "debug" not in result.stdout + result.stderr  # prints dropped
    assert lines[-2].startswith("checked 7 files: 2 ok, 1 wrong, 4 unusable")
    assert all(any(line.startswith(path) for line in lines) for path in classroom)


def test_ctrl_c_keeps_the_rows_finished_and_writes_the_csv_whole(classroom, tmp_path):
    table = tmp_path / "class.csv"
    files = [classroom[0], classroom[2], classroom[1]]  # right, hangs, wrong; one at a time
    # in its own process group, which a terminal's Ctrl-C reaches whole
    process = subprocess.Popen([sys.executable, "-m", "benchmark", "check", *files, "--jobs", "1", "--batch", "32",
                                "--csv", str(table)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, **ONE_THREAD}, preexec_fn=default_sigint)
    first_rows = [process.stdout.readline(), process.stdout.readline()]
    assert first_rows[1].startswith(classroom[0]), first_rows  # the right file's row: the hanging one runs now
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (f"svt check: interrupted; 1 of 3 files checked; wrote {table}, the "
                                               "files not checked with status interrupted")
    rows = list(csv.DictReader(table.open()))
    assert [(row["file"], row["status"]) for row in rows] == [
        (classroom[0], "ok"), (classroom[2], "interrupted"), (classroom[1], "interrupted")]
    assert list(tmp_path.glob("*.tmp*")) == [] and sorted(p.name for p in tmp_path.iterdir() if "class" in p.name) \
        == ["class.csv"]


def test_a_batch_on_ray_gives_the_same_rows(classroom, tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmark", "check", classroom[0], classroom[1], classroom[3],
                             "--backend", "ray", "--jobs", "2", "--batch", "32"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, **ONE_THREAD})
    assert result.returncode == 2, result.stderr
    assert "checked 3 files: 1 ok, 1 wrong, 1 unusable" in result.stdout


def small_network(seed: int = 0, bug: str = ""):
    """A notebook's 784-8-10 tanh network: W (out, in) as torch, b (out, 1) columns, examples in columns."""
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(0, 0.05, (8, 784)), "b1": np.zeros((8, 1)),
              "W2": rng.normal(0, 0.3, (10, 8)), "b2": np.zeros((10, 1))}

    def loss_and_grads(x, y):
        columns, m = x.T, x.shape[0]  # (784, m)
        hidden = np.tanh(params["W1"] @ columns + params["b1"])
        scores = params["W2"] @ hidden + params["b2"]  # (10, m)
        exps = np.exp(scores - scores.max(axis=0))
        probabilities = exps / exps.sum(axis=0)
        loss = -np.log(probabilities[y, np.arange(m)]).mean()
        d_scores = probabilities.copy()
        d_scores[y, np.arange(m)] -= 1
        d_scores /= m
        d_hidden = (params["W2"].T @ d_scores) * (1 - hidden ** 2 if bug != "relu_derivative" else (hidden > 0))
        return loss, {"W1": d_hidden @ columns.T, "b1": d_hidden.sum(axis=1, keepdims=True),
                      "W2": d_scores @ hidden.T, "b2": d_scores.sum(axis=1, keepdims=True)}

    return params, loss_and_grads


def test_check_model_on_functions_in_memory(capsys):
    params, loss_and_grads = small_network()
    report = check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:tanh,10", batch=32)
    assert report.ok, report.verdict()
    assert report.verdict().startswith("your model: ok: parity:")
    layouts = {row.theirs: row.layout() for row in report.mapping}
    assert layouts == {"W1": "as torch (out, in)", "b1": "column (out, 1)", "W2": "as torch (out, in)",
                       "b2": "column (out, 1)"}
    assert "W1         8x784       layers.0.weight  8x784" in report.table()
    params, loss_and_grads = small_network(bug="relu_derivative")
    report = check_model(parameters=lambda: params, loss_and_grads=loss_and_grads, twin="8:tanh,10", batch=32)
    assert not report.ok
    assert any("W2, b2 right; W1, b1 wrong: look at the backward through the tanh (layers.1)" in finding
               for finding in report.findings), report.findings


def test_map_fixes_the_mapping_and_refuses_what_does_not_fit():
    params, loss_and_grads = small_network()
    report = check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:tanh,10", batch=16,
                         map={"W2": "layers.2.weight"})
    assert {row.theirs: row.how for row in report.mapping}["W2"] == "--map" and report.ok
    with pytest.raises(UserError, match=r"--map W1=layers.2.weight: W1 \(8, 784\) does not fit layers.2.weight "
                                        r"\(10, 8\)"):
        check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:tanh,10", map={"W1": "layers.2.weight"})


def test_a_float32_network_is_judged_against_the_float64_twin(tmp_path):
    report = checked(planted(tmp_path, DTYPE="np.float32"))
    assert report.dtype == "float32" and report.ok, report.table()
    wrong = checked(planted(tmp_path, "wrong.py", DTYPE="np.float32", BUG="extra_half", OUTPUT="sigmoid"))
    assert any("times 0.5: an extra ½" in finding for finding in wrong.findings), wrong.findings


def sigmoid_network(seed: int = 0):
    """784-8-10, sigmoid hidden and output units, per-unit binary cross-entropy summed over the 10
    outputs and averaged over the batch; weights listed before biases, biases as rows (1, out)."""
    rng = np.random.default_rng(seed)
    params = {"weights[0]": rng.normal(0, 0.05, (784, 8)), "weights[1]": rng.normal(0, 0.5, (8, 10)),
              "biases[0]": rng.normal(0, 0.1, (1, 8)), "biases[1]": rng.normal(0, 0.1, (1, 10))}

    def loss_and_grads(x, y):
        n, target = len(x), np.eye(10)[y]
        hidden = 1 / (1 + np.exp(-(x @ params["weights[0]"] + params["biases[0]"])))
        out = 1 / (1 + np.exp(-(hidden @ params["weights[1]"] + params["biases[1]"])))
        loss = -(target * np.log(out) + (1 - target) * np.log(1 - out)).sum(axis=1).mean()
        d_out = (out - target) / n  # sigmoid and binary cross-entropy: the derivatives cancel to a - t
        d_hidden = d_out @ params["weights[1]"].T * hidden * (1 - hidden)
        return loss, {"weights[0]": x.T @ d_hidden, "weights[1]": hidden.T @ d_out,
                      "biases[0]": d_hidden.sum(axis=0, keepdims=True), "biases[1]": d_out.sum(axis=0, keepdims=True)}

    return params, loss_and_grads


def test_binary_cross_entropy_on_sigmoid_outputs_with_weights_listed_first():
    params, loss_and_grads = sigmoid_network()
    report = check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:sigmoid,10:sigmoid",
                         loss="binary_cross_entropy", batch=16)
    assert report.ok, report.table()
    assert [(row.theirs, row.twin, row.layout()) for row in report.mapping] == [
        ("weights[0]", "layers.0.weight", "transposed (in, out)"), ("weights[1]", "layers.2.weight",
                                                                     "transposed (in, out)"),
        ("biases[0]", "layers.0.bias", "row (1, out)"), ("biases[1]", "layers.2.bias", "row (1, out)")]
    declared_wrong = check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:sigmoid,10:sigmoid",
                                 loss="squared_error", batch=16)
    assert declared_wrong.findings[0].startswith("your loss differs from the twin's")
    with pytest.raises(UserError, match=r"LOSS binary_cross_entropy takes probabilities: end TWIN with a sigmoid"):
        check_model(parameters=params, loss_and_grads=loss_and_grads, twin="8:sigmoid,10",
                    loss="binary_cross_entropy")


def test_a_batch_gives_each_learners_process_its_share_of_the_blas_threads(tmp_path, monkeypatch):
    from benchmark.check.batch import check_file, make_job
    from benchmark.check.engine import CheckOptions
    from benchmark.check.learner import LearnerProcess

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")  # svt's own setting, which a learner would inherit
    path = planted(tmp_path, text="\nimport os\nif {os.environ.get(name) for name in ('OPENBLAS_NUM_THREADS', "
                                  "'OMP_NUM_THREADS', 'MKL_NUM_THREADS')} != {'1'}:\n"
                                  "    TWIN = 'threads ' + os.environ['OPENBLAS_NUM_THREADS']\n")
    with LearnerProcess(path) as model:
        assert model.declared["TWIN"] == "threads 7"
    row = check_file(make_job(str(path), CheckOptions(batch=16), timeout=60, threads=1))
    assert row["status"] == "ok", row


def test_ctrl_c_during_their_code_is_one_line_and_leaves_no_process(tmp_path):
    marker = tmp_path / "inside"
    waits = (f"\nimport time\n\n\ndef loss_and_grads(x, y):\n    open({str(marker)!r}, 'w').close()\n"
             "    time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-m", "benchmark", "check", str(planted(tmp_path, text=waits))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, **ONE_THREAD}, preexec_fn=default_sigint)
    for _ in range(600):  # their loss_and_grads is running once the marker exists
        if marker.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    assert marker.exists(), process.communicate(timeout=5)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group, their process too
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "svt check: interrupted", stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    time.sleep(1)
    left = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left running: {left}"


def running(pid: int) -> bool:
    """Whether process `pid` still runs (an ended one waiting to be reaped, a zombie, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_learners_process_ends_when_svt_is_killed(tmp_path):
    """svt killed outright (SIGKILL: no Ctrl-C, no clean-up) while the learner's code runs: their process
    notices that svt is gone and ends within seconds, rather than sleeping on for the 600 s of HANG."""
    from test_study import processes_with

    hangs = planted(tmp_path, "hangs_orphaned.py", text=HANG)
    svt = subprocess.Popen([sys.executable, "-m", "benchmark", "check", str(hangs), "--timeout", "300"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})
    try:
        deadline = time.monotonic() + 120
        while not processes_with(str(hangs), parent=svt.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        children = processes_with(str(hangs), parent=svt.pid)
        assert children, "the learner's process never started"
        time.sleep(3)  # into loss_and_grads's sleep
    finally:
        svt.kill()
        svt.wait()
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in children if running(pid)]
    for pid in left:  # clean up before failing, so that no sleeper outlives the test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the learner's process {left} outlived svt by 20 s"
