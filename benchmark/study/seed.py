"""One seed of `svt study`: one full lockstep run, as `svt run` makes it, on whichever worker runs it.

    job = seed_job(spec, seed, threads=1, train_limit=None, test_limit=None, check_every=50, data_dir=None)
    outcome = run_seed(job)      # {"result": {...}, "files": {"summary.json": text, "steps.csv": text, ...}}
    python -m benchmark.study.seed WORK   # a local worker: runs "JOB.json<TAB>OUTCOME.json" lines from stdin
                                          # (WORK, its study's work folder, only names it in `ps`)

A job is plain JSON data (the spec as a dict, the seed, the data slice, the thread share), so it
travels to a subprocess or a Ray node unchanged. The worker loads MNIST itself through
`benchmark.data.mnist` (the node's cache, fetched and MD5-checked there if needed), trains with
`benchmark.run.training_run.train_side_by_side` and sends back only results: the figures the study
needs (`result`) and the seed's summary and CSV tables as `benchmark.report.writer` writes them for a run
(`files`), never the dataset.

Thread share: `job["threads"]` threads per seed. The local backend starts the subprocess with
OPENBLAS_NUM_THREADS etc. set (OpenBLAS reads them only when NumPy loads); Ray sets them in its
workers' environment; both then get `torch.set_num_threads` here. A seed's figures depend on its
thread count in float32 (a different split of a reduction rounds differently, and training
amplifies it), so a study uses one count for all its seeds, whoever runs them.

Bad input found by the worker (MNIST missing or corrupt on that node) comes back as
{"error": message}: the same message on every attempt, so the study stops instead of retrying.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time

from benchmark.core.errors import UserError
from scratch_nn.spec import Spec, spec_from_dict, to_dict, with_overrides


def seed_job(spec: Spec, seed: int, threads: int, train_limit: int | None, test_limit: int | None,
             check_every: int, data_dir: str | None) -> dict:
    """The job of one seed as plain JSON data (lists, not tuples: the same whether it travels as a
    file or as a Ray argument): the spec with that seed, and how to run it."""
    job = {"seed": seed, "spec": to_dict(with_overrides(spec, train={"seed": seed})), "threads": threads,
           "train_limit": train_limit, "test_limit": test_limit, "check_every": check_every, "data_dir": data_dir}
    return json.loads(json.dumps(job))


@functools.lru_cache(maxsize=2)
def _mnist(data_dir: str | None):
    """MNIST on this node, loaded once per worker process (a Ray worker runs many seeds)."""
    from benchmark.data.mnist import load_mnist

    return load_mnist(data_dir, quiet=True)


def run_seed(job: dict) -> dict:
    """Train one seed on both sides; {"result", "files"}, or {"error"} for a problem the user must fix."""
    import torch
    import torch._dynamo  # noqa: F401  torch.optim imports it with the first optimiser (seconds): once per

    #                                   worker here, so that no seed's time includes it
    import benchmark.report.writer  # noqa: F401  (matplotlib, pandas) likewise

    torch.set_num_threads(job["threads"])
    try:
        mnist = _mnist(job["data_dir"])
    except UserError as error:
        return {"error": str(error)}
    return train_seed(job, mnist)


def train_seed(job: dict, mnist) -> dict:
    """The lockstep run of `svt run` on the job's slice of MNIST, summarised as `svt run` summarises it."""
    from benchmark.core.jsonio import json_ready
    from benchmark.data.mnist import as_inputs, as_labels
    from benchmark.report import writer
    from benchmark.run.training_run import train_side_by_side

    started = time.perf_counter()
    spec = spec_from_dict(job["spec"], where=f"svt study seed {job['seed']}")
    train_limit, test_limit = job["train_limit"], job["test_limit"]
    shape = spec.model.input_shape
    train = (as_inputs(mnist.train_images[:train_limit], spec.model.dtype, shape=shape),
             as_labels(mnist.train_labels[:train_limit]))
    test = (as_inputs(mnist.test_images[:test_limit], spec.model.dtype, shape=shape),
            as_labels(mnist.test_labels[:test_limit]))
    record = train_side_by_side(spec, train, test, check_every=job["check_every"], quiet=True)
    record.seconds_total = time.perf_counter() - started
    frames = writer.tables(record)
    summary = writer.summary(record, frames)
    files = {f"{stem}.csv": frame.to_csv(index=stem.startswith("confusion_")) for stem, frame in frames.items()}
    files["summary.json"] = json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n"
    return {"result": json_ready(seed_result(job, record, summary)), "files": files}


def seed_result(job: dict, record, summary: dict) -> dict:
    """What the study reads of a seed. Parity comes from the record's own fields (the verdict line
    and each check row's `ok`), not from parsing the verdict's words."""
    import torch

    from benchmark.core.environment import openblas_threads

    sides = {side: {"test_accuracy": values["test_accuracy"], "test_loss": values["test_loss"],
                    "train_seconds": values["train_seconds"]} for side, values in summary["sides"].items()}
    epochs = [{"epoch": row["epoch"], "side": row["side"], "test_accuracy": row["test_accuracy"],
               "test_loss": row["test_loss"]} for row in record.epochs]
    return {"seed": job["seed"], "job": job, "sides": sides, "epochs": epochs,
            "parity_verdict": record.parity_verdict,
            "parity_checks": len({row["step"] for row in record.parity}),
            "parity_broken": sum(1 for row in record.parity if not row["ok"]),
            "disagreements": summary["disagreements"], "stopped": record.stopped,
            "seconds": record.seconds_total,
            "worker": {"host": platform.node(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
                       "openblas_threads": openblas_threads()}}


def serve(lines) -> int:
    """A local worker's loop: for each line "JOB.json<TAB>OUTCOME.json", run the job and write its
    outcome atomically (the study sees the file appear, complete). Ends when its input closes.

    One worker runs many seeds: torch, its optimiser machinery and matplotlib load once per worker
    (about 8 s here), not once per seed. A seed's figures do not depend on what ran before it in
    the process (each builds its own generator, models and optimisers)."""
    from benchmark.core.files import write_atomically

    for line in lines:
        job_path, outcome_path = line.rstrip("\n").split("\t")
        with open(job_path, encoding="utf-8") as file:
            job = json.load(file)
        text = json.dumps(run_seed(job), allow_nan=False).encode("utf-8")
        write_atomically(outcome_path, lambda file: file.write(text))
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.stdin))
