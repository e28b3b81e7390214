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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.files import write_atomically
from benchmark.parity.compare import EXACT_FACTOR, EXACT_FLOOR_ULPS, Comparison


def _figure(value: float, width: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.2e}"


def _verdict_word(row: Comparison) -> str:
    if row.tolerance == np.inf:
        return "n/a"
    if row.ok and row.explained:
        return f"ok ({row.explained})"
    return "ok" if row.ok else "BREAK"


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

    def table(self) -> str:
        """One line per tensor: tensor, layer, shape, max abs diff, rel error, each side vs float64
        (float32), cosine, ok ("n/a": shown, not judged; "ok (kink crossing: ...)": explained)."""
        width = max([len(row.name) for row in self.rows] + [6])
        layer_width = max([len(row.layer) for row in self.rows] + [5])
        lines = [f"{'tensor':<{width}}  {'layer':<{layer_width}} {'shape':<12} {'max abs diff':>12} "
                 f"{'rel error':>10}  {'scratch vs f64':>14}  {'torch vs f64':>12} {'cosine':>10}  ok"]
        for row in self.rows:
            shape = "x".join(map(str, row.shape)) or "scalar"
            lines.append(f"{row.name:<{width}}  {row.layer:<{layer_width}} {shape:<12} {row.max_abs:>12.3e} "
                         f"{row.rel_error:>10.2e}  {_figure(row.exact_scratch, 14)}  {_figure(row.exact_torch, 12)} "
                         f"{row.cosine:>10.7f}  {_verdict_word(row)}")
        return "\n".join(lines)

    def step_table(self) -> str:
        """For trajectories ("step k/..." rows): one line per step, its number of tensors, the first
        break (or else the worst tensor, relative to its tolerance), and the free-running drift."""
        steps: dict[str, list[Comparison]] = {}
        for row in self.rows:
            steps.setdefault(row.name.partition("/")[0], []).append(row)
        lines = [f"{'step':<8} {'tensors':>7}  {'worst tensor (or first break)':<36} {'max abs diff':>12} "
                 f"{'rel error':>10}  {'scratch vs f64':>14}  {'torch vs f64':>12} {'tolerance':>10} "
                 f"{'free drift':>10}  ok"]
        for step, rows in steps.items():
            part = ParityReport(rows, self.dtype)
            shown = part.first_break or part.worst
            drift = _figure(self.drift.get(step, math.nan), 10)
            explained = f" ({len(part.explained)} explained: {part.explained[0].explained})" if part.explained else ""
            lines.append(f"{step:<8} {len(rows):>7}  {shown.name.partition('/')[2]:<36} {shown.max_abs:>12.3e} "
                         f"{shown.rel_error:>10.2e}  {_figure(shown.exact_scratch, 14)}  "
                         f"{_figure(shown.exact_torch, 12)} {shown.tolerance:>10.1e} {drift}  "
                         f"{'ok' if part.ok else 'BREAK'}{explained}")
        return "\n".join(lines)

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
            kinked = sum(row.explained.startswith("kink") for row in self.explained)
            notes += [f"{kinked} explained by kink crossings"] * bool(kinked)
            notes += [f"{len(self.explained) - kinked} inheriting rounding"] * bool(len(self.explained) - kinked)
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
