"""`svt parity`: the parity engine (benchmark.parity) on real MNIST batches.

    svt parity [--spec NAME|FILE | --layers ...] [--dtype float64] [--steps K] [--batch N] [--seeds 0-19]
               [--dump FILE.npz]

runs both on real MNIST batches (those the first epoch of training would see), prints the tables
and a one-line verdict, and exits 0 on parity, 1 on a break, 2 on bad input.
"""
from __future__ import annotations

import argparse
import textwrap

import numpy as np

from benchmark.core.errors import UserError, check_output_file, check_size
from benchmark.core.tables import counted, terminal_width
from benchmark.parity.compare import exact_bound
from benchmark.parity.engine import gradient_parity
from benchmark.parity.report import ParityReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `svt parity`: the shared model options, plus steps, batch, dump and data folder."""
    from benchmark.commands.data import add_data_dir_argument
    from benchmark.commands.specargs import add_model_arguments

    add_model_arguments(parser)
    group = parser.add_argument_group("parity")
    group.add_argument("--steps", type=int, default=10, metavar="K",
                       help="optimiser steps compared in lockstep after the gradient check (default: 10)")
    group.add_argument("--batch", type=int, default=None, metavar="N",
                       help="examples per batch (default: the spec's batch_size)")
    group.add_argument("--dump", metavar="FILE.npz", default=None,
                       help="write every compared tensor of both sides to this .npz (keys scratch/..., torch/...)")
    group.add_argument("--seeds", type=parse_seeds, default=None, metavar="SEEDS",
                       help="a sweep: the same check for each seed (init and batches), one line each, and how many "
                            "break; a range 0-19, a list 0,3,7, or a count N (seeds 0 to N-1)")
    add_data_dir_argument(group)


def parse_seeds(text: str) -> list[int]:
    """`0-19` (inclusive), `0,3,7`, or `20` (seeds 0..19): the seeds of a sweep."""
    try:
        if "-" in text.strip("-"):
            first, last = (int(part) for part in text.split("-", 1))
            seeds = list(range(first, last + 1))
        elif "," in text:
            seeds = [int(part) for part in text.split(",")]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected a range A-B, a list A,B,C or a count N of seeds >= 0, got {text!r}")
    return seeds


def mnist_batches(spec, batch: int, count: int, data_dir: str | None):
    """The scratch model of `spec` and the first `count` training batches of its first epoch, drawn
    as in training: one generator(seed) gives the init, then the epoch's permutation."""
    from benchmark.data.mnist import as_inputs, as_labels, load_mnist
    from scratch_nn.model import MLP

    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(spec.train.seed)
    model = MLP(spec.model, rng)
    order = rng.permutation(len(mnist.train_labels))
    batches = []
    for start in range(0, count * batch, batch):
        chosen = order[start:start + batch]
        batches.append((as_inputs(mnist.train_images[chosen], spec.model.dtype, shape=spec.model.input_shape),
                        as_labels(mnist.train_labels[chosen])))
    return model, batches


def function_batches(spec, batch: int, count: int):
    """A fit spec's scratch model and `count` batches of its points, drawn as `svt fit` draws them:
    all the points (batch_size 0), else one permutation from the generator after the init."""
    from benchmark.data.functions import load_points
    from scratch_nn.model import MLP

    points = load_points(spec.data, spec.model.dtype)
    rng = np.random.default_rng(spec.train.seed)
    model = MLP(spec.model, rng)
    batch = min(batch or len(points), len(points))
    if batch == len(points):
        return model, [(points.x, points.y)] * count
    chosen = np.resize(rng.permutation(len(points)), count * batch).reshape(count, batch)  # the order, repeated
    return model, [(points.x[indices], points.y[indices]) for indices in chosen]


