"""`svt run --model FILE.py`: the learner's own model file trained against its twin (issue 24).

    svt run --model examples/params_dict/correct.py --lr 0.1 --epochs 5

The file is loaded in its own process (`benchmark.check.learner.LearnerProcess`, `--timeout`), its
declaration read and its parameters mapped to the twin's as `svt check` does (the mapping is
printed; `--map` fixes some of it), then `svt run`'s loop trains both from their initial weights on
the same batches (`benchmark.check.training`, `benchmark.run.training_run`) and writes the same
report folder. The model's own options are refused with `--model`: the twin is TWIN, in the dtype
of their arrays, trained with plain SGD.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.core.errors import Interrupted, UserError

NOT_WITH_MODEL = {"spec": "--spec", "layers": "--layers", "dtype": "--dtype", "init": "--init"}


def check_model_flags(args: argparse.Namespace) -> None:
    """Refuse what `--model` cannot honour: the network is the file's, the optimiser plain SGD."""
    given = [flag for key, flag in NOT_WITH_MODEL.items() if getattr(args, key, None) is not None]
    if given:
        raise UserError(f"{', '.join(given)} cannot be used with --model: the network is your file's (its TWIN, in "
                        "the dtype of its arrays); --lr, --epochs, --batch-size and --seed set the training")
    if args.optimizer not in (None, "sgd"):
        raise UserError(f"--optimizer {args.optimizer} cannot be used with --model: your step(grads, lr) (or "
                        "p -= lr * g) is compared with the twin's plain SGD; leave --optimizer out")
    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")


def run_model(args: argparse.Namespace, started: float) -> int:
    """Load their file, map it, train it against its twin, write the report (module docstring)."""
    from benchmark.check.learner import LearnerProcess, TheirError

    check_model_flags(args)
    name = Path(args.model).name
    try:
        with LearnerProcess(args.model, args.timeout) as model:
            if "forward" not in model.declared["has"]:
                raise UserError(f"{name} defines no forward(x); svt run --model needs it to measure the test "
                                "accuracy: forward(x) -> the (N, 10) scores or probabilities of x (N, 784)")
            return train_model(args, model, name, started)
    except TheirError as error:
        print(f"--- your code raised an exception ({error.where.rstrip(',')}); its traceback: ---", file=sys.stderr)
        print(error.traceback.rstrip(), file=sys.stderr)
        print("--- end of your traceback ---", file=sys.stderr)
        raise
    except KeyboardInterrupt:  # the report folder is built aside: nothing half-written is left
        raise Interrupted("no report written; the previous one, if any, is untouched") from None


def train_model(args: argparse.Namespace, model, name: str, started: float) -> int:
    from benchmark.check.engine import decide_square, their_dtype
    from benchmark.check.mapping import map_parameters, mapping_table, parse_map
    from benchmark.check.training import learner_sides, model_run_spec
    from benchmark.check.twin import read_declaration, twin_shapes
    from benchmark.commands.run import check_input, finish_run, train_and_report
    from scratch_nn.spec import SpecError

    params = model.declared["parameters"]
    dtype = their_dtype(params, name)
    declaration = read_declaration({**model.declared, "folder": str(Path(args.model).parent)}, name, dtype)
    rows = map_parameters({key: value.shape for key, value in params.items()}, twin_shapes(declaration),
                          parse_map(args.map), declaration.twin)
    try:
        spec = model_run_spec(declaration, Path(args.model).stem, lr=args.lr, batch_size=args.batch_size,
                              epochs=args.epochs, seed=args.seed)
    except SpecError as error:
        raise UserError(str(error)) from None
    check_input(args, spec)

    def sides(train_x, train_y):
        probe = min(len(train_x), 8)  # square weights are decided by a probe through their loss
        decided = decide_square(model, rows, declaration, params, train_x[:probe], train_y[:probe], dtype)
        if not args.quiet:
            print(f"{name}: {declaration.describe()}; {spec.train.epochs} epoch(s) of SGD, lr {spec.train.lr:g}, "
                  f"batch {spec.train.batch_size}\n{mapping_table(decided)}", flush=True)
        return learner_sides(model, declaration, decided, spec, name)

    record, path = train_and_report(args, spec, started, sides=sides)
    return finish_run(record, path)
