"""The command line: `svt SUBCOMMAND ...` or `python -m benchmark SUBCOMMAND ...`.

Each subcommand lives in its own module, which exposes

    add_arguments(parser)   # argparse options of that subcommand
    run(args) -> int        # the exit status: 0 ok, 1 a check failed, 2 bad input

Command modules import torch, matplotlib and pandas inside `run` (not at import time), so that
`svt --help` and `svt describe` start in a fraction of a second.

Errors for people (`UserError`, and `SpecError` from spec validation) become one line on stderr and
exit status 2; Ctrl-C becomes one line and exit status 130. A traceback reaching a user is a bug.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from benchmark.errors import UserError
from scratch_nn.spec import SpecError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS = {
    "run": ("benchmark.run", "train scratch and torch side by side on MNIST and write a report"),
    "study": ("benchmark.study", "many seeds of `svt run`: is the scratch - torch difference real? (paired statistics)"),
    "parity": ("benchmark.parity", "compare forward/backward/optimiser steps of scratch and torch, layer by layer"),
    "sanity": ("benchmark.sanity", "run the training-sanity checks (init loss, grad check, overfit, ...)"),
    "bench": ("benchmark.bench", "time and measure memory of scratch vs torch training steps"),
    "describe": ("benchmark.describe", "print the resolved model as a table of layers and parameters"),
    "specs": ("benchmark.describe", "list the built-in specs"),
    "data": ("benchmark.data", "fetch, verify and locate the MNIST files"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svt",
        description="scratch-vs-torch: check a from-scratch NumPy MLP against its PyTorch twin on MNIST.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # A module may serve several subcommands (describe/specs): it picks by name.
        adder = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        runner = getattr(module, f"run_{name}", None) or module.run
        adder(sub)
        sub.set_defaults(handler=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (UserError, SpecError) as error:
        print(f"svt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"svt {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `svt ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