def run(args: argparse.Namespace) -> int:
    """Gradient parity (with the finite-difference referee) on a real MNIST batch, then --steps
    optimiser steps in lockstep; exit 0 on parity, 1 on a break, 2 on bad input."""
    from benchmark.commands.specargs import spec_from_args
    from benchmark.data.mnist import TRAIN_IMAGES

    spec = spec_from_args(args)
    batch = spec.train.batch_size if args.batch is None else args.batch
    if args.steps < 0:
        raise UserError(f"--steps must be 0 or more, got {args.steps}")
    if spec.data.is_function:  # a fit's spec (svt fit): its points instead of MNIST
        if args.seeds is not None or args.dump:
            raise UserError("--seeds and --dump check MNIST batches; a fit spec takes --steps and --batch")
        print(f"parity: spec {spec.name} (a fit of {spec.data.source}), {spec.model.dtype}, "
              f"batch {batch or 'all points'}, {args.steps} steps of {spec.train.optimizer}")
        report = check(spec, batch, args.steps, args.data_dir, show=True)
        print(report.verdict())
        return 0 if report.ok else 1
    check_size("--batch" if args.batch is not None else "the spec's batch_size", batch,
               TRAIN_IMAGES // max(args.steps, 1), f"the {TRAIN_IMAGES} MNIST training images" if args.steps < 2
               else f"1/{args.steps} of the {TRAIN_IMAGES} MNIST training images "
                    f"(--steps {args.steps}: distinct batches)")
    if batch < 2 and any(entry.spec.type == "batch_norm1d" for entry in spec.model.entries):
        raise UserError(f"--batch {batch}: batch norm needs at least 2 examples per batch in training")
    if args.dump:
        check_output_file(args.dump, "--dump")
    if args.seeds is not None:
        return sweep(spec, batch, args.steps, args.seeds, args.data_dir)
    print(f"parity: spec {spec.name}, {spec.model.dtype}, batch {batch}, {counted(args.steps, 'step')} of "
          f"{spec.train.optimizer}")
    report = check(spec, batch, args.steps, args.data_dir, show=True)
    if args.dump:
        report.dump(args.dump)
        print(f"\nwrote {len(report.arrays())} arrays to {args.dump}")
    say(report.verdict())
    return 0 if report.ok else 1


def check(spec, batch: int, steps: int, data_dir: str | None, show: bool = False) -> ParityReport:
    """The gradient check (with the finite-difference referee) on the first MNIST batch of the
    spec's first epoch, then `steps` optimiser steps; `show` prints the tables as they come."""
    from benchmark.parity.trajectory import trajectory_parity

    batches_of = function_batches if spec.data.is_function else mnist_batches
    model, batches = batches_of(spec, batch, max(steps, 1), *([] if spec.data.is_function else [data_dir]))
    report = gradient_parity(model, *batches[0], l1=spec.train.l1, numerical=True)
    if show:
        print(report.table(terminal_width()))
        say(f"rule: {report.rule()}")
    if steps:
        trajectory = trajectory_parity(model, spec.train, batches[:steps])
        if show:
            print()
            say(f"trajectory: {counted(steps, 'step')}, each from synchronized state (parameters, optimiser state, "
                "buffers, lr); free drift: the two sides trained apart")
            print(trajectory.step_table(terminal_width()))
        report = report + trajectory
    return report


def say(text: str) -> None:
    """Print a line of prose wrapped to the terminal's width, continuation lines indented."""
    print("\n".join(textwrap.wrap(text, width=terminal_width(), subsequent_indent="  ", break_on_hyphens=False)),
          flush=True)


def sweep(spec, batch: int, steps: int, seeds: list[int], data_dir: str | None) -> int:
    """`check` for every seed, one line each, and how many broke; exit 1 if any did."""
    from scratch_nn.spec import with_overrides

    print(f"parity sweep: spec {spec.name}, {spec.model.dtype}, batch {batch}, {counted(steps, 'step')} of "
          f"{spec.train.optimizer}, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})")
    broken, kinked, inherited, ratio = [], 0, 0, (0.0, "")
    for seed in seeds:
        report = check(with_overrides(spec, train={"seed": seed}), batch, steps, data_dir)
        kinked += sum(row.explained.startswith("kink") for row in report.explained)
        inherited += sum(row.explained.startswith("inherited") for row in report.explained)
        ratio = max([ratio, *((row.exact_scratch / row.exact_torch, f"seed {seed}, {row.name}") for row in report.rows
                              if row.exact_scratch > exact_bound(0.0) and row.exact_torch > 0 and not row.explained)],
                    key=lambda pair: pair[0])
        say(f"seed {seed:>4}: {report.verdict()}")
        broken += [seed] * (not report.ok)
    say(f"sweep: {len(broken)} of {len(seeds)} seeds break ({spec.name}, {spec.model.dtype})"
          + (f": seeds {', '.join(map(str, broken))}" if broken else "")
          + f"; rows explained: {kinked} by kink crossings, {inherited} inheriting rounding from upstream"
          + ("" if spec.model.dtype != "float32" else
             f"; largest scratch/torch distance from f64 among rows above the floor, unexplained: {ratio[0]:.2f} "
             f"({ratio[1]})" if ratio[1] else "; every unexplained row within the rounding floor"))
    return 1 if broken else 0
