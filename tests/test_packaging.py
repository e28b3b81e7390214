"""The package builds cleanly: no warning of the project's own, and the built-in specs are shipped."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_folder_with_files_is_a_listed_package():
    """setuptools warns about an importable folder left out of `packages` (scratch_nn/specs was)."""
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    folders = {path.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for top in ("scratch_nn", "torch_ref", "benchmark") for path in (ROOT / top).rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert sorted(folders) == sorted(packages)


def test_license_is_an_spdx_expression():
    assert isinstance(PYPROJECT["project"]["license"], str)


def test_a_wheel_builds_without_warnings_and_ships_the_specs(tmp_path):
    """A real build (pip, in its own isolated build environment, as `make` installs it), of a copy
    of the sources so that the checkout gets no build folders."""
    source = tmp_path / "source"
    for name in ("scratch_nn", "torch_ref", "benchmark"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.findall(r"\w+Warning:.*", output)  # BuildBackendWarning, SetuptoolsDeprecationWarning, ...
    wheel, = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    specs = {f"scratch_nn/specs/{path.name}" for path in (ROOT / "scratch_nn" / "specs").glob("*.toml")}
    assert specs and specs <= shipped
