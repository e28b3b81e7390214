"""Placeholder until the 'bench' subcommand lands (being written now)."""
from benchmark.errors import UserError


def add_arguments(parser):
    pass


def run(args):
    raise UserError("the 'bench' subcommand is not built yet")
