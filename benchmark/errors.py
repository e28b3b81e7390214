"""Errors meant for people: the CLI prints their message as one line and exits with status 2."""


class UserError(Exception):
    """Bad input or a problem the user can fix (a corrupt data file, a missing source).

    The message must say what was given, what is allowed or expected, and how to heal it.
    `scratch_nn.spec.SpecError` (a ValueError) is treated the same way by the CLI.
    """


class DataError(UserError):
    """MNIST could not be found, fetched or verified."""
