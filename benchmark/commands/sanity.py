"""`svt sanity`: why does my network not learn? Seven checks on real MNIST, in the order to fix them.

    svt sanity [--spec NAME|FILE | --layers ...] [--lr ...] [--dtype ...] [--json FILE] [--data-dir DIR]

The recipe of Karpathy's "A Recipe for Training Neural Networks" and cs231n's sanity checks, as one
command (the checks themselves are in `benchmark.sanity`: checks, training, health):

    1 initial loss        ln(10) for 10 classes: the untrained net guesses evenly
    2 gradient check      backward agrees with finite differences (float64)
    3 parity with torch   one batch agrees with the torch twin, tensor by tensor
    4 overfit one batch   32 images learnt by heart within 200 steps (dropout off; if the loss
                          overshoots at the spec's lr, once more at lr / 10, and the line says so)
    5 uses its input      trained for 100 steps on real images it beats a copy trained on all-zero
                          images by 20 points of held-out accuracy
    6 loss goes down      over the first 100 steps of real training, and stays finite
    7 gradient health     at init: no vanishing or exploding gradients, dead ReLUs or saturated units

Each check prints one line (measured, expected, PASS/FAIL); a FAIL adds what it means and what to
try. Later checks build on earlier ones, so the first FAIL is the one to fix first. Exit status 0
when all pass, 1 when any fails, 2 on bad input. A few seconds on the default spec.

The data are slices of MNIST's training set in the order training would see them, the test set
untouched (benchmark.sanity.recipe).
"""
from __future__ import annotations

import argparse
import json
import textwrap
import time
from dataclasses import asdict

import numpy as np

from benchmark.core.errors import check_output_file, check_size
from benchmark.core.jsonio import json_ready
from benchmark.sanity.recipe import USES_INPUT_IMAGES, run_checks, sanity_data

WIDTHS = (2, 18, 32, 42)  # columns of a result line: number, check, measured, expected


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `svt sanity`: the shared model options, --json and --data-dir."""
    from benchmark.commands.data import add_data_dir_argument
    from benchmark.commands.specargs import add_model_arguments

    add_model_arguments(parser)
    group = parser.add_argument_group("sanity")
    group.add_argument("--json", metavar="FILE", default=None,
                       help="also write the results to FILE as JSON (written atomically)")
    add_data_dir_argument(group)


def check_input(spec, args: argparse.Namespace) -> None:
    """Refuse what would only fail half-way or silently check less than asked: a batch larger than
    the slice it draws from (check 5 trains on USES_INPUT_IMAGES images, the smallest slice a batch
    of the spec's size is drawn from), and a --json file that cannot be written."""
    from benchmark.commands.specargs import batch_size_flag

    check_size(batch_size_flag(args), spec.train.batch_size, USES_INPUT_IMAGES,
               f"the {USES_INPUT_IMAGES} training images check 5 (uses its input) trains on")
    if args.json is not None:
        check_output_file(args.json, "--json")


def result_lines(number: int, result) -> list[str]:
    """The line of one check, and for a FAIL its message wrapped under it (and the layer profile)."""
    fields = (str(number).rjust(WIDTHS[0]), result.name, result.measured, result.expected)
    line = " ".join(value.ljust(width) for value, width in zip(fields, WIDTHS))
    lines = [f"{line} {'PASS' if result.passed else 'FAIL'}"]
    if result.passed and result.note:
        lines += textwrap.wrap(result.note, width=100, initial_indent="   note: ", subsequent_indent="         ")
    if not result.passed:
        lines += textwrap.wrap(result.message, width=100, initial_indent="   -> ", subsequent_indent="      ")
        if "layers" in result.values:
            from benchmark.core.tables import format_table
            from benchmark.sanity.health import profile_table

            table = format_table(profile_table(result.values["layers"]), ["layer", "type", "grad rms", "dead",
                                                                          "saturated"], right=("grad rms",))
            lines += ["      " + row for row in table.splitlines()]
    return lines


def verdict(results: list) -> str:
    failed = [result.name for result in results if not result.passed]
    if not failed:
        return f"verdict: PASS - all {len(results)} checks pass: this net and its training set-up can learn MNIST"
    return (f"verdict: FAIL - {len(failed)} of {len(results)} checks fail ({', '.join(failed)}); fix the first "
            f"one first ({failed[0]}): later checks build on earlier ones")


def write_json(path: str, spec, results: list, seconds: float) -> None:
    """The results as JSON, written atomically (a temporary file beside `path`, then os.replace)."""
    from benchmark.core.files import write_atomically
    from scratch_nn.spec import to_dict

    document = {"spec": to_dict(spec), "passed": all(result.passed for result in results),
                "seconds": seconds, "checks": [asdict(result) for result in results]}
    text = json.dumps(json_ready(document), indent=2, allow_nan=False) + "\n"
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def run(args: argparse.Namespace) -> int:
    """Run the seven checks on `--spec`/`--layers`; exit 0 if all pass, 1 if any fails."""
    from benchmark.commands.specargs import spec_from_args
    from benchmark.data.mnist import load_mnist
    from scratch_nn.model import MLP
    from scratch_nn.spec.notation import format_layers, layers_text

    spec = spec_from_args(args)
    check_input(spec, args)
    start = time.perf_counter()
    mnist = load_mnist(args.data_dir)
    rng = np.random.default_rng(spec.train.seed)
    model = MLP(spec.model, rng)  # the init draws come first, then the permutation, as in training
    data = sanity_data(spec, mnist, rng)
    compact = format_layers(spec.model)
    layers = f"--layers {compact}" if compact else layers_text(spec.model)
    print(f"sanity: spec {spec.name} ({layers}; {spec.model.dtype}, "
          f"init {spec.model.init}, {spec.train.optimizer} lr={spec.train.lr:g}, batch {spec.train.batch_size}, "
          f"seed {spec.train.seed})")
    results = []
    for number, result in enumerate(run_checks(spec, model, data), start=1):
        results.append(result)
        print("\n".join(result_lines(number, result)), flush=True)
    seconds = time.perf_counter() - start
    print(f"{verdict(results)} ({seconds:.1f} s)")
    if args.json:
        write_json(args.json, spec, results, seconds)
        print(f"wrote {args.json}")
    return 0 if all(result.passed for result in results) else 1
