"""`svt study`: is the scratch - torch difference real, or the seed's? One lockstep run per seed, then statistics.

    svt study [--spec NAME|FILE | --layers ...] --seeds N [--epochs E] [--dtype ...] [--margin PP]
              [--jobs J] [--threads T] [--backend local|ray] [--address ADDRESS]
              [--out DIR] [--name NAME] [--resume]

Each seed is one full run as `svt run` makes it (`benchmark.study.seed`): within a seed both sides
start from the same weights and see the same batches and masks; across seeds all of that changes.
The seeds run on a local pool of worker processes or as Ray tasks (`benchmark.study.backends`);
the statistics (`benchmark.study.stats`) compare the paired difference scratch - torch with the
seed-to-seed spread; `benchmark.study.report` writes the folder.

Folders: finished seeds are kept in `<out>/.partial-<name>/seeds/seed-<k>/`, each written
atomically as it finishes. Only when every seed has ended is the study folder `<out>/<name>/`
built (aside, then renamed into place, as a run's report) and the partial folder removed. So
Ctrl-C keeps the finished seeds and leaves no half summary; `--resume` reuses the seeds finished
in the partial folder or in an earlier complete study of that name, and runs the rest.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from benchmark.commands.specargs import add_model_arguments, add_slice_arguments, spec_from_args
from benchmark.core.errors import UserError
from benchmark.core.tables import counted

MAX_SEEDS = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.commands.data import add_data_dir_argument

    add_model_arguments(parser)
    group = parser.add_argument_group("study")
    group.add_argument("--seeds", required=True, metavar="SEEDS",
                       help="N (N seeds from --seed, default the spec's seed), or a list and ranges: 0,3,7 or 10-19")
    group.add_argument("--margin", type=float, default=0.2, metavar="PP",
                       help="equivalence margin in percentage points of test accuracy (default: 0.2)")
    group.add_argument("--jobs", type=int, default=None, metavar="J",
                       help="seeds run at once (default: the cores / --threads; on a Ray cluster at --address, "
                            "its CPUs / --threads)")
    group.add_argument("--threads", type=int, default=1, metavar="T",
                       help="threads of each seed (default: 1); a seed's float32 figures depend on it, so a "
                            "study keeps one count for all its seeds")
    group.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: worker processes on this machine (default); ray: Ray tasks")
    group.add_argument("--address", default=None, metavar="ADDRESS",
                       help="with --backend ray: the cluster (auto, or ray://host:port); default: a local "
                            "Ray instance")
    group.add_argument("--out", default="reports", metavar="DIR", help="folder for the study folder (default: reports)")
    group.add_argument("--name", default=None, metavar="NAME",
                       help="name of the study folder (default: study-<spec>-<timestamp>)")
    group.add_argument("--resume", action="store_true",
                       help="reuse the seeds already finished in the study folder --name (or its unfinished one)")
    add_data_dir_argument(group)
    add_slice_arguments(group, "no progress bar or per-seed lines")


def parse_seeds(text: str, first: int) -> list[int]:
    """'10' -> first..first+9; '0,3,7' -> [0, 3, 7]; '10-12,20' -> [10, 11, 12, 20]."""
    allowed = "a count (10), or seeds and ranges separated by commas (0,3,7 or 10-19)"
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        seeds = list(range(first, first + int(text)))
    else:
        seeds = []
        for item in text.split(","):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
            if not match or (match[2] is not None and int(match[2]) < int(match[1])):
                raise UserError(f"--seeds {text!r}: {item.strip()!r} is not a seed or a rising range; give {allowed}")
            seeds += range(int(match[1]), int(match[2] or match[1]) + 1)
            if len(seeds) > MAX_SEEDS:
                break
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} names a seed twice")
    if not 2 <= len(seeds) <= MAX_SEEDS:
        raise UserError(f"--seeds {text!r} gives {len(seeds)} seeds; a study needs 2 to {MAX_SEEDS:,} "
                        "(two at least, for a spread)")
    return seeds


def check_study_input(args: argparse.Namespace) -> None:
    """The study's own options (the run's are checked by benchmark.commands.run.check_input)."""
    if not 0 < args.margin < 100:
        raise UserError(f"--margin must be between 0 and 100 percentage points, got {args.margin:g}")
    for flag, value in (("--jobs", args.jobs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.address is not None and args.backend != "ray":
        raise UserError("--address is for --backend ray (a Ray cluster); the local backend needs none")
    if args.resume and args.name is None:
        raise UserError("--resume needs --name NAME: the study folder whose finished seeds to reuse")


def make_backend(args: argparse.Namespace, seeds_to_run: int, work: Path):
    """The backend of --backend, running at most --jobs seeds at once (never more than there are).
    Default --jobs: this machine's cores / --threads; on a Ray cluster, its CPUs / --threads."""
    from benchmark.study.backends import LocalBackend, RayBackend

    jobs = args.jobs
    if jobs is None and not (args.backend == "ray" and args.address is not None):
        jobs = max(1, len(os.sched_getaffinity(0)) // args.threads)
    jobs = None if jobs is None else min(jobs, seeds_to_run)
    if args.backend == "ray":
        return RayBackend(jobs, args.threads, args.address)
    return LocalBackend(jobs, args.threads, work / "workers")


def checked_input(args: argparse.Namespace):
    """The spec and the seeds, every option checked, and the backend's needs met, before any work."""
    from benchmark.commands.run import check_input
    from benchmark.study import backends as study_backends

    spec = spec_from_args(args)
    check_input(args, spec)
    check_study_input(args)
    seeds = parse_seeds(args.seeds, first=spec.train.seed)
    if args.backend == "ray":
        study_backends.ray_module()  # the missing extra is named before any work
    else:
        from benchmark.data.mnist import ensure_mnist

        ensure_mnist(args.data_dir, quiet=args.quiet)  # a data problem is one line, before the workers start
    return spec, seeds


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec, seeds = checked_input(args)
    from benchmark.study import folder as study_folder
    from benchmark.study.report import terminal_report, write_study
    from benchmark.study.seed import seed_job

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name).strip(".-")
    name = args.name or f"study-{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    final, work = Path(args.out) / name, Path(args.out) / f".partial-{name}"
    jobs = [seed_job(spec, seed, args.threads, args.train_limit, args.test_limit, args.check_every, args.data_dir)
            for seed in seeds]
    results = study_folder.prepare(work, final, jobs, resume=args.resume)
    todo = [job for job in jobs if job["seed"] not in results]
    backend = make_backend(args, len(todo), work) if todo else None
    where = backend.describe() if backend else "nothing to run"
    print(f"svt study: {counted(len(seeds), 'seed')} of {spec.name} ({spec.model.dtype}, "
          f"{counted(spec.train.epochs, 'epoch')}); "
          f"{len(results)} reused, {len(todo)} to run on {where}", flush=True)
    context = {"spec": spec, "seeds": seeds, "results": results, "margin": args.margin, "backend": where,
               "backend_name": args.backend, "address": args.address, "jobs": backend.capacity if backend else 0,
               "threads": args.threads, "train_limit": args.train_limit, "test_limit": args.test_limit,
               "started": started}
    try:
        context["missing"] = run_seeds(args, backend, todo, results, work, len(seeds)) if todo else {}
        statistics = write_study(final, work, context)
    except KeyboardInterrupt:
        print(f"svt study: {len(results)} of {len(seeds)} seeds finished, kept in {work}; the same command with "
              f"--name {name} --resume runs the rest", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print(terminal_report(context, statistics))
    print(f"study: {final / 'study.html'} (also study.md, seeds.csv, summary.json, seeds/); "
          f"{time.perf_counter() - started:.1f} s in all")
    stopped = [seed for seed, result in results.items() if result["stopped"]]
    return 1 if context["missing"] or stopped else 0


def run_seeds(args: argparse.Namespace, backend, todo: list[dict], results: dict, work: Path, total: int) -> dict:
    """Run the seeds still to do, saving each into `results` and `work` as it finishes, with a
    progress bar; returns {seed: why it is missing}."""
    from tqdm import tqdm

    from benchmark.study import folder as study_folder
    from benchmark.study.backends import run_all

    bar = tqdm(total=total, initial=total - len(todo), desc="seeds", unit="seed", disable=args.quiet,
               dynamic_ncols=True)

    def finished(job: dict, outcome: dict) -> None:
        results[job["seed"]] = study_folder.save_seed(work, outcome)
        bar.update()
        if not args.quiet:
            tqdm.write(study_folder.seed_line(results[job["seed"]]))
            sys.stdout.flush()  # a pipe (`svt study | tee`) sees each seed as it ends, not all at the end

    def retried(job: dict, failure: str) -> None:
        tqdm.write(f"svt study: seed {job['seed']}: its worker failed ({failure}); running it once more",
                   file=sys.stderr)

    try:
        return run_all(backend, todo, finished, retried)
    finally:
        bar.close()
