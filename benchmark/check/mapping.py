"""Which of the learner's arrays is which of the twin's parameters, and in which layout.

    rows = map_parameters(their_shapes, twin_shapes, overrides={"w_out": "layers.2.weight"})
    state = to_twin(rows, their_arrays)      # the twin's state_dict: their weights in torch's layouts
    print(mapping_table(rows))

By order and shape: each of their parameters, in the order parameters() gives them, takes the
first twin parameter not yet taken that it fits. A twin weight (out, in) is fitted by (out, in)
(torch's layout) or (in, out) (transposed: `x @ W` on rows); a twin bias (out,) by (out,), (out, 1)
(a column) or (1, out) (a row). So W1, b1, W2, b2 and weights[0], weights[1], biases[0], biases[1]
both map. A square weight (out == in) fits both ways: its row says "undecided" until the engine
decides it by a probe through the learner's own loss (benchmark.check.engine.decide_square).
`--map their=twin,...` (or `overrides`) fixes rows before the rest is mapped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from benchmark.core.errors import UserError


@dataclass(frozen=True)
class Mapped:
    """One of their parameters and its twin parameter; `transposed` None: square, not yet decided."""

    theirs: str
    their_shape: tuple[int, ...]
    twin: str
    twin_shape: tuple[int, ...]
    transposed: bool | None
    how: str = "order and shape"  # or "--map", "probe through your loss"

    @property
    def layer(self) -> str:
        return self.twin.rpartition(".")[0]  # "layers.0"

    def layout(self) -> str:
        if len(self.twin_shape) == 1:
            return {1: "as torch", 2: "column (out, 1)" if self.their_shape[-1] == 1 else "row (1, out)"}[
                len(self.their_shape)]
        if self.transposed is None:
            return "square: undecided"
        return "transposed (in, out)" if self.transposed else "as torch (out, in)"


def fits(their_shape: tuple[int, ...], twin_shape: tuple[int, ...]) -> bool | None | str:
    """False if it does not fit; else whether it is transposed (None: square, either way)."""
    if len(twin_shape) == 1:
        (out,) = twin_shape
        return "bias" if their_shape in ((out,), (out, 1), (1, out)) else False
    if their_shape == twin_shape and their_shape == twin_shape[::-1]:
        return None
    if their_shape == twin_shape:
        return "as torch"
    return "transposed" if their_shape == twin_shape[::-1] else False


def make_row(theirs: str, their_shape, twin: str, twin_shape, how: str) -> Mapped | None:
    fit = fits(tuple(their_shape), tuple(twin_shape))
    if fit is False:
        return None
    transposed = None if fit is None else fit == "transposed"
    return Mapped(theirs, tuple(their_shape), twin, tuple(twin_shape), transposed, how)


def shapes_text(shapes: dict) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())


def map_parameters(their_shapes: dict[str, tuple], twin_shapes: dict[str, tuple], overrides: dict[str, str],
                   twin: str) -> list[Mapped]:
    """Their parameters mapped to the twin's (module docstring), or a one-line UserError saying which
    does not fit and what the twin has."""
    rows: dict[str, Mapped] = {}
    for theirs, name in overrides.items():
        if theirs not in their_shapes:
            raise UserError(f"--map {theirs}={name}: you have no parameter {theirs!r}; "
                            f"yours: {', '.join(their_shapes)}")
        if name not in twin_shapes:
            raise UserError(f"--map {theirs}={name}: the twin has no parameter {name!r}; its: {', '.join(twin_shapes)}")
        row = make_row(theirs, their_shapes[theirs], name, twin_shapes[name], "--map")
        if row is None:
            raise UserError(f"--map {theirs}={name}: {theirs} {tuple(their_shapes[theirs])} does not fit {name} "
                            f"{twin_shapes[name]} (nor transposed)")
        rows[theirs] = row
    for theirs, shape in their_shapes.items():
        if theirs in rows:
            continue
        taken = {row.twin for row in rows.values()}
        row = next((row for name, twin_shape in twin_shapes.items() if name not in taken
                    for row in [make_row(theirs, shape, name, twin_shape, "order and shape")] if row), None)
        if row is None:
            left = {name: shape for name, shape in twin_shapes.items() if name not in taken}
            raise UserError(f"parameters()[{theirs!r}] has shape {tuple(shape)}, which no twin parameter left has "
                            f"(TWIN {twin!r}: {shapes_text(left) or 'all taken'}); a weight is (out, in) or "
                            "(in, out), a bias (out,), (out, 1) or (1, out)")
        rows[theirs] = row
    unmapped = [name for name in twin_shapes if name not in {row.twin for row in rows.values()}]
    if unmapped:
        raise UserError(f"the twin (TWIN {twin!r}) has {shapes_text({n: twin_shapes[n] for n in unmapped})} that "
                        f"none of your parameters maps to; yours: {shapes_text(their_shapes)}")
    return list(rows.values())


def parse_map(text: str | None) -> dict[str, str]:
    """`W1=layers.0.weight,b1=layers.0.bias` -> {"W1": "layers.0.weight", ...}."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",")]
    if any(not theirs or not eq or not twin for theirs, eq, twin in pairs):
        raise UserError(f"--map: expected their=twin pairs separated by commas (W1=layers.0.weight,...), got {text!r}")
    return {theirs.strip(): twin.strip() for theirs, _, twin in pairs}


def to_twin_layout(row: Mapped, array: np.ndarray) -> np.ndarray:
    """One of their arrays (of their parameter's shape) in the twin parameter's layout."""
    array = np.asarray(array)
    if len(row.twin_shape) == 1:
        return array.reshape(row.twin_shape)
    return array.T if row.transposed else array


def to_their_layout(row: Mapped, array: np.ndarray) -> np.ndarray:
    """A twin-layout array back in their parameter's layout."""
    array = np.asarray(array)
    if len(row.twin_shape) == 1:
        return array.reshape(row.their_shape)
    return array.T if row.transposed else array


def to_twin(rows: list[Mapped], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Their parameters as the twin's state_dict (copies, in the twin's layouts, their dtype)."""
    return {row.twin: np.ascontiguousarray(to_twin_layout(row, arrays[row.theirs])) for row in rows}


def decided(rows: list[Mapped], transposed: dict[str, bool]) -> list[Mapped]:
    """The rows with their square layouts decided: their name -> transposed."""
    return [replace(row, transposed=transposed[row.theirs], how="probe through your loss")
            if row.theirs in transposed else row for row in rows]


def mapping_table(rows: list[Mapped]) -> str:
    """their name, their shape, twin parameter, twin shape, layout, how it was mapped."""
    header = ("your name", "your shape", "twin parameter", "twin shape", "layout", "mapped by")
    lines = [(row.theirs, "x".join(map(str, row.their_shape)), row.twin, "x".join(map(str, row.twin_shape)),
              row.layout(), row.how) for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *lines])
