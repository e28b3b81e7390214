"""`svt check`: your own NumPy network, in your names and layouts, against its PyTorch twin.

    svt check my_check.py [--batch N] [--seed S] [--steps K] [--lr LR] [--map W1=layers.0.weight,...]
    svt check a.py b.py ... [--csv FILE] [--jobs J] [--backend local|ray] [--address ADDRESS]

One file: the mapping of your parameters to the twin's, one line per compared tensor, what is
wrong in words, and a verdict line. Several files (or --csv): one line per file. Exit 0 when every
tensor agrees, 1 when one does not, 2 when a file cannot be used. The model file's interface is
in docs/check.md and benchmark/check/child.py.
"""
from __future__ import annotations

import argparse
import sys

from benchmark.core.errors import Interrupted, UserError, check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.commands.data import add_data_dir_argument

    parser.add_argument("files", nargs="+", metavar="FILE.py",
                        help="model files: TWIN, parameters(), loss_and_grads(x, y) (see docs/check.md)")
    group = parser.add_argument_group("check")
    group.add_argument("--batch", type=int, default=64, metavar="N", help="examples in the batch (default: 64)")
    group.add_argument("--seed", type=int, default=0, help="seed of the batches' order in MNIST (default: 0)")
    group.add_argument("--steps", type=int, default=1, metavar="K",
                       help="updates checked after the gradients, each from synchronized weights (default: 1)")
    group.add_argument("--lr", type=float, default=0.1, help="learning rate of those updates (default: 0.1)")
    group.add_argument("--map", default=None, metavar="THEIRS=TWIN,...",
                       help="fix the mapping of some parameters, e.g. W1=layers.0.weight (the rest by order and shape)")
    group.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="time allowed for loading the file and for each call into it (default: 60)")
    add_data_dir_argument(group)
    many = parser.add_argument_group("many files")
    many.add_argument("--csv", default=None, metavar="FILE", help="also write one row per file to this CSV file")
    many.add_argument("--jobs", type=int, default=2, metavar="J", help="files checked at once (default: 2)")
    many.add_argument("--backend", choices=("local", "ray"), default="local",
                      help="local threads (default), or Ray tasks (the optional extra: pip install -e \".[ray]\")")
    many.add_argument("--address", default=None, metavar="ADDRESS",
                      help="with --backend ray: the cluster (auto, or ray://host:port); default: a local instance")


def options_from(args: argparse.Namespace):
    from benchmark.check.engine import CheckOptions
    from benchmark.check.mapping import parse_map
    from benchmark.core.errors import check_size
    from benchmark.data.mnist import TRAIN_IMAGES

    if args.steps < 0:
        raise UserError(f"--steps must be 0 or more, got {args.steps}")
    check_size("--batch", args.batch, TRAIN_IMAGES // max(args.steps, 2),
               f"1/{max(args.steps, 2)} of the {TRAIN_IMAGES} MNIST training images (distinct batches)")
    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.address is not None and args.backend != "ray":
        raise UserError("--address is for --backend ray (a Ray cluster); the local backend needs none")
    if len(set(args.files)) != len(args.files):
        raise UserError(f"a file is given twice: {sorted({f for f in args.files if args.files.count(f) > 1})}")
    return CheckOptions(batch=args.batch, seed=args.seed, steps=args.steps, lr=args.lr,
                        overrides=parse_map(args.map), data_dir=args.data_dir)


def run(args: argparse.Namespace) -> int:
    """One file: the full report; several (or --csv): one line each. Exit 0, 1 or 2 (module docstring)."""
    options = options_from(args)
    if args.csv:
        check_output_file(args.csv, "--csv")
    if len(args.files) == 1 and not args.csv:
        return check_one(args.files[0], options, args.timeout)
    return check_many(args, options)


def check_one(path: str, options, timeout: float) -> int:
    from pathlib import Path

    from benchmark.check.engine import check
    from benchmark.check.learner import LearnerProcess, TheirError

    try:
        with LearnerProcess(path, timeout) as model:
            options.folder = str(Path(path).parent)
            report = check(model, options, Path(path).name)
    except TheirError as error:
        print(f"--- your code raised an exception ({error.where.rstrip(',')}); its traceback: ---", file=sys.stderr)
        print(error.traceback.rstrip(), file=sys.stderr)
        print("--- end of your traceback ---", file=sys.stderr)
        raise
    print(report.table())
    if report.findings:
        print("\nwhat is wrong:\n" + report.explanation())
    print(f"\n{report.verdict()}")
    return 0 if report.ok else 1


def check_many(args: argparse.Namespace, options) -> int:
    from benchmark.check.batch import check_files, write_csv

    if args.backend == "ray":
        from benchmark.study.backends import ray_module

        ray_module()  # the missing extra is named before any work
    width = max(len(path) for path in args.files)
    print(f"check: {len(args.files)} files, batch {options.batch}, seed {options.seed}, {options.steps} step(s), "
          f"{args.jobs} at once ({args.backend})")

    finished: dict[str, dict] = {}

    def show(row: dict) -> None:
        finished[row["file"]] = row
        print(f"{row['file']:<{width}}  {row['status']:<8}  {row['finding'] or 'every tensor agrees'}", flush=True)

    try:
        rows = check_files(args.files, options, args.timeout, args.jobs, args.backend, args.address, on_row=show)
    except KeyboardInterrupt:  # Ctrl-C: the rows finished are kept, the others say they were not checked
        rows = [finished.get(path) or not_checked(path) for path in args.files]
        if args.csv:
            write_csv(rows, args.csv)
        written = f"; wrote {args.csv}, the files not checked with status interrupted" if args.csv else ""
        raise Interrupted(f"{len(finished)} of {len(rows)} files checked{written}") from None
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "wrong", "unusable")}
    print(f"checked {len(rows)} files: {counts['ok']} ok, {counts['wrong']} wrong, {counts['unusable']} unusable")
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return max(row["exit"] for row in rows)


def not_checked(path: str) -> dict:
    """The row of a file a Ctrl-C left unchecked."""
    return {"file": path, "status": "interrupted", "exit": 130, "verdict": "", "seconds": 0.0,
            "finding": "not checked: svt check was interrupted (Ctrl-C)"}
