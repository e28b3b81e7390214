"""Files and folders that appear whole or not at all: written beside their place, then renamed.

    write_atomically(path, lambda file: file.write(data))      # a file
    with folder_written_atomically(final) as folder:           # a folder (a report, a bench run)
        (folder / "report.md").write_text(...)

A rename within one folder is atomic (os.replace), so a reader, a crash or a Ctrl-C never meets a
half-written file or report under its final name, and the earlier one stays until the new is ready.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object],
                     check: Callable[[Path], None] | None = None) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`.

    `check(temporary_path)`, if given, runs on the complete temporary file before the rename and
    may raise. An exception (Ctrl-C included) removes the temporary file and leaves `path` as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 less the umask
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        if check is not None:
            check(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


@contextmanager
def folder_written_atomically(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; when the block ends it becomes `final`.

    If the block raises (Ctrl-C included), the temporary folder is removed and an earlier `final`
    is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)  # left by a killed earlier process with our pid
    temporary.mkdir()
    try:
        yield temporary
        replace_folder(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def replace_folder(new: Path, final: Path) -> None:
    """Rename the folder `new` to `final`. An earlier `final` is moved aside first (a folder cannot
    be renamed over a non-empty one) and deleted only once `new` is in place; if that rename fails,
    the earlier one is put back."""
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if not final.exists():
        os.replace(new, final)
        return
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
