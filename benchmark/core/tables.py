"""The one plain-text table renderer of the terminal output (describe, sanity, bench, specs).

Terminal output fits the terminal: `terminal_width()` is its width where known (100 columns when
the output goes to a pipe or a file), and `format_table(..., wrap=..., width=...)` wraps the named
columns onto continuation lines until the table fits. Files written keep their full lines.
"""
from __future__ import annotations

import re
import shutil

import numpy as np

DEFAULT_WIDTH = 100  # columns, when the terminal's width is not known
NARROWEST = 60  # below this, wrapping makes tables unreadable: they are let run over


def terminal_width() -> int:
    """The terminal's width ($COLUMNS, else the terminal's own), 100 when unknown, at least 60."""
    return max(NARROWEST, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def format_table(rows: list[dict], columns: list[str], right: tuple[str, ...] = (), wrap: tuple[str, ...] = (),
                 width: int | None = None) -> str:
    """A plain-text table: one header line, a rule, one line per row. With `width`, the `wrap`
    columns (the widest first) are narrowed until a line fits, their cells wrapped after a comma
    or a space onto continuation lines."""
    cells = [[_format_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    narrowable = [i for i, column in enumerate(columns) if column in wrap]
    while width and narrowable and sum(widths) + 2 * (len(widths) - 1) > width:
        widest = max(narrowable, key=lambda i: widths[i])
        if widths[widest] <= max(len(columns[widest]), 12):
            break
        widths[widest] -= 1

    def lines(values: list[str]) -> list[str]:
        pieces = [_wrapped(value, widths[i]) if i in narrowable else [value] for i, value in enumerate(values)]
        result = []
        for row in range(max(len(piece) for piece in pieces)):
            parts = [piece[row] if row < len(piece) else "" for piece in pieces]
            result.append("  ".join(part.rjust(width) if column in right else part.ljust(width)
                                    for part, width, column in zip(parts, widths, columns)).rstrip())
        return result

    body = [text for values in cells for text in lines(values)]
    return "\n".join(lines(columns) + lines(["-" * width for width in widths]) + body)


def _wrapped(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width`, broken after a comma or a space (a longer piece is cut)."""
    result, current = [], ""
    for piece in re.split(r"(?<=[, ])", text):
        while len(piece) > width:
            result += [current.rstrip()] if current else []
            current, result = "", result + [piece[:width]]
            piece = piece[width:]
        if len((current + piece).rstrip()) > width:
            result.append(current.rstrip())
            current = ""
        current += piece
    if current or not result:
        result.append(current.rstrip())
    return result


def counted(number: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`: a count and its noun, plural unless the count is 1."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _format_cell(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
