"""Errors meant for people: the CLI prints their message as one line and exits with status 2."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class UserError(Exception):
    """Bad input or a problem the user can fix (a corrupt data file, a missing source).

    The message must say what was given, what is allowed or expected, and how to heal it.
    `scratch_nn.spec.SpecError` (a ValueError) is treated the same way by the CLI.
    """


class DataError(UserError):
    """MNIST could not be found, fetched or verified."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it left behind: the CLI prints `svt CMD: interrupted; <message>`, exit 130."""


def check_size(flag: str, value: int, largest: int, source: str) -> None:
    """Refuse, before any work, a size that is not a positive integer or is larger than the data it
    draws from (`source`, e.g. "the 60000 MNIST training images"), in one line naming the largest
    allowed: a batch larger than its data would silently become one smaller batch."""
    if value < 1:
        raise UserError(f"{flag} must be a positive integer, got {value}")
    if value > largest:
        raise UserError(f"{flag} {value} is larger than {source}; the largest allowed is {largest}")


def check_output_file(path: str, flag: str) -> None:
    """Refuse, before any work, an output file that could not be written at the end: a directory,
    or a file in a folder that does not exist or where no file can be created."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{flag} {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'out')!r}")
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {path!r}: the folder {folder!r} does not exist")
    _probe(folder, f"{flag} {path!r}: no file can be written in {folder!r}")


def check_output_folder(path: str, flag: str) -> None:
    """Check, before any work, that the folder `path` can be created, or written in if it exists.
    It is not created here but when the output is written, so a run that fails leaves nothing behind."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:  # the nearest folder that exists
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {path!r} cannot be created: {str(existing)!r} is a file, not a folder")
    _probe(str(existing), f"{flag} {path!r} cannot be created: no file can be written in {str(existing)!r}")


def _probe(folder: str, message: str) -> None:
    """Create and delete a temporary file in `folder` (os.access says yes to root everywhere)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"{message} ({error.strerror})") from None
