"""The parity report: comparisons in the order they were computed, as tables and one verdict line.

    report = ParityReport(rows, "float32")
    report.ok, report.first_break, report.worst
    print(report.table())        # one line per tensor
    print(report.step_table())   # trajectories: one line per step, with the free-running drift
    print(report.verdict())      # "parity: ..." or "BREAK at <tensor> ..."

In float32 every row shows, beside the difference between the sides, each side's distance from
the float64 reference (`scratch vs f64`, `torch vs f64`): that is what is judged (benchmark.parity.compare).
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.files import write_atomically
from benchmark.core.tables import counted, format_table
from benchmark.parity.compare import EXACT_FACTOR, EXACT_FLOOR_ULPS, Comparison


def _figure(value: float, width: int = 0) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.2e}"


# The kind of an explained row (the start of `explained`) -> its mark in the ok column, and the plain
# words printed under the row: why a row beyond its bound is not a failure.
EXPLANATIONS = {
    "kink crossing": ("ok (kink)", "not a failure: an input sat within rounding of a kink (ReLU at 0, a max-pool "
                                   "tie), so the two sides took different branches; on scratch's branch it is within "
                                   "bound"),
    "inherited": ("ok (inherited)", "not a failure: inherited rounding; this operation, from each side's own "
                                    "inputs, is as exact as torch's, so the difference was made upstream (within "
                                    "bound there) and grew here"),
    "loss kink": ("ok (loss kink)", "not a failure: the finite difference steps across a kink of the loss (ReLU at "
                                    "0, max-pool ties), where the loss has no single slope; the backward is a slope "
                                    "on one side of it"),
}


def _kind(row: Comparison) -> str:
    return row.explained.partition(":")[0]


def _verdict_word(row: Comparison) -> str:
    if row.tolerance == np.inf:
        return "n/a"
    if row.ok and row.explained:
        return EXPLANATIONS.get(_kind(row), ("ok (explained)", ""))[0]
    return "ok" if row.ok else "BREAK"


def _why(row: Comparison) -> str:
    """The plain words and the evidence of an explained row ("" for any other)."""
    if not (row.ok and row.explained):
        return ""
    words = EXPLANATIONS.get(_kind(row), ("", "explained"))[1]
    return f"{words} ({row.explained})"


def _fitted(records: list[dict], columns: list[str], notes: list[str], droppable: tuple[str, ...],
            width: int | None) -> str:
    """`records` as a table (numbers right-aligned), each row followed by its note (if any), wrapped
    and indented. With `width`, the `droppable` columns are left out in turn until the table fits."""
    right = [column for column in columns if column not in ("tensor", "layer", "shape", "ok", "step", "worst tensor")]
    for column in (None, *droppable):
        columns = [kept for kept in columns if kept != column]
        lines = format_table(records, columns, right=tuple(right)).splitlines()
        if width is None or max(len(line) for line in lines) <= width:
            break
    result = lines[:2]
    for line, note in zip(lines[2:], notes):
        result.append(line)
        if note:
            result += textwrap.wrap(note, width=width or 1000, initial_indent="    ", subsequent_indent="      ")
    return "\n".join(result)


@dataclass
class ParityReport:
    """Comparisons in the order they were computed; the first one out of tolerance is the break.
    `drift` (trajectories): step ("step 3") -> relative distance between the two free-running
    models' parameters after that step, shown beside the judged, synchronized comparison."""

    rows: list[Comparison]
    dtype: str
    drift: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def first_break(self) -> Comparison | None:
        return next((row for row in self.rows if not row.ok), None)

    @property
    def worst(self) -> Comparison | None:
        """The judged row with the largest error relative to its tolerance."""
        judged = [row for row in self.rows if row.tolerance != np.inf and not row.explained] or self.rows
        return max(judged, key=lambda row: np.nan_to_num(row.judged / max(row.tolerance, 1e-300), nan=np.inf),
                   default=None)

    @property
    def explained(self) -> list[Comparison]:
        return [row for row in self.rows if row.explained and not row.judged <= row.tolerance]

    def __add__(self, other: ParityReport) -> ParityReport:
        return ParityReport(self.rows + other.rows, self.dtype, {**self.drift, **other.drift})

    @property
    def _against_float64(self) -> bool:
        """Whether rows carry each side's distance from a float64 reference (float32 against torch)."""
        return any(not math.isnan(row.exact_torch) for row in self.rows)

    def table(self, width: int | None = None) -> str:
        """One line per tensor: tensor, layer, shape, max abs diff, rel error, each side vs float64
        (float32 only), cosine, ok ("n/a": shown, not judged; "ok (kink)", "ok (inherited)", "ok (loss
        kink)": beyond the bound and explained, in plain words on the line below). With `width`,
        the cosine, then the max abs diff, are left out until the lines fit."""
        records = [{"tensor": row.name, "layer": row.layer, "shape": "x".join(map(str, row.shape)) or "scalar",
                    "max abs diff": f"{row.max_abs:.3e}", "rel error": f"{row.rel_error:.2e}",
                    "scratch vs f64": _figure(row.exact_scratch), "torch vs f64": _figure(row.exact_torch),
                    "cosine": f"{row.cosine:.7f}", "ok": _verdict_word(row)} for row in self.rows]
        columns = ["tensor", "layer", "shape", "max abs diff", "rel error", "scratch vs f64", "torch vs f64",
                   "cosine", "ok"]
        if not self._against_float64:
            columns = [column for column in columns if "vs f64" not in column]
        notes = [_why(row) for row in self.rows]
        return _fitted(records, columns, notes, ("cosine", "max abs diff"), width)

    def step_table(self, width: int | None = None) -> str:
        """For trajectories ("step k/..." rows): one line per step, its number of tensors, the first
        break (or else the worst tensor, relative to its tolerance), and the free-running drift;
        explained rows of a step are counted below it. With `width`, the max abs diff, rel error, free
        drift and torch vs f64 are left out in turn until the lines fit."""
        steps: dict[str, list[Comparison]] = {}
        for row in self.rows:
            steps.setdefault(row.name.partition("/")[0], []).append(row)
        records, notes = [], []
        # the column as wide as any tensor's name, so that which columns fit does not depend on the worst one
        name_width = max(len(row.name.partition("/")[2]) for row in self.rows)
        for step, rows in steps.items():
            part = ParityReport(rows, self.dtype)
            shown = part.first_break or part.worst
            worst = shown.name.partition("/")[2].ljust(name_width)
            records.append({"step": step, "tensors": len(rows), "worst tensor": worst,
                            "max abs diff": f"{shown.max_abs:.3e}", "rel error": f"{shown.rel_error:.2e}",
                            "scratch vs f64": _figure(shown.exact_scratch), "torch vs f64": _figure(shown.exact_torch),
                            "tolerance": f"{shown.tolerance:.1e}",
                            "free drift": _figure(self.drift.get(step, math.nan)),
                            "ok": ("ok" if part.ok else "BREAK") + " (explained)" * bool(part.explained)})
            first = part.explained[0] if part.explained else None
            notes.append(f"{len(part.explained)} explained; {first.name}: {_why(first)}" if first else "")
        columns = ["step", "tensors", "worst tensor", "max abs diff", "rel error", "scratch vs f64", "torch vs f64",
                   "tolerance", "free drift", "ok"]
        if not self._against_float64:
            columns = [column for column in columns if "vs f64" not in column]
        return _fitted(records, columns, notes, ("max abs diff", "rel error", "free drift", "torch vs f64"), width)

    def records(self) -> list[dict]:
        """The rows as plain dicts (name, layer, shape, max_abs, rel_error, scratch_vs_f64,
        torch_vs_f64, cosine, tolerance, ok, explained), for a pandas DataFrame or JSON."""
        return [{"name": row.name, "layer": row.layer, "shape": list(row.shape), "max_abs": row.max_abs,
                 "rel_error": row.rel_error, "scratch_vs_f64": row.exact_scratch, "torch_vs_f64": row.exact_torch,
                 "cosine": row.cosine, "tolerance": row.tolerance, "ok": row.ok, "explained": row.explained}
                for row in self.rows]

    def rule(self) -> str:
        """How this report's torch rows are judged, in words."""
        if self.dtype == "float32":
            return (f"float32: scratch vs f64 <= {EXACT_FACTOR} x torch vs f64 + {EXACT_FLOOR_ULPS} ulps, "
                    "both from the same float32 weights, inputs and masks")
        return "float64: rel error vs torch <= 1e-10"

    def verdict(self) -> str:
        """One line: parity with the worst error, or the first break with a few values of both sides."""
        broken = self.first_break
        if broken is None:
            sides = dict.fromkeys(row.reference_side for row in self.rows)  # "torch", "numerical", in order
            worst = {side: ParityReport([row for row in self.rows if row.reference_side == side], self.dtype).worst
                     for side in sides}
            detail = "".join(f"; worst vs {side}: {_worst_words(row)} ({row.name})" for side, row in worst.items())
            unjudged = sum(row.tolerance == np.inf for row in self.rows)
            notes = [f"{unjudged} not judged"] * bool(unjudged)
            kinds = [_kind(row) for row in self.explained]
            notes += [f"{kinds.count('kink crossing')} explained by kink crossings"] * ("kink crossing" in kinds)
            notes += [f"{kinds.count('inherited')} inheriting rounding"] * ("inherited" in kinds)
            notes += [f"{counted(kinds.count('loss kink'), 'finite difference')} across a kink of the loss"
                      ] * ("loss kink" in kinds)
            shown = f" ({', '.join(notes)})" if notes else ""
            return f"parity: {len(self.rows)} tensors within tolerance{shown} ({self.dtype}){detail}"
        layer = f" ({broken.layer})" if broken.layer else ""
        return (f"BREAK at {broken.name}{layer}: {_worst_words(broken, broke=True)}, "
                f"max abs diff {broken.max_abs:.3e}; {broken.values()}")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every compared tensor from both sides: "scratch/<name>" and "torch/<name>" (or "numerical/")."""
        arrays = {}
        for row in self.rows:
            arrays[f"scratch/{row.name}"] = row.scratch
            arrays[f"{row.reference_side}/{row.name}"] = row.reference
        return arrays

    def dump(self, path: str | Path) -> None:
        """Write `arrays()` to an .npz atomically: a temporary file in the same folder, then os.replace."""
        arrays = self.arrays()
        write_atomically(path, lambda file: np.savez(file, **arrays))


def _worst_words(row: Comparison, broke: bool = False) -> str:
    """`scratch vs f64 3.1e-07 <= 8.3e-07 (torch vs f64 1.8e-07)` in float32, `rel error 4.8e-16 <= 1.0e-10` else."""
    relation = ">" if broke else "<="
    if math.isnan(row.exact_torch):
        return f"rel error {row.rel_error:.2e} {relation} {row.tolerance:.1e}"
    return (f"scratch vs f64 {row.exact_scratch:.2e} {relation} {row.tolerance:.1e} "
            f"(torch vs f64 {row.exact_torch:.2e}; scratch vs torch {row.rel_error:.2e})")
