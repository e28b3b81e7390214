"""The one plain-text table renderer of the terminal output (describe, sanity, bench)."""
from __future__ import annotations

import numpy as np


def format_table(rows: list[dict], columns: list[str], right: tuple[str, ...] = ()) -> str:
    """A plain-text table: one header line, a rule, one line per row."""
    cells = [[_format_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]

    def line(values: list[str]) -> str:
        parts = [value.rjust(width) if column in right else value.ljust(width)
                 for value, width, column in zip(values, widths, columns)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * width for width in widths])] + [line(c) for c in cells])


def counted(number: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`: a count and its noun, plural unless the count is 1."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _format_cell(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
