"""Where the seeds of `svt study` run: a local pool of worker processes, or Ray tasks.

    backend = LocalBackend(jobs=2, threads=1, work=folder)     # or RayBackend(jobs, threads, address)
    missing = run_all(backend, jobs, on_finished)              # seed -> why it is missing

Both backends run `benchmark.study.seed.run_seed(job)` up to `jobs` seeds at once, each with a
fixed share of `threads` threads, and hand back each seed's outcome as it finishes. `run_all`
is the one scheduler over either: it keeps the backend full, retries once a seed whose worker
died, then reports it missing; on Ctrl-C (or any error) it stops every running seed.

Local: `jobs` long-lived `python -m benchmark.study.seed` processes, each started with the thread
variables in its environment (OpenBLAS reads them only when NumPy loads; the workers of a
`ProcessPoolExecutor` import NumPy, through the parent's main module, before an initializer
runs) and in its own process group (a terminal's Ctrl-C reaches `svt study`, which stops the
workers itself, instead of workers that would then look dead). Each is handed one seed at a time
and loads torch and MNIST once. A worker that dies is charged to its own seed alone, where in a
`ProcessPoolExecutor` one death breaks every running task; the next seed gets a fresh worker.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.environment import THREAD_VARIABLES
from benchmark.core.errors import UserError

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

    Returns {seed: reason} for the seeds that failed twice (the worker died, or the task raised).
    A UserError coming back from a worker (no MNIST on its node) stops the study. The backend is
    stopped on the way out, whatever the way (Ctrl-C included).
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
                    missing[seed] = f"failed twice; last: {finished.failure}"
    finally:
        backend.stop()
    return missing


class LocalBackend:
    """Seeds on up to `jobs` long-lived worker processes on this machine (`python -m benchmark.study.seed`),
    each handed one seed at a time on its standard input."""

    def __init__(self, jobs: int, threads: int, work: Path) -> None:
        self.capacity, self.threads, self.work = jobs, threads, work
        self.idle: list[subprocess.Popen] = []
        self.busy: dict[subprocess.Popen, tuple[dict, Path]] = {}
        self.logs: dict[subprocess.Popen, Path] = {}
        work.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"local: {self.capacity} worker processes x {self.threads} thread(s)"

    def running(self) -> int:
        return len(self.busy)

    def spawn(self) -> subprocess.Popen:
        """A new worker, its thread variables set before its interpreter starts, in its own process group."""
        import os

        source_root = str(Path(__file__).resolve().parents[2])  # found even without `pip install -e`
        env = {**os.environ, **thread_environment(self.threads)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        log_path = self.work / f"worker-{len(self.logs)}.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "benchmark.study.seed", str(self.work)], env=env,
                                      stdin=subprocess.PIPE, stdout=log, stderr=log, text=True, process_group=0)
        self.logs[worker] = log_path
        return worker

    def start(self, job: dict) -> None:
        stem = self.work / f"seed-{job['seed']}"
        job_path, outcome_path = stem.with_suffix(".job.json"), stem.with_suffix(".outcome.json")
        job_path.write_text(json.dumps(job), encoding="utf-8")
        outcome_path.unlink(missing_ok=True)
        while self.idle and self.idle[-1].poll() is not None:  # an idle worker that died meanwhile
            self.idle.pop()
        worker = self.idle.pop() if self.idle else self.spawn()
        worker.stdin.write(f"{job_path}\t{outcome_path}\n")
        worker.stdin.flush()
        self.busy[worker] = (job, outcome_path)

    def wait(self, timeout: float) -> list[Finished]:
        """The seeds that ended (outcome written, or worker dead), after waiting `timeout` seconds."""
        time.sleep(timeout)
        finished = []
        for worker, (job, outcome_path) in list(self.busy.items()):
            if outcome_path.exists():  # renamed into place complete; the worker waits for the next seed
                del self.busy[worker]
                self.idle.append(worker)
                finished.append(Finished(job, outcome=json.loads(outcome_path.read_text(encoding="utf-8"))))
                outcome_path.unlink()
            elif worker.poll() is not None:
                del self.busy[worker]
                finished.append(Finished(job, failure=self.death(worker.returncode, self.logs[worker])))
        return finished

    @staticmethod
    def death(returncode: int, log: Path) -> str:
        """'killed by SIGKILL' or 'exit status 1: <the last line the worker wrote>'."""
        if returncode < 0:
            return f"killed by {signal.Signals(-returncode).name}"
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
        return f"exit status {returncode}" + (f": {lines[-1]}" if lines else "")

    def stop(self) -> None:
        """End every worker, idle or busy (SIGTERM, then SIGKILL after STOP_SECONDS)."""
        workers = self.idle + list(self.busy)
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            try:
                worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            worker.stdin.close()
        self.idle, self.busy = [], {}


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
        from benchmark.study.seed import run_seed

        ray = self.ray = ray_module()
        self.threads, self.address = threads, address
        runtime_env = {"env_vars": thread_environment(threads), "py_modules": [benchmark, scratch_nn, torch_ref]}
        options = {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": "ERROR"}
        if address is None:  # a local instance sized to the study (options only a new instance takes)
            options.update(num_cpus=(jobs or 1) * threads, include_dashboard=False)
        self.started_here = not ray.is_initialized()
        try:
            if self.started_here:  # "local": always a new instance, even where RAY_ADDRESS or another
                ray.init(address=address or "local", **options)  # job's /tmp/ray cluster file names one
        except (ConnectionError, RuntimeError, ValueError) as error:
            if address is None:
                raise UserError(f"a local Ray instance could not be started ({error})") from None
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
                finished.append(Finished(job, failure=self.failure(error)))
        return finished

    @staticmethod
    def failure(error: Exception) -> str:
        """'WorkerCrashedError: ...', or for an exception raised in the task its own type and message."""
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException):
            return f"the task raised {type(cause).__name__}: {cause}"
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[-1] if lines else ''}"

    def stop(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
