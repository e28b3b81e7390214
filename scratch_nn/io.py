"""Save and load a model's state_dict as .npz, keyed by torch's state_dict keys (`layers.0.weight`).

The file is written atomically: to a temporary file in the same folder, flushed to disk, then
renamed over `path` with os.replace, so an interrupted save never leaves a file that looks complete.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def save_npz(model, path: str | os.PathLike) -> Path:
    """Write model.state_dict() to `path` exactly as given (no ".npz" is appended); return the path."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        # np.savez appends ".npz" to a *name* without it; given an open file it writes there as is.
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **model.state_dict())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def load_npz(model, path: str | os.PathLike) -> None:
    """Load a file written by save_npz into `model` (keys and shapes checked by load_state_dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist; write one with save_npz(model, path)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"model file {str(path)!r} is not a .npz written by save_npz: {error}") from None
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise ValueError(f"model file {str(path)!r}: {error}") from None
