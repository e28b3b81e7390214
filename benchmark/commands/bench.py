"""`svt bench`: how fast is the scratch MLP next to its torch twin, and how much memory does it take?

    svt bench [--spec NAME|FILE | --layers ...] [--dtype float32|float64] [--batch-sizes 1,16,64,256,1024]
              [--repeats N] [--threads N] [--out DIR] [--data-dir DIR] [--quick] [--profile]

Without --spec/--layers it measures both `mnist-mlp` (784-256-128-10) and `wide` (784-1024-1024-10),
and without --dtype both float32 and float64. What is measured, and how (benchmark.bench.worker):

- per batch size, the seconds of a training step split into forward (with the loss), backward and
  optimiser update, and the seconds of an inference forward, for both sides in one process on the
  same real MNIST batches, repeats interleaved (median of `--repeats` blocks after a warm-up);
- per row (spec, dtype, batch size), the machine's ceiling in the same seconds: the better of
  NumPy's and torch's GFLOP/s on a large square matmul, one product after each block of that
  library's side; each side's GFLOP/s per step (FLOPs counted as in benchmark.bench.timing) as a
  fraction of it;
- per spec and dtype, the seconds of one epoch on real MNIST at the spec's batch size;
- with --profile, per row, where each side's step goes, op by op: scratch's layers by their
  clocks, torch's top-level ops by torch.profiler, one block per side in the same process
  (benchmark.bench.profile);
- per spec, dtype and side, in a fresh process each, the peak resident memory of a short training
  run, the part of it beyond the loaded dataset, and its growth from the first epoch to the last.

The step sweep uses `--batch-sizes`; the epoch and the memory runs use the spec's batch size
(`--batch-size` overrides it); a memory run lasts 3 epochs (`--epochs`) of 12,000 images.

Threads: both sides get the same count, `--threads` (default: the cores this process may use). It
is set in a subprocess's environment before NumPy loads (see benchmark.bench.worker for why), and
what both libraries report is printed. In the tables every `ratio` is scratch / torch of a time,
so < 1 means scratch is faster; both sides' figures of a row come from the same minutes of the same
process.

Written to `--out` (default `reports/bench-<timestamp>`), built in a temporary folder and renamed
into place when complete:

    bench.csv       one row per measurement: spec, dtype, batch_size, metric, unit, scratch, torch,
                    ratio, update_path (the code that ran scratch's optimiser update: "openblas
                    (flat)", "numpy (flat)", "numpy (per tensor)"; scratch_nn.elementwise).
                    `ratio` is scratch / torch; for the timed metrics and the rates made
                    from them (step to ceiling_fraction below) it is the median, over the repeats,
                    of the ratio of the two sides' back-to-back blocks, which a slow spell of the
                    shared machine does not skew (so it may differ a little from scratch / torch of
                    the two medians); for the others it is scratch / torch of the row. Metrics (unit):
                      step_time, forward_time, backward_time, update_time (s per training step)
                      inference_time (s per batch), inference_throughput (images/s)
                      gflops (GFLOP/s per training step), ceiling_fraction (of the row's ceiling)
                      matmul_ceiling (GFLOP/s, median of the row's products; scratch = NumPy's,
                                      torch = torch's)
                      epoch_time (s; batch_size = the spec's)
                      peak_rss, train_memory (MB: the peak, and the peak less the data-loaded baseline)
                      memory_growth (% of the first epoch's peak, first epoch to last)
    bench.md        the tables below, the machine and thread report, and the targets
    bench.json      every raw measurement (each repeat), for a second look
    step_time.png   training-step time against batch size, both sides, one panel per spec and dtype
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmark.bench.measure import Plan, WorkerFailed, measure
from benchmark.commands.specargs import add_model_arguments, batch_size_flag, spec_from_args
from benchmark.core.errors import UserError, check_size
from benchmark.core.files import folder_written_atomically
from scratch_nn.spec import DEFAULT_SPEC, DTYPES, Spec

DEFAULT_SPECS = (DEFAULT_SPEC, "wide")
DEFAULT_BATCH_SIZES = (1, 16, 64, 256, 1024)
QUICK_BATCH_SIZES = (1, 64)
MNIST_TRAIN_IMAGES = 60_000
OUTPUT_FILES = ("bench.csv", "bench.md", "bench.json", "step_time.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.commands.data import add_data_dir_argument

    add_model_arguments(parser)
    group = parser.add_argument_group("bench", "--batch-size sets the batch of the epoch and memory runs (default: "
                                               "the spec's); --epochs the epochs of each memory run (default: 3; "
                                               "--quick: 2)")
    group.add_argument("--batch-sizes", metavar="LIST", default=None,
                       help="comma-separated batch sizes of the step and inference timings "
                            f"(default: {','.join(map(str, DEFAULT_BATCH_SIZES))}; --quick: "
                            f"{','.join(map(str, QUICK_BATCH_SIZES))})")
    group.add_argument("--repeats", type=int, default=None, metavar="N",
                       help="timed blocks per side and measurement, medians reported (default: 7; --quick: 3)")
    group.add_argument("--threads", type=int, default=None, metavar="N",
                       help="threads for both sides (default: the cores this process may use)")
    group.add_argument("--out", metavar="DIR", default=None,
                       help="output folder (default: reports/bench-<timestamp>); an earlier bench folder "
                            "there is replaced once the new one is complete")
    add_data_dir_argument(group)
    group.add_argument("--profile", action="store_true",
                       help="also print, per batch size, each side's step op by op (scratch: its layers' "
                            "forward and backward; torch: torch.profiler's top-level ops), measured in the "
                            "bench's own process right after that row's timing")
    group.add_argument("--quick", action="store_true",
                       help="a smoke run in seconds: default spec, float32, batch sizes 1 and 64, small epoch "
                            "and memory runs (figures are indicative only)")


def parse_batch_sizes(text: str | None, quick: bool) -> tuple[int, ...]:
    if text is None:
        return QUICK_BATCH_SIZES if quick else DEFAULT_BATCH_SIZES
    sizes = []
    for item in text.split(","):
        try:
            size = int(item.strip())
        except ValueError:
            size = 0
        if not 1 <= size <= MNIST_TRAIN_IMAGES:
            raise UserError(f"--batch-sizes: each item must be an integer from 1 to {MNIST_TRAIN_IMAGES:,} "
                            f"(the MNIST training images), got {item.strip()!r} in {text!r}")
        sizes.append(size)
    return tuple(sorted(set(sizes)))


def resolve_specs(args: argparse.Namespace) -> tuple[Spec, ...]:
    """The spec --spec/--layers give, else the default ones, each with the override flags applied."""
    if args.spec or args.layers:
        names = (args.spec,)
    else:
        names = (DEFAULT_SPEC,) if args.quick else DEFAULT_SPECS
    specs = []
    for name in names:
        spec = spec_from_args(argparse.Namespace(**{**vars(args), "spec": name}))
        if args.layers:  # the spec's name would describe layers it no longer has
            spec = Spec(f"layers {args.layers}", spec.model, spec.train, spec.description)
        specs.append(spec)
    return tuple(specs)


def make_plan(args: argparse.Namespace) -> Plan:
    specs = resolve_specs(args)
    if args.dtype:
        dtypes = (args.dtype,)
    else:
        dtypes = ("float32",) if args.quick else DTYPES
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if repeats < 1:
        raise UserError(f"--repeats must be a positive integer, got {repeats}")
    threads = args.threads if args.threads is not None else len(os.sched_getaffinity(0))
    if threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    if args.epochs is not None and args.epochs < 2:
        raise UserError(f"--epochs (of the memory runs) must be at least 2 to see growth, got {args.epochs}")
    quick = args.quick
    plan = Plan(specs=specs, dtypes=dtypes, batch_sizes=parse_batch_sizes(args.batch_sizes, quick),
                repeats=repeats, threads=threads, quick=quick,
                min_block_seconds=0.01 if quick else 0.05,
                ceiling_size=512 if quick else 2048,
                epoch_images=2048 if quick else MNIST_TRAIN_IMAGES,
                memory_epochs=args.epochs or (2 if quick else 3),
                memory_images=1024 if quick else 12_000, profile=args.profile)
    check_batch_sizes(plan, args)
    check_batch_norm(plan)
    return plan


def check_batch_sizes(plan: Plan, args: argparse.Namespace) -> None:
    """The epoch and memory runs train at the spec's batch size: refuse one larger than their images."""
    images, run = min((plan.epoch_images, "an epoch run"), (plan.memory_images, "a memory run"))
    for spec in plan.specs:
        check_size(batch_size_flag(args), spec.train.batch_size, images,
                   f"the {images} images {run} trains on{' (--quick)' if plan.quick else ''}")


