"""The dependency rule, read from the source (every import statement, at the top or inside a function):

    commands  ->  check, run, sanity, bench, study, fit  ->  report, parity  ->  sides, data  ->  core
                                                                     \\->  scratch_nn, torch_ref

A package imports only the packages the rule lets it (ALLOWED, which docs/architecture.md writes
out): run, sanity and bench do not import each other; the run may use the report and the parity
engine, sanity the parity engine, the study the run. scratch_nn imports only NumPy and the standard
library (and itself); torch_ref never imports benchmark. A broken rule fails with one line per
offending import: the file, the line, what it imports, and what that package may import.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "benchmark"

# package -> the other packages of benchmark/ it may import (its own modules it always may)
ALLOWED = {
    "commands": {"check", "run", "sanity", "bench", "study", "fit", "report", "parity", "sides", "data", "core"},
    "check": {"study", "parity", "sides", "data", "core"},
    "run": {"report", "parity", "sides", "data", "core"},
    "sanity": {"parity", "sides", "data", "core"},
    "bench": {"sides", "data", "core"},
    "study": {"run", "report", "sides", "data", "core"},
    "fit": {"report", "parity", "sides", "data", "core"},
    "report": {"core"},
    "parity": {"sides", "core"},
    "sides": {"core"},
    "data": {"core"},
    "core": set(),
}
TOP_MODULES = {"__init__.py": set(), "__main__.py": {"commands"}}  # benchmark/*.py, outside the subpackages
SCRATCH_NN_MAY_IMPORT = {"numpy", "scratch_nn", "__future__", *sys.stdlib_module_names}


def imports(source: str) -> list[tuple[int, str, str]]:
    """(line, dotted name, statement) of every name an import statement in `source` imports;
    `from a import b` gives a.b (b may be a module; if not, the package of a is what the rule sees)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, f"import {alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: a relative import (the project writes them absolute)"
            found += [(node.lineno, f"{node.module}.{alias.name}", f"from {node.module} import {alias.name}")
                      for alias in node.names]
    return found


def benchmark_package(dotted: str) -> str | None:
    """The subpackage of benchmark a dotted name is in ("benchmark.sides.scratch.Pass" -> "sides"),
    "" for `benchmark` itself, None outside benchmark."""
    parts = dotted.split(".")
    if parts[0] != "benchmark":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else ""


def violations(path: str, package: str | None, source: str) -> list[str]:
    """What in `source` (the module `path` of benchmark's `package`; None: benchmark/*.py itself)
    the rule forbids, one line each."""
    allowed = ALLOWED[package] if package else TOP_MODULES[Path(path).name]
    wrong = []
    for line, dotted, statement in imports(source):
        target = benchmark_package(dotted)
        if target and target != package and target not in allowed:
            wrong.append(f"{path}:{line} `{statement}`: benchmark.{package or Path(path).stem} may import only "
                         f"{', '.join(sorted(allowed)) or 'nothing of benchmark'} (tests/test_architecture.py)")
    return wrong


def modules(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def test_every_subpackage_of_benchmark_is_placed_in_the_rule():
    """A new folder (or a module left flat in benchmark/) must be given its place in ALLOWED first."""
    folders = {path.parent.relative_to(BENCHMARK).parts[0] for path in modules(BENCHMARK) if path.parent != BENCHMARK}
    assert folders == set(ALLOWED)
    assert {path.name for path in BENCHMARK.glob("*.py")} == set(TOP_MODULES)


def test_benchmark_subpackages_import_only_what_the_rule_allows():
    wrong = []
    for path in modules(BENCHMARK):
        relative = path.relative_to(BENCHMARK)
        package = relative.parts[0] if len(relative.parts) > 1 else None
        wrong += violations(str(path.relative_to(ROOT)), package, path.read_text(encoding="utf-8"))
    assert not wrong, "imports against the dependency rule:\n" + "\n".join(wrong)


def test_scratch_nn_imports_only_numpy_and_the_standard_library():
    wrong = [f"{path.relative_to(ROOT)}:{line} `{statement}`" for path in modules(ROOT / "scratch_nn")
             for line, dotted, statement in imports(path.read_text(encoding="utf-8"))
             if dotted.split(".")[0] not in SCRATCH_NN_MAY_IMPORT]
    assert not wrong, "scratch_nn imports only NumPy, the standard library and itself:\n" + "\n".join(wrong)


def test_torch_ref_never_imports_benchmark():
    wrong = [f"{path.relative_to(ROOT)}:{line} `{statement}`" for path in modules(ROOT / "torch_ref")
             for line, dotted, statement in imports(path.read_text(encoding="utf-8"))
             if dotted.split(".")[0] == "benchmark"]
    assert not wrong, "torch_ref never imports benchmark:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package, source, offending", [
    ("run", "from benchmark.bench.timing import time_steps", "from benchmark.bench.timing import time_steps"),
    ("sanity", "def check():\n    from benchmark.run import training_run", "from benchmark.run import training_run"),
    ("sides", "import benchmark.parity.engine", "import benchmark.parity.engine"),
    ("core", "from benchmark import data", "from benchmark import data"),
    ("report", "from benchmark.commands.cli import main", "from benchmark.commands.cli import main"),
])
def test_a_forbidden_import_is_named_with_its_file_line_and_the_rule(package, source, offending):
    """The checker itself: each of these breaks the rule, and the message says where and why."""
    wrong = violations(f"benchmark/{package}/planted.py", package, "import numpy\n" + source)
    line = 1 + source.count("\n") + 1  # after the `import numpy` line
    assert wrong == [f"benchmark/{package}/planted.py:{line} `{offending}`: benchmark.{package} may import only "
                     f"{', '.join(sorted(ALLOWED[package])) or 'nothing of benchmark'} (tests/test_architecture.py)"]


@pytest.mark.parametrize("package, source", [
    ("commands", "from benchmark.run.training_run import train_side_by_side"),
    ("run", "from benchmark.report.writer import write_report"),
    ("study", "from benchmark.run import training_run"),
    ("parity", "from benchmark.parity import kinks\nfrom benchmark.sides.torch import twin"),
    ("sides", "import benchmark\nfrom scratch_nn.model import MLP\nimport torch_ref"),
])
def test_an_allowed_import_passes(package, source):
    assert violations(f"benchmark/{package}/planted.py", package, source) == []
