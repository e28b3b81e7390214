"""Where the seeds of `svt study` run: a local pool of worker processes, or Ray tasks.

    backend = LocalBackend(jobs=2, threads=1, work=folder)     # or RayBackend(jobs, threads, address)
    missing = run_all(backend, jobs, on_finished)              # seed -> why it is missing

Both backends run `benchmark.study_seed.run_seed(job)` up to `jobs` seeds at once, each with a
fixed share of `threads` threads, and hand back each seed's outcome as it finishes. `run_all`
is the one scheduler over either: it keeps the backend full, retries once a seed whose worker
died, then reports it missing; on Ctrl-C (or any error) it stops every running seed.

Local: each seed runs in a fresh `python -m benchmark.study_seed` process, started with the
thread variables in its environment (OpenBLAS reads them only when NumPy loads, so a process
pool whose workers import NumPy before an initializer runs could not set them), in its own
process group (a terminal's Ctrl-C reaches `svt study`, which stops the workers itself, rather
than workers that would then look dead). A worker that dies is attributed to its own seed alone;
in a shared pool one death breaks every running task. The price is one interpreter start and
torch import per seed (about 3.5 s here).

Ray: the same function as a Ray task with `num_cpus=threads`, on the cluster at `address`
(`auto`, `ray://host:port`) or on a local Ray instance of `jobs * threads` CPUs. The project's
packages travel in the job's runtime environment (`py_modules`), the thread variables in its
`env_vars`; each node needs the project's dependencies installed. Ray is an optional extra.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.bench_env import THREAD_VARIABLES
from benchmark.errors import UserError

RETRIES = 1          # a seed whose worker died is run once more, then reported missing
POLL_SECONDS = 0.2
STOP_SECONDS = 10    # how long a stopped local worker gets to exit before it is killed
RAY_MISSING = 'Ray is not installed: --backend ray needs the optional extra, pip install -e ".[ray]"'


@dataclass
class Finished:
    """A seed that ended: its outcome (from `run_seed`), or why its worker died."""

    job: dict
    outcome: dict | None = None
    failure: str | None = None


def thread_environment(threads: int) -> dict[str, str]:
    """OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS for a worker of `threads` threads."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def run_all(backend, jobs: list[dict], on_finished: Callable[[dict, dict], None],
            on_retry: Callable[[dict, str], None] | None = None) -> dict[int, str]:
    """Run every job on `backend`; `on_finished(job, outcome)` for each seed that completes.

    Returns {seed: reason} for the seeds whose worker died twice. A UserError coming back from a
    worker (no MNIST on its node) stops the study. The backend is stopped on the way out, whatever
    the way (Ctrl-C included).
    """
    pending, attempts, missing = deque(jobs), Counter(), {}
    try:
        while pending or backend.running():
            while pending and backend.running() < backend.capacity:
                job = pending.popleft()
                attempts[job["seed"]] += 1
                backend.start(job)
            for finished in backend.wait(POLL_SECONDS):
                seed = finished.job["seed"]
                if finished.outcome is not None and "error" in finished.outcome:
                    raise UserError(f"seed {seed}: {finished.outcome['error']}")
                if finished.failure is None:
                    on_finished(finished.job, finished.outcome)
                elif attempts[seed] <= RETRIES:
                    if on_retry is not None:
                        on_retry(finished.job, finished.failure)
                    pending.appendleft(finished.job)
                else:
                    missing[seed] = f"worker died twice; last: {finished.failure}"
    finally:
        backend.stop()
    return missing


class LocalBackend:
    """Seeds in fresh worker processes on this machine, `jobs` at a time."""

    def __init__(self, jobs: int, threads: int, work: Path) -> None:
        self.capacity, self.threads, self.work = jobs, threads, work
        self.processes: dict[subprocess.Popen, tuple[dict, Path]] = {}
        work.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"local: {self.capacity} worker processes x {self.threads} thread(s)"

    def running(self) -> int:
        return len(self.processes)

    def start(self, job: dict) -> None:
        import os

        stem = self.work / f"seed-{job['seed']}"
        job_path, outcome_path = stem.with_suffix(".job.json"), stem.with_suffix(".outcome.json")
        job_path.write_text(json.dumps(job), encoding="utf-8")
        outcome_path.unlink(missing_ok=True)
        source_root = str(Path(__file__).resolve().parent.parent)  # found even without `pip install -e`
        env = {**os.environ, **thread_environment(self.threads)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        with open(stem.with_suffix(".log"), "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "benchmark.study_seed", str(job_path),
                                        str(outcome_path)], env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log, process_group=0)
        self.processes[process] = (job, outcome_path)

    def wait(self, timeout: float) -> list[Finished]:
        """The seeds whose process has exited, after waiting up to `timeout` seconds for one."""
        time.sleep(timeout)
        finished = []
        for process, (job, outcome_path) in list(self.processes.items()):
            if process.poll() is None:
                continue
            del self.processes[process]
            if process.returncode == 0 and outcome_path.exists():
                finished.append(Finished(job, outcome=json.loads(outcome_path.read_text(encoding="utf-8"))))
                outcome_path.unlink()
            else:
                finished.append(Finished(job, failure=self.death(process.returncode, outcome_path.with_name(
                    f"seed-{job['seed']}.log"))))
        return finished

    @staticmethod
    def death(returncode: int, log: Path) -> str:
        """'killed by SIGKILL' or 'exit status 1: <the last line the worker wrote>'."""
        if returncode < 0:
            return f"killed by {signal.Signals(-returncode).name}"
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
        return f"exit status {returncode}" + (f": {lines[-1]}" if lines else "")

    def stop(self) -> None:
        """End every running worker (SIGTERM, then SIGKILL after STOP_SECONDS)."""
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def ray_module():
    """`import ray`, or a UserError naming the command that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


class RayBackend:
    """Seeds as Ray tasks of `threads` CPUs each, at most `jobs` in flight."""

    def __init__(self, jobs: int | None, threads: int, address: str | None) -> None:
        """`jobs` None: as many tasks at once as the cluster has CPUs for (`threads` each)."""
        import benchmark
        import scratch_nn
        import torch_ref
        from benchmark.study_seed import run_seed

        ray = self.ray = ray_module()
        self.threads, self.address = threads, address
        runtime_env = {"env_vars": thread_environment(threads), "py_modules": [benchmark, scratch_nn, torch_ref]}
        options = {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": "ERROR"}
        if address is None:  # a local instance sized to the study (options only a new instance takes)
            options.update(num_cpus=(jobs or 1) * threads, include_dashboard=False)
        self.started_here = not ray.is_initialized()
        try:
            if self.started_here:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"--address {address}: no Ray cluster could be reached ({error})") from None
        self.capacity = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        self.task = ray.remote(num_cpus=threads, max_retries=0)(run_seed)  # retried by run_all, as local
        self.refs: dict = {}

    def describe(self) -> str:
        where = f"cluster {self.address}" if self.address else "a local Ray instance"
        return f"ray on {where}: {self.capacity} tasks x {self.threads} CPU(s)"

    def running(self) -> int:
        return len(self.refs)

    def start(self, job: dict) -> None:
        self.refs[self.task.remote(job)] = job

    def wait(self, timeout: float) -> list[Finished]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                finished.append(Finished(job, outcome=self.ray.get(ref)))
            except self.ray.exceptions.RayError as error:  # the task raised, or its worker died
                finished.append(Finished(job, failure=f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"))
        return finished

    def stop(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
