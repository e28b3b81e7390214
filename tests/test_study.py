"""`svt study` end to end on a small slice of real MNIST: the folder, the statistics' inputs, a seed
equal to `svt run`'s, both pages in Chromium, Ctrl-C and --resume, a dying worker, bad input, and
the Ray backend on a real local Ray instance (`ray.init(num_cpus=2)` inside the command) giving
the local backend's figures seed for seed."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium_page import check_page, start_chromium
from scipy import stats

from benchmark.commands import cli
from benchmark.report.record import COLUMNS
from benchmark.study.backends import thread_environment
from benchmark.study.report import SEEDS_COLUMNS

SLICE = ["--train-limit", "600", "--test-limit", "300", "--epochs", "1", "--batch-size", "64", "--check-every", "4",
         "--layers", "32:relu,10"]
ONE_THREAD = thread_environment(1)


def svt(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=None if env is None else {**os.environ, **env})


def start(*args) -> subprocess.Popen:
    """`svt ...` in the background, with the default SIGINT handler (a shell's background job
    ignores SIGINT, and Python keeps an ignored SIGINT ignored), and its standard output a pipe as a
    user's `| tee` makes it: block-buffered (without PYTHONUNBUFFERED, which some shells export)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    return subprocess.Popen([sys.executable, "-m", "benchmark", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def processes_with(text: str, parent: int | None = None) -> list[int]:
    """Pids of the processes whose command line contains `text` (and, with `parent`, whose parent it is).

    `parent` tells a worker from a process the worker forks for a moment (a forked child carries
    its parent's command line until it execs, and killing it would not kill the worker).
    """
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or text not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                continue
            # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ')'
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent is None or ppid == parent:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):  # ended meanwhile
            pass
    return found


@pytest.fixture(scope="module")
def study(tmp_path_factory, mnist):  # `mnist`: the real data is fetched before the workers need it
    out = tmp_path_factory.mktemp("studies")
    result = svt("study", *SLICE, "--quiet", "--seeds", "3", "--jobs", "2", "--out", out, "--name", "small")
    assert result.returncode == 0, result.stderr
    return out / "small", result


