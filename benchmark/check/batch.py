"""Many model files (an instructor's class): one row per file, on local threads or Ray tasks.

    rows = check_files(paths, options, timeout=60, jobs=2, backend="local", address=None,
                       on_row=print_row)      # each row as it finishes, then all in the paths' order

`check_file(job)` never raises: a file that cannot be used (its code raised, it hung past the
timeout, its process died, it does not meet the interface) is its own row with status "unusable",
so one bad submission never ends the batch. Each file's code runs in its own process
(benchmark.check.learner), whatever the backend; the backend only decides where svt's side of
each check runs: `jobs` threads of this process (the learner processes do the work in parallel;
torch releases the GIL), or Ray tasks with the study's conventions (benchmark.study.backends: the
project's packages in the job's runtime environment, one thread per task, `address` an existing
cluster or None for a new local instance). A file is shipped to a Ray task as its text too: on a
node that cannot see its path it is written to a temporary folder there (so it must then be
self-contained).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from benchmark.check.learner import LearnerProcess
from benchmark.core.errors import UserError

CSV_FIELDS = ("file", "status", "exit", "verdict", "finding", "seconds")


def make_job(path: str, options, timeout: float, threads: int | None = None) -> dict:
    """What a worker needs to check one file (plain data, for Ray); `threads`: the BLAS threads of
    its learner's process (None: as the worker's own, which a Ray task sets to 1)."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        source = None
    return {"path": str(path), "source": source, "options": options, "timeout": timeout, "threads": threads}


def check_file(job: dict) -> dict:
    """The row of one file: status ok / wrong / unusable, its exit status, the verdict and first finding."""
    from benchmark.check.engine import check
    from benchmark.check.learner import LearnerProcess, TheirError

    path, started = job["path"], time.monotonic()
    name = Path(path).name
    row = {"file": path, "status": "unusable", "exit": 2, "verdict": "", "finding": "", "seconds": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        if not os.path.isfile(path) and job["source"] is not None:  # a Ray node without the file
            path = os.path.join(folder, name)
            Path(path).write_text(job["source"], encoding="utf-8")
        options = job["options"]
        if options.folder is None:
            options = type(options)(**{**options.__dict__, "folder": str(Path(path).parent)})
        try:
            with LearnerProcess(path, job["timeout"], job.get("threads"), quiet=True) as model:
                report = check(model, options, name)
            row.update(status="ok" if report.ok else "wrong", exit=0 if report.ok else 1, verdict=report.verdict(),
                       finding=report.findings[0] if report.findings else "")
        except TheirError as error:  # no traceback is shown in a batch: where it was raised instead
            finding = f"{error.where} raised {error.summary}{where_in_their_file(error.traceback, name)}{error.hint}"
            row.update(verdict=f"{name}: cannot be checked: {finding.removeprefix(name + ', ')}", finding=finding)
        except UserError as error:
            message = str(error).splitlines()[0]
            row.update(verdict=f"{name}: cannot be checked: {message.removeprefix(name + ': ')}", finding=message)
    row["seconds"] = round(time.monotonic() - started, 2)
    return row


def where_in_their_file(traceback: str, name: str) -> str:
    """" (line 12)": the last line of their traceback in their file, or ""."""
    import re

    lines = re.findall(rf'File "[^"]*{re.escape(name)}", line (\d+)', traceback)
    return f" (line {lines[-1]})" if lines and f"line {lines[-1]})" not in traceback.splitlines()[-1] else ""


def check_files(paths: list[str], options, timeout: float, jobs: int, backend: str = "local",
                address: str | None = None, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Every file's row (`check_file`), in the order of `paths`; `on_row` sees each as it finishes."""
    # local: the cores shared among the `jobs` learner processes that run at once (each one's BLAS
    # would otherwise start a thread per core: jobs x cores threads on the machine)
    threads = None if backend == "ray" else max(1, (os.cpu_count() or 1) // jobs)
    job_list = [make_job(path, options, timeout, threads) for path in paths]
    rows: dict[str, dict] = {}
    if backend == "ray":
        for row in ray_rows(job_list, jobs, address):
            rows[row["file"]] = row
            if on_row:
                on_row(row)
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        LearnerProcess.interrupted.clear()
        try:
            for future in as_completed([pool.submit(check_file, job) for job in job_list]):
                row = future.result()
                rows[row["file"]] = row
                if on_row:
                    on_row(row)
        except KeyboardInterrupt:  # the running files' processes end now, also one started after the SIGINT
            pool.shutdown(wait=False, cancel_futures=True)
            LearnerProcess.kill_all()
            raise
        finally:  # the files not started are not started
            pool.shutdown(wait=True, cancel_futures=True)
    return [rows[str(path)] for path in paths]


def ray_rows(job_list: list[dict], jobs: int | None, address: str | None):
    """`check_file` as Ray tasks of one CPU each, at most `jobs` at once; yields rows as they finish."""
    import benchmark
    import scratch_nn
    import torch_ref
    from benchmark.study.backends import ray_module, thread_environment

    ray = ray_module()
    options = {"runtime_env": {"env_vars": thread_environment(1), "py_modules": [benchmark, scratch_nn, torch_ref]},
               "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        options.update(num_cpus=jobs or 1, include_dashboard=False)
    started_here = not ray.is_initialized()
    try:
        if started_here:
            ray.init(address=address or "local", **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"--address {address}: no Ray cluster could be reached" if address else "a local Ray instance " \
                                                                                        "could not be started"
        raise UserError(f"{where} ({error})") from None
    task = ray.remote(num_cpus=1, max_retries=0)(check_file)
    capacity = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending, running = list(job_list), {}
    try:
        while pending or running:
            while pending and len(running) < capacity:
                job = pending.pop(0)
                running[task.remote(job)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as error:  # the task's worker died: that file's row
                    yield {"file": job["path"], "status": "unusable", "exit": 2, "seconds": 0.0,
                           "verdict": f"{Path(job['path']).name}: cannot be checked: the Ray task failed",
                           "finding": f"the Ray task failed: {type(error).__name__}"}
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        if started_here and ray.is_initialized():
            ray.shutdown()


def write_csv(rows: list[dict], path: str) -> None:
    """The rows as CSV (CSV_FIELDS), written atomically."""
    import csv
    import io

    from benchmark.core.files import write_atomically

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({field: row[field] for field in CSV_FIELDS} for row in rows)
    write_atomically(path, lambda file: file.write(text.getvalue().encode("utf-8")))