def check_batch_norm(plan: Plan) -> None:
    """Batch-norm cannot train on a batch of one (torch refuses it too): refuse such a plan up front."""
    for spec in plan.specs:
        if not any(entry.spec.type == "batch_norm1d" for entry in spec.model.entries):
            continue
        if 1 in plan.batch_sizes:
            raise UserError(f"spec {spec.name!r} has batch-norm, which cannot train on a batch of 1 "
                            "(torch refuses it too); leave 1 out of --batch-sizes")
        for images in (plan.epoch_images, plan.memory_images):
            if images % spec.train.batch_size == 1:
                raise UserError(f"spec {spec.name!r} has batch-norm: the last batch of {images:,} images in "
                                f"batches of {spec.train.batch_size} would hold 1 image; choose another "
                                "--batch-size")


# ---------------------------------------------------------------------------------------------
# The output folder


def output_folder(out: str | None) -> Path:
    """The folder to write; refuses a folder that holds anything but an earlier bench's files."""
    path = Path(out) if out else Path("reports") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file; give a folder (new, empty, or an earlier bench's)")
    if path.is_dir():
        foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in OUTPUT_FILES)
        if foreign:
            raise UserError(f"--out {str(path)!r} holds other files ({', '.join(foreign[:3])}"
                            f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder, or an "
                            "earlier bench's, which is then replaced")
    return path


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    final = output_folder(args.out)
    from benchmark.bench.report import terminal_report, write_outputs
    from benchmark.data.mnist import load_mnist

    mnist = load_mnist(args.data_dir)  # fetched and verified here, so a data problem is a one-line error
    try:
        with folder_written_atomically(final) as temporary:  # Ctrl-C too: never a half-written folder
            timing, memories = measure(plan, mnist.root, temporary)
            results = write_outputs(plan, timing, memories, temporary)
    except WorkerFailed as error:
        print(f"svt bench: error: {error}", file=sys.stderr)
        return 1
    print(terminal_report(results))
    print(f"\nwritten: {final}/ ({', '.join(OUTPUT_FILES)})")
    return 0
