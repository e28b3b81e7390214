"""The error type of a spec that cannot be built, and the checks every spec value goes through.

Each check raises a `SpecError` whose message says what was given, what is allowed, and where
(`where` names the file and key, or the layer, for the one-line error the command line prints).
"""
from __future__ import annotations

import math
from typing import Any


class SpecError(ValueError):
    """A spec that cannot be built: the message names the value, what is allowed, and where."""


def check_choice(value: Any, allowed: tuple[str, ...], what: str, where: str) -> None:
    if value not in allowed:
        raise SpecError(f"{where}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def check_int(value: Any, what: str, where: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: {what} must be an integer >= {minimum}, {_got(value)}")


def check_bool(value: Any, what: str, where: str) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {what} must be true or false, {_got(value)}")


def check_number(value: Any, what: str, where: str, low: float, high: float,
                 low_open: bool = False, high_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SpecError(f"{where}: {what} must be a finite number in {interval}, {_got(value)}")


def _got(value: Any) -> str:
    """`got 0`; for a quoted value (lr = "0.1"), that it is a string and how to write it instead."""
    if isinstance(value, str):
        return f"got the string {value!r}: a number is wanted, written without quotes"
    return f"got {value!r}"
