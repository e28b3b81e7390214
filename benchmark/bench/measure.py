"""The measuring half of `svt bench` seen from the parent process: the plan, and the subprocesses.

    timing, memories = measure(plan, data_root, folder)   # benchmark.bench.worker, in fresh processes

The timing run (both sides in one process) comes first, then one memory run per spec, dtype and
side, each in a process of its own; every worker gets the plan's thread count in its environment
before NumPy loads (benchmark.bench.worker says why).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.environment import THREAD_VARIABLES
from scratch_nn.spec import Spec, to_dict


@dataclass(frozen=True)
class Plan:
    """Everything a bench run measures, resolved and checked before anything starts."""

    specs: tuple[Spec, ...]
    dtypes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    repeats: int
    threads: int
    quick: bool
    min_block_seconds: float  # each timed block of steps lasts at least this long
    ceiling_size: int  # the square matmul of the ceiling
    epoch_images: int  # the epoch timed on both sides
    memory_epochs: int  # the memory run of each side: epochs over the first `memory_images` images
    memory_images: int
    profile: bool = False  # per row, both sides' per-op profile (benchmark.bench.profile)


class WorkerFailed(Exception):
    """A measuring subprocess exited with an error (its own message is on stderr above)."""


def run_worker(job: str, config: dict, folder: Path, threads: int) -> dict:
    """Run `python -m benchmark.bench.worker JOB` with the thread variables set; return its result."""
    stem = folder / f"{job}-{len(list(folder.glob('*.config.json')))}"
    config_path, result_path = stem.with_suffix(".config.json"), stem.with_suffix(".result.json")
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    source_root = str(Path(__file__).resolve().parents[2])  # found even without `pip install -e`
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, "-m", "benchmark.bench.worker", job, "--config", str(config_path),
                                "--result", str(result_path)], env=env)
    if completed.returncode != 0:
        raise WorkerFailed(f"the {job} subprocess failed with exit status {completed.returncode} (see above)")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    config_path.unlink()
    result_path.unlink()
    return result


def measure(plan: Plan, data_root: Path, folder: Path) -> tuple[dict, list[dict]]:
    """The timing run (both sides, one process), then one memory run per spec, dtype and side."""
    plain_specs = [to_dict(spec) for spec in plan.specs]
    timing = run_worker("timing", {
        "specs": plain_specs, "dtypes": list(plan.dtypes), "batch_sizes": list(plan.batch_sizes),
        "repeats": plan.repeats, "threads": plan.threads, "data_dir": str(data_root),
        "min_block_seconds": plan.min_block_seconds, "ceiling_size": plan.ceiling_size,
        "epoch_images": plan.epoch_images, "profile": plan.profile}, folder, plan.threads)
    memories = []
    for spec, plain in zip(plan.specs, plain_specs):
        for dtype in plan.dtypes:
            for side in ("scratch", "torch"):
                print(f"svt bench: {spec.name} {dtype}: memory of a {side} training run "
                      f"({plan.memory_epochs} epochs of {plan.memory_images:,} images)", file=sys.stderr, flush=True)
                memories.append(run_worker("memory", {
                    "spec": plain, "dtype": dtype, "side": side, "threads": plan.threads,
                    "data_dir": str(data_root), "epochs": plan.memory_epochs, "images": plan.memory_images},
                    folder, plan.threads))
    return timing, memories
