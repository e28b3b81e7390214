"""`svt fit`: both sides fit a function of one variable, from one neuron to a deep net.

    svt fit [--target NAME|FILE.csv] [--spec FILE | --layers 5:relu,1] [--loss mse|l1|huber] [overrides]
            [--samples N] [--noise S] [--interval LOW,HIGH] [--data-seed N] [--out DIR] [--name NAME]
    svt fit ... --vary activation=relu,tanh --vary lr=0.01,0.1     every combination, one grid picture
    svt fit --tour                                                  the path from one neuron to a deep net

Both sides start from the same weights and take the same full-batch steps (mini-batches with
--batch-size); the parity engine checks their gradients at --checks evenly spaced steps. Exit 0
when every check passes (and, for the tour, every caption's claim holds), 1 otherwise, 2 on bad input.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import datetime

from benchmark.commands.specargs import add_model_arguments
from benchmark.core.errors import UserError, check_output_folder
from scratch_nn.spec import Spec, load_spec, with_overrides
from scratch_nn.spec.data_spec import FUNCTION_TARGETS, REGRESSION_LOSSES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    fit_help = {"--spec": "a fit spec: a TOML file with a [data] table (default: sin, 20:tanh,1, SGD, 2000 steps)",
                "--batch-size": "mini-batch size (default: all the points in one batch)",
                "--epochs": "number of epochs; with all the points in one batch, the number of steps"}
    for action in parser._actions:  # the shared options, as a fit reads them
        action.help = fit_help.get(action.option_strings[0] if action.option_strings else "", action.help)
    group = parser.add_argument_group("fit")
    group.add_argument("--target", metavar="NAME|FILE.csv", default=None,
                       help=f"the function: one of {', '.join(FUNCTION_TARGETS)}, or a CSV file of x,y lines "
                            "(header optional) (default: the spec's, else sin)")
    group.add_argument("--loss", metavar="NAME", default=None, help=f"one of {', '.join(REGRESSION_LOSSES)}")
    group.add_argument("--huber-delta", type=float, default=None, metavar="D", help="HuberLoss's delta (default 1)")
    group.add_argument("--momentum", type=float, default=None, help="SGD/RMSprop momentum")
    group.add_argument("--samples", type=int, default=None, metavar="N", help="points of a built-in target")
    group.add_argument("--noise", type=float, default=None, metavar="S", help="Gaussian noise on the targets' y")
    group.add_argument("--interval", default=None, metavar="LOW,HIGH", help="x range of the points (default -3,3)")
    group.add_argument("--data-seed", type=int, default=None, metavar="N", help="seed of the noise")
    group.add_argument("--checks", type=int, default=10, metavar="N",
                       help="gradient-parity checks, evenly spaced over the steps (default: 10)")
    group.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                       help="train every combination (repeatable): KEY is activation, init, optimizer, lr, width, "
                            "depth or loss; one grid picture and a table of the final losses")
    group.add_argument("--tour", action="store_true",
                       help="the path from one neuron to a deep net, a panel per step, its captions checked")
    group.add_argument("--out", default="reports", metavar="DIR", help="folder for the report (default: reports)")
    group.add_argument("--name", default=None, metavar="NAME", help="the report folder's name (default: "
                                                                      "fit-<target>-<timestamp>)")


def interval(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--interval {text!r}: expected two numbers LOW,HIGH, e.g. -3,3") from None
    return {"low": low, "high": high}


def fit_spec_from_args(args: argparse.Namespace) -> Spec:
    """--spec (default: `benchmark.fit.variants.default_fit_spec`), --target and the data options,
    --layers and the overrides, validated once."""
    from benchmark.fit.variants import default_fit_spec

    spec = default_fit_spec() if args.spec is None else load_spec(args.spec)
    data = {"source": args.target, "samples": args.samples, "noise": args.noise, "seed": args.data_seed,
            **interval(args.interval)}
    data = {key: value for key, value in data.items() if value is not None}
    if data.get("source") and not spec.data.is_function:  # an MNIST spec given a function: its input is one number
        spec = replace(spec, model=replace(spec.model, input_shape=(1,), loss="mse"),
                       train=replace(spec.train, batch_size=0))
    spec = replace(spec, data=replace(spec.data, **data))
    model = {"dtype": args.dtype, "init": args.init, "loss": args.loss, "huber_delta": args.huber_delta}
    train = {key: getattr(args, key) for key in ("optimizer", "lr", "batch_size", "epochs", "seed", "momentum")}
    spec = with_overrides(spec, layers=args.layers, model=model, train=train)
    if not spec.data.is_function:
        raise UserError(f"spec {spec.name!r} trains on MNIST; give --target NAME|FILE.csv, or a spec whose [data] "
                        f"source is a function ({', '.join(FUNCTION_TARGETS)} or a .csv file)")
    if args.layers is None and args.spec is None:
        spec = replace(spec, name="fit")
    return spec


def report_name(args: argparse.Namespace, stem: str) -> str:
    name = args.name or f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if name.startswith(".") or "/" in name:
        raise UserError(f"--name {name!r} must be a plain folder name (no '/', not starting with '.')")
    return name


def run(args: argparse.Namespace) -> int:
    from benchmark.data.functions import load_points
    from benchmark.fit.variants import combinations, parse_vary

    start = time.perf_counter()
    if args.checks < 0:
        raise UserError(f"--checks must be 0 or more, got {args.checks}")
    if args.tour:
        if args.vary or args.target or args.spec or args.layers:
            raise UserError("--tour draws its own fits; give it no --target, --spec, --layers or --vary")
        from benchmark.fit.tour import run_tour

        name = report_name(args, "fit-tour")
        check_output_folder(args.out, "--out")
        return run_tour(args.out, name, args.checks, start)
    spec = fit_spec_from_args(args)
    varies = [parse_vary(text) for text in args.vary]
    runs = combinations(spec, varies) if varies else []  # each combination validated before any work
    points = load_points(spec.data, spec.model.dtype)  # a bad CSV is refused here, before anything is written
    if spec.train.batch_size > len(points):
        raise UserError(f"--batch-size {spec.train.batch_size} is larger than the {len(points)} points; "
                        f"the largest allowed is {len(points)} (0: all of them, the default)")
    name = report_name(args, f"fit-{points.name.removesuffix('.csv')}" + ("-vary" if varies else ""))
    check_output_folder(args.out, "--out")
    if varies:
        return run_vary(runs, points, varies, args, name, start)
    return run_one(spec, points, args, name, start)


def run_one(spec: Spec, points, args: argparse.Namespace, name: str, start: float) -> int:
    from benchmark.fit.report import summary, write_fit_report
    from benchmark.fit.training import fit_both
    from scratch_nn.spec.notation import layers_text

    print(f"fit: {points.name} ({points.formula}) on {len(points)} points in [{points.low:g}, {points.high:g}]; "
          f"{layers_text(spec.model)}, {spec.model.dtype}, {spec.model.loss}, {spec.train.optimizer} "
          f"lr={spec.train.lr:g}, {spec.train.epochs} epochs", flush=True)
    fit = fit_both(spec, points, args.checks)
    folder = write_fit_report(fit, args.out, name)
    print(f"final loss: scratch {fit.final_losses['scratch']:.6g}, torch {fit.final_losses['torch']:.6g} "
          f"(relative gap {fit.loss_gap():.1e}); curves differ by at most {fit.curve_gap():.1e}")
    print(f"gradient parity: {sum(check['ok'] for check in fit.checks)} of {len(fit.checks)} checks pass"
          + (f"; the last: {fit.checks[-1]['verdict']}" if fit.checks else ""))
    data = summary(fit)
    if "breakpoints" in data:
        print(f"ReLU breakpoints: {data['breakpoints']['inside']} inside the interval, "
              f"{data['breakpoints']['all']} in all, for {fit.neurons()} neurons")
    if "least_squares" in data:
        squares = data["least_squares"]
        print(f"one linear neuron: weight {squares['scratch']['weight']:.6g} bias {squares['scratch']['bias']:.6g} "
              f"(torch {squares['torch']['weight']:.6g}, {squares['torch']['bias']:.6g}); least squares: slope "
              f"{squares['slope']:.6g} intercept {squares['intercept']:.6g}")
    print(f"wrote {folder}/ (report.html, report.md, fit.png, loss.png, losses.csv, curve.csv, checks.csv, "
          "summary.json)")
    print(f"took {time.perf_counter() - start:.1f} s (training both sides {fit.seconds:.1f} s)")
    return 0 if fit.parity_ok() else 1


def run_vary(runs: list, points, varies, args: argparse.Namespace, name: str, start: float) -> int:
    from benchmark.core.tables import format_table
    from benchmark.fit.grid import write_grid_report
    from benchmark.fit.training import fit_both
    print(f"fit: {points.name} on {len(points)} points, {len(runs)} combinations of "
          + ", ".join(f"{key} ({', '.join(values)})" for key, values in varies), flush=True)
    fits = [fit_both(changed, points, args.checks) for _, changed in runs]
    titles = [title for title, _ in runs]
    folder, rows = write_grid_report(fits, titles, args.out, name)
    print(format_table(rows, list(rows[0]), right=("final loss scratch", "final loss torch", "relative gap")))
    print(f"wrote {folder}/ (report.html, report.md, grid.png, vary.csv, summary.json)")
    print(f"took {time.perf_counter() - start:.1f} s")
    return 0 if all(fit.parity_ok() for fit in fits) else 1
