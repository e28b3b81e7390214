"""The command line: `svt SUBCOMMAND ...` or `python -m benchmark SUBCOMMAND ...`.

Each subcommand lives in its own module, which exposes

    add_arguments(parser)   # argparse options of that subcommand
    run(args) -> int        # the exit status: 0 ok, 1 a check failed, 2 bad input

Command modules import torch, matplotlib and pandas inside `run` (not at import time), so that
`svt --help` and `svt describe` start in a fraction of a second.

Errors for people (`UserError`, and `SpecError` from spec validation) become one line on stderr and
exit status 2; Ctrl-C becomes one line of its own (saying what was left behind, if the command
says it: `errors.Interrupted`) and exit status 130. A traceback reaching a user is a bug.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from benchmark.core.errors import UserError
from scratch_nn.spec import SpecError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS = {
    "run": ("benchmark.commands.run", "train scratch and torch side by side on MNIST and write a report"),
    "study": ("benchmark.commands.study",
              "many seeds of `svt run`: is the scratch - torch difference real? (paired statistics)"),
    "check": ("benchmark.commands.check",
              "check your own NumPy network (your names, your layouts) against its PyTorch twin, in words"),
    "parity": ("benchmark.commands.parity",
               "compare forward/backward/optimiser steps of scratch and torch, layer by layer"),
    "sanity": ("benchmark.commands.sanity", "run the training-sanity checks (init loss, grad check, overfit, ...)"),
    "bench": ("benchmark.commands.bench", "time and measure memory of scratch vs torch training steps"),
    "describe": ("benchmark.commands.describe", "print the resolved model as a table of layers and parameters"),
    "specs": ("benchmark.commands.describe", "list the built-in specs"),
    "data": ("benchmark.commands.data", "fetch, verify and locate the MNIST files"),
    "fit": ("benchmark.commands.fit", "fit a function of one variable with a tiny network, both sides (or --tour)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svt", allow_abbrev=False,  # `--epoch 1` is a typo, not `--epochs 1`
        description="scratch-vs-torch: check a from-scratch NumPy MLP against its PyTorch twin on MNIST.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.subcommands = {}  # name -> its parser, to report an unknown option in its own usage
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        # A module may serve several subcommands (describe/specs): it picks by name.
        adder = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        runner = getattr(module, f"run_{name}", None) or module.run
        adder(sub)
        sub.set_defaults(handler=runner)
        parser.subcommands[name] = sub
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, but an unknown option is reported by its subcommand, with the closest
    option it has: `svt run: error: unrecognized arguments: --epoch 1 (did you mean --epochs?)`."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = parser.subcommands[args.command]
        options = [option for action in sub._actions for option in action.option_strings]
        close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
        sub.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {close[0]}?)" if close else ""))
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    try:
        return int(args.handler(args))
    except (UserError, SpecError) as error:
        print(f"svt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # on its own line: a progress bar may hold the cursor
        print(f"\nsvt {args.command}: interrupted" + (f"; {interrupt}" if str(interrupt) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `svt ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
