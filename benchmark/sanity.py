"""Placeholder until the 'sanity' subcommand lands (being written now)."""
from benchmark.errors import UserError


def add_arguments(parser):
    pass


def run(args):
    raise UserError("the 'sanity' subcommand is not built yet")
