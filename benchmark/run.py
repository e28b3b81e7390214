"""Placeholder until the 'run' subcommand lands (being written now)."""
from benchmark.errors import UserError


def add_arguments(parser):
    pass


def run(args):
    raise UserError("the 'run' subcommand is not built yet")
