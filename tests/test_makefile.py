"""The set-up commands the README names: `make test` says what it installs before it installs it,
and `make test-no-browser` runs every test but the page tests, which are the ones marked `browser`."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")


def test_the_browser_step_says_what_it_installs_and_why_before_touching_the_system(tmp_path):
    # An empty PATH: no chromium is found; SUDO=echo prints the install commands instead of running them.
    result = subprocess.run([MAKE, "-s", "browser", "SUDO=echo WOULD-RUN"], cwd=ROOT, env={"PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    first_install = next(index for index, line in enumerate(lines) if line.startswith("WOULD-RUN"))
    said = " ".join(lines[:first_install])
    assert first_install >= 2 and "page tests" in said and "chromium and chromium-driver" in said, result.stdout
    assert "make test-no-browser" in said, said
    install = "WOULD-RUN DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver"
    assert lines[first_install:] == ["WOULD-RUN apt-get update", install]


def test_test_no_browser_runs_pytest_without_the_browser_marker():
    # Under `make test` (CI, the README) the outer make's MAKELEVEL/MAKEFLAGS are inherited, and a nested
    # make prints "Entering/Leaving directory" lines: run this make as a top-level one.
    env = {key: value for key, value in os.environ.items() if key not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run([MAKE, "--no-print-directory", "-n", "test-no-browser"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == '.venv/bin/python -m pytest -q -m "not browser"'
    assert "browser" not in result.stdout.replace('"not browser"', ""), "test-no-browser must not install chromium"


def test_every_test_that_opens_a_browser_is_marked_browser():
    """A test that takes the `browser` fixture or calls check_page/start_chromium carries
    @pytest.mark.browser (so `-m "not browser"` leaves it out), and only those do."""
    opening, marked = set(), set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            called = {call.func.id for call in ast.walk(node) if isinstance(call, ast.Call)
                      and isinstance(call.func, ast.Name)}
            if "browser" in [argument.arg for argument in node.args.args] or called & {"check_page", "start_chromium"}:
                opening.add(f"{path.name}::{node.name}")
            if any(ast.unparse(decorator) == "pytest.mark.browser" for decorator in node.decorator_list):
                marked.add(f"{path.name}::{node.name}")
    assert opening and opening == marked
