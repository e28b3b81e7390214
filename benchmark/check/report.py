"""The report of one `svt check`: the mapping, the compared tensors (named by the learner's names),
the findings in words, and one verdict line.

    report.ok            every tensor agrees and nothing was found (exit 0; else 1)
    report.table()       the mapping table, then one line per tensor (the parity engine's table)
    report.verdict()     "my_check.py: ok: ..." or "my_check.py: WRONG: <the first finding>"
    report.findings      every finding, the most useful first
    report.records()     the rows as dicts (pandas, JSON)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from benchmark.check.mapping import mapping_table
from benchmark.parity.report import ParityReport


def yours(text: str) -> str:
    """The parity engine's words for its scratch side ("scratch vs f64") said of the learner's ("yours vs f64")."""
    return re.sub(r"\bscratch\b", "yours", text)


@dataclass
class CheckReport:
    name: str
    declaration: object  # benchmark.check.twin.Declaration
    mapping: list  # benchmark.check.mapping.Mapped
    rows: list  # benchmark.parity.compare.Comparison
    findings: list[str]
    dtype: str
    batch: int
    fd_loss: float = float("nan")

    @property
    def parity(self) -> ParityReport:
        return ParityReport(self.rows, self.dtype)

    @property
    def ok(self) -> bool:
        return self.parity.ok and not self.findings

    def table(self) -> str:
        """The mapping, then the tensors: loss, output, gradients, the second call's, finite
        differences, the steps."""
        return (f"{self.declaration.describe()}, batch {self.batch}\n\n{mapping_table(self.mapping)}\n\n"
                f"{yours(self.parity.table())}\nrule: {yours(self.parity.rule())}; fd/: central differences of "
                "your own loss, at sampled coordinates")

    def verdict(self) -> str:
        """One line: ok with the worst error, or WRONG with the first finding."""
        if self.ok:
            return f"{self.name}: ok: {yours(self.parity.verdict())}"
        return f"{self.name}: WRONG: {self.findings[0] if self.findings else yours(self.parity.verdict())}"

    def explanation(self) -> str:
        """Every finding, one per line, with the first break's values as evidence."""
        lines = [f"  - {finding}" for finding in self.findings]
        broken = self.parity.first_break
        if broken is not None:
            lines.append(f"  evidence: {yours(self.parity.verdict())}")
        return "\n".join(lines)

    def records(self) -> list[dict]:
        return self.parity.records()