@pytest.fixture(scope="module")
def run_of_seed_2(tmp_path_factory, mnist):
    """`svt run` of seed 2 with the study's share of one thread: the study's seed 2 must be this run
    (with 3 seeds on 2 workers, seed 2 runs in a worker that has run another seed before)."""
    out = tmp_path_factory.mktemp("runs")
    result = svt("run", *SLICE, "--quiet", "--seed", "2", "--out", out, "--name", "seed-2", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    return out / "seed-2"


@pytest.fixture(scope="module")
def ray_study(tmp_path_factory, mnist):
    """Seeds 0 and 1 of the `study` fixture's slice, as Ray tasks on a new local instance of 2 CPUs
    (without --address: not the cluster that RAY_ADDRESS, here a dead one, or /tmp/ray may name)."""
    out = tmp_path_factory.mktemp("ray-studies")
    result = svt("study", *SLICE, "--quiet", "--seeds", "2", "--jobs", "2", "--backend", "ray", "--out", out,
                 "--name", "ray", env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    return out / "ray", result


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def test_the_study_folder_holds_every_file(study):
    folder, _ = study
    assert {"study.html", "study.md", "seeds.csv", "epochs.csv", "summary.json", "per_seed.png", "differences.png",
            "epochs.png"} <= {path.name for path in folder.iterdir()}
    for seed in range(3):
        files = {path.name for path in (folder / "seeds" / f"seed-{seed}").iterdir()}
        assert {"seed.json", "summary.json", *(f"{table}.csv" for table in COLUMNS)} <= files
    assert [path.name for path in folder.parent.iterdir()] == ["small"]  # no partial or temporary folder


def test_seeds_csv_has_one_row_per_seed_and_side(study):
    seeds = pd.read_csv(study[0] / "seeds.csv")
    assert list(seeds.columns) == SEEDS_COLUMNS
    assert list(zip(seeds["seed"], seeds["side"])) == [(s, side) for s in range(3) for side in ("scratch", "torch")]
    assert seeds["parity_ok"].all() and seeds["parity_verdict"].str.len().gt(0).all()
    assert seeds["test_accuracy"].between(0.1, 1).all() and (seeds["seconds"] > 0).all()


def test_summary_statistics_are_those_of_the_seeds(study):
    summary = json.loads((study[0] / "summary.json").read_text())
    seeds = pd.read_csv(study[0] / "seeds.csv")
    accuracy = {side: 100 * seeds[seeds["side"] == side]["test_accuracy"].to_numpy() for side in ("scratch", "torch")}
    difference = accuracy["scratch"] - accuracy["torch"]
    assert summary["seeds"] == summary["seeds_used"] == [0, 1, 2] and summary["missing"] == {}
    scratch = summary["statistics"]["accuracy"]["scratch"]
    half = stats.t.ppf(0.975, 2) * accuracy["scratch"].std(ddof=1) / np.sqrt(3)
    assert scratch["mean"] == pytest.approx(accuracy["scratch"].mean())
    assert scratch["high"] - scratch["low"] == pytest.approx(2 * half)
    assert summary["statistics"]["accuracy_difference"]["mean"] == pytest.approx(difference.mean(), abs=1e-12)
    assert summary["backend"]["jobs"] == 2 and summary["backend"]["threads"] == 1
    assert summary["verdict"]["equivalence"].split(" within")[0] in ("equivalent", "not shown equivalent")


def test_each_worker_had_its_share_of_one_thread(study):
    for seed in range(3):
        worker = json.loads((study[0] / "seeds" / f"seed-{seed}" / "seed.json").read_text())["worker"]
        assert worker["openblas_threads"] == 1 and worker["torch_threads"] == 1, worker
        assert worker["pid"] != os.getpid()


def test_seeds_differ_and_the_sides_start_together_within_a_seed(study):
    first_losses = []
    for seed in range(3):
        steps = pd.read_csv(study[0] / "seeds" / f"seed-{seed}" / "steps.csv")
        first = steps[steps["step"] == 1].set_index("side")["loss"]
        assert first["scratch"] == pytest.approx(first["torch"], rel=1e-6)  # same weights, same batch
        first_losses.append(first["scratch"])
    assert len(set(first_losses)) == 3  # other weights and batches in each seed


def test_a_seed_is_the_run_that_svt_run_makes(study, run_of_seed_2):
    seed_folder = study[0] / "seeds" / "seed-2"
    pids = [json.loads((study[0] / "seeds" / f"seed-{seed}" / "seed.json").read_text())["worker"]["pid"]
            for seed in range(3)]
    assert pids[2] in pids[:2]  # seed 2 ran in a worker that had run seed 0 or 1 before
    for table in ("steps", "epochs", "parity", "drift"):
        ours, theirs = pd.read_csv(seed_folder / f"{table}.csv"), pd.read_csv(run_of_seed_2 / f"{table}.csv")
        drop = [column for column in ("seconds", "peak_memory_mb") if column in ours]
        pd.testing.assert_frame_equal(ours.drop(columns=drop), theirs.drop(columns=drop), check_exact=True)


def test_the_terminal_gives_the_table_and_the_verdict(study):
    out = study[1].stdout
    assert "study: layers-32relu-10, float32, 1 epoch, 3 of 3 seeds (seeds 0-2)" in out
    assert "scratch - torch, paired:" in out and "within ±0.2 pp" in out and "gradient parity: all" in out


@pytest.mark.browser
def test_report_page_in_chromium(browser, run_of_seed_2, tmp_path):
    check_page(browser, run_of_seed_2 / "report.html", "#verdict dl.facts", tmp_path / "report.png")


@pytest.mark.browser
def test_study_page_in_chromium(browser, study, tmp_path):
    check_page(browser, study[0] / "study.html", "#verdict dl.facts", tmp_path / "study.png")


def test_ctrl_c_keeps_the_finished_seeds_and_resume_runs_the_rest(tmp_path, mnist):
    args = ["study", *SLICE, "--seeds", "3", "--jobs", "1", "--out", tmp_path, "--name", "cut"]
    process = start(*args)
    try:
        seen, deadline = "", time.monotonic() + 180
        while "seed 0:" not in seen and time.monotonic() < deadline:  # the first seed is saved
            if select.select([process.stdout], [], [], 1.0)[0]:
                seen += os.read(process.stdout.fileno(), 4096).decode(errors="replace")
        assert "seed 0:" in seen, seen
        process.send_signal(signal.SIGINT)  # seed 1 is running now
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    stderr = stderr.decode(errors="replace")
    partial = tmp_path / ".partial-cut"
    assert process.returncode == 130 and "svt study: interrupted" in stderr and "Traceback" not in stderr
    assert f"1 of 3 seeds finished, kept in {partial}" in stderr and "--name cut --resume" in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [".partial-cut"]  # no study, no half summary
    assert sorted(path.name for path in (partial / "seeds").iterdir()) == ["seed-0"]
    assert processes_with(str(partial)) == []  # the running worker was stopped too
    kept = (partial / "seeds" / "seed-0" / "seed.json").read_bytes()
    resumed = svt(*args, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "3 seeds of layers-32relu-10 (float32, 1 epoch); 1 reused, 2 to run" in resumed.stdout
    assert (tmp_path / "cut" / "seeds" / "seed-0" / "seed.json").read_bytes() == kept  # reused, not run again
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["seeds_used"] == [0, 1, 2]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut"]


def test_resume_refuses_seeds_made_differently(study, tmp_path):
    result = svt("study", *SLICE, "--seeds", "3", "--epochs", "2", "--out", study[0].parent, "--name", "small",
                 "--resume")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "seed-0 was made differently (spec.train.epochs: 1, now 2)" in result.stderr


def test_a_dead_worker_is_retried_once_then_reported_missing(tmp_path, mnist):
    process = start("study", *SLICE, "--quiet", "--seeds", "3", "--jobs", "1", "--out", tmp_path, "--name", "dead")
    try:
        killed = []
        deadline = time.monotonic() + 120
        while len(killed) < 2 and time.monotonic() < deadline:  # kill seed 0's worker, then its retry
            for pid in processes_with(f"{tmp_path}/.partial-dead/workers", parent=process.pid):  # seed 0's
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
    assert len(killed) == 2
    assert process.returncode == 1, stderr.decode()
    assert "seed 0: its worker failed (killed by SIGKILL); running it once more" in stderr.decode()
    summary = json.loads((tmp_path / "dead" / "summary.json").read_text())
    assert summary["missing"] == {"0": "failed twice; last: killed by SIGKILL"}
    assert summary["seeds_used"] == [1, 2] and summary["statistics"]["accuracy_difference"]["n"] == 2
    assert "Not every seed counts: 2 of 3 seeds" in (tmp_path / "dead" / "study.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["--seeds", "x"], "--seeds 'x': 'x' is not a seed or a rising range; give a count (10), or seeds and ranges"),
    (["--seeds", "1"], "--seeds '1' gives 1 seeds; a study needs 2 to 10,000"),
    (["--seeds", "5-3"], "'5-3' is not a seed or a rising range"),
    (["--seeds", "0,1,1"], "--seeds '0,1,1' names a seed twice"),
    (["--seeds", "2", "--margin", "0"], "--margin must be between 0 and 100 percentage points, got 0"),
    (["--seeds", "2", "--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["--seeds", "2", "--address", "auto"], "--address is for --backend ray"),
    (["--seeds", "2", "--resume"], "--resume needs --name NAME"),
    (["--seeds", "2", "--resume", "--name", "nothing-here"], "--resume: there is no study 'nothing-here' in"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys, mnist):
    assert cli.main(["study", *args, "--out", str(tmp_path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("svt study: error: ") and message in error and error.count("\n") == 1


def test_missing_ray_names_the_extra_to_install(tmp_path):
    """Ray made unimportable in a subprocess (an absent module, not a stand-in for Ray's behaviour)."""
    code = ("import sys; sys.modules['ray'] = None\nfrom benchmark.commands.cli import main\n"
            f"sys.exit(main(['study', '--backend', 'ray', '--seeds', '2', '--out', {str(tmp_path)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ('svt study: error: Ray is not installed: --backend ray needs the optional extra, '
                                     'pip install -e ".[ray]"')


def test_ray_runs_the_study_on_a_local_instance(ray_study):
    folder, result = ray_study
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["backend"]["name"] == "ray" and summary["backend"]["jobs"] == 2
    assert summary["seeds_used"] == [0, 1] and summary["missing"] == {}
    assert "to run on ray on a local Ray instance: 2 tasks x 1 CPU(s)" in result.stdout
    assert (folder / "study.html").exists() and (folder / "seeds" / "seed-1" / "steps.csv").exists()


def test_ray_workers_are_other_processes_with_one_thread_each(ray_study):
    for seed in range(2):
        worker = json.loads((ray_study[0] / "seeds" / f"seed-{seed}" / "seed.json").read_text())["worker"]
        assert worker["pid"] != os.getpid() and worker["openblas_threads"] == 1 and worker["torch_threads"] == 1


def test_same_seed_same_figures_on_either_backend(ray_study, study):
    by_ray, by_local = pd.read_csv(ray_study[0] / "seeds.csv"), pd.read_csv(study[0] / "seeds.csv")
    columns = ["seed", "side", "test_accuracy", "test_loss", "parity_ok", "disagreements"]
    pd.testing.assert_frame_equal(by_ray[columns], by_local[by_local["seed"] < 2][columns], check_exact=True)
    for seed in range(2):
        steps = [pd.read_csv(folder / "seeds" / f"seed-{seed}" / "steps.csv") for folder in (ray_study[0], study[0])]
        pd.testing.assert_frame_equal(*steps, check_exact=True)
