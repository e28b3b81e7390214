"""A fit's data: the built-in targets, noise, CSV files and their errors, and the spec's [data] table."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.core.errors import UserError
from benchmark.data.functions import TARGETS, load_points, read_csv_points
from scratch_nn.spec import SpecError, load_spec, spec_from_dict, to_dict, with_overrides
from scratch_nn.spec.data_spec import FUNCTION_TARGETS, DataSpec

FIT_TOML = {"data": {"source": "sin", "samples": 9},
            "model": {"input_shape": [1], "layers": [{"type": "linear", "out_features": 4}, {"type": "tanh"},
                                                     {"type": "linear", "out_features": 1}]}}


def test_the_targets_scratch_nn_names_are_the_ones_defined():
    assert tuple(TARGETS) == FUNCTION_TARGETS


@pytest.mark.parametrize("name", FUNCTION_TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_builtin_target_is_sampled_evenly_over_its_interval(name, dtype):
    points = load_points(DataSpec(source=name, samples=11, low=-2.0, high=3.0), dtype)
    assert points.x.shape == points.y.shape == (11, 1)
    assert points.x.dtype == points.y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(points.x[:, 0], np.linspace(-2.0, 3.0, 11), rtol=1e-7)
    np.testing.assert_allclose(points.y[:, 0], TARGETS[name][0](np.linspace(-2.0, 3.0, 11)), rtol=1e-6, atol=1e-7)
    assert (points.low, points.high) == (-2.0, 3.0)


def test_the_targets_have_their_shapes():
    x = np.array([-3.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(TARGETS["line"][0](x), 0.5 * x + 1)
    np.testing.assert_array_equal(TARGETS["abs"][0](x), [3.0, 1.0, 0.5, 2.0])
    np.testing.assert_array_equal(TARGETS["step"][0](x), [-1.0, -1.0, 1.0, 1.0])
    plateau = TARGETS["plateau"][0](np.linspace(-3, 3, 601))
    assert np.ptp(plateau[:300]) < 1e-3  # flat over [-3, 0]
    assert plateau[-1] > 0.999 and np.max(np.diff(plateau)) > 0.015  # up to 1 through a sharp bend


def test_noise_is_gaussian_with_the_given_deviation_and_its_own_seed():
    clean = load_points(DataSpec("sin", samples=4000), "float64").y
    noisy = load_points(DataSpec("sin", samples=4000, noise=0.1, seed=3), "float64").y
    again = load_points(DataSpec("sin", samples=4000, noise=0.1, seed=3), "float64").y
    other = load_points(DataSpec("sin", samples=4000, noise=0.1, seed=4), "float64").y
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)
    assert np.std(noisy - clean) == pytest.approx(0.1, rel=0.05)


def write(tmp_path, text, name="points.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_csv_file_with_or_without_header_gives_the_same_points(tmp_path):
    with_header = read_csv_points(write(tmp_path, "x,y\n0,1\n1.5,-2e-1\n\n3, 4\n"))
    without = read_csv_points(write(tmp_path, "0,1\n1.5,-0.2\n3,4\n", "plain.csv"))
    for got in (with_header, without):
        np.testing.assert_array_equal(got[0], [0.0, 1.5, 3.0])
        np.testing.assert_array_equal(got[1], [1.0, -0.2, 4.0])
    points = load_points(DataSpec(source=write(tmp_path, "x,y\n0,1\n2,5\n", "two.csv")), "float32")
    assert (points.low, points.high, points.x.dtype, points.target) == (0.0, 2.0, np.float32, None)


def test_a_csv_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Spreadsheet programs often write UTF-8 with a BOM (EF BB BF) before the first cell."""
    for text in ("0,1\n2,5\n", "x,y\n0,1\n2,5\n"):
        path = tmp_path / "excel.csv"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        x, y = read_csv_points(str(path))
        np.testing.assert_array_equal(x, [0.0, 2.0])
        np.testing.assert_array_equal(y, [1.0, 5.0])


@pytest.mark.parametrize("text, message", [
    ("x,y\n0,1\n1,abc\n", r"line 3: 'abc' is not a finite number"),
    ("0,1\nx,y\n", r"line 2: 'x' is not a finite number"),  # a header only before the first point
    ("0,1\n1,nan\n", r"line 2: 'nan' is not a finite number"),
    ("1\n2\n", r"line 1: expected two columns x,y, got 1"),
    ("0,1,2\n", r"line 1: expected two columns x,y, got 3"),
    ("x,y\n0,1\n", r"1 point\(s\); a fit needs at least 2"),
    ("1,1\n1,2\n", r"every x is 1; a fit needs at least two different x"),
])
def test_a_bad_csv_is_refused_with_its_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=f"{path}.*{message}" if "line" in message else message):
        read_csv_points(path)


def test_a_missing_csv_file_names_the_alternatives(tmp_path):
    with pytest.raises(UserError, match="no such file; .* built-in targets: line, parabola, sin"):
        read_csv_points(str(tmp_path / "nope.csv"))


def test_a_fit_spec_reads_its_data_table_and_trains_full_batch_unless_told():
    spec = spec_from_dict(FIT_TOML, "fit.toml")
    assert spec.data == DataSpec(source="sin", samples=9) and spec.data.is_function
    assert spec.train.batch_size == 0
    assert spec_from_dict(to_dict(spec), "again") == spec
    told = spec_from_dict({**FIT_TOML, "train": {"batch_size": 4}}, "fit.toml")
    assert told.train.batch_size == 4


def test_an_mnist_spec_is_as_before():
    spec = load_spec("mnist-mlp")
    assert not spec.data.is_function and "data" not in to_dict(spec)
    with pytest.raises(SpecError, match="batch_size must be an integer >= 1, got 0"):
        with_overrides(spec, train={"batch_size": 0})


@pytest.mark.parametrize("change, message", [
    ({"data": {"source": "cosh"}}, r"fit.toml: data: unknown source 'cosh'; allowed: mnist, line, .*\.csv"),
    ({"data": {"samples": 1}}, "samples must be an integer >= 2, got 1"),
    ({"data": {"low": 2.0, "high": 1.0}}, r"low < high, got \[2.0, 1.0\]"),
    ({"data": {"noise": -0.1}}, "noise must be a finite number"),
    ({"data": {"colour": 1}}, r"\[data\]: unknown key 'colour'"),
    ({"model": {"input_shape": [784]}}, r"input_shape must be \[1\], got \[784\]"),
    ({"model": {"layers": [{"type": "linear", "out_features": 3}]}}, r"must give \(N, 1\), got \(N, 3\)"),
    ({"model": {"loss": "cross_entropy"}}, "loss 'cross_entropy' is a classification loss; a fit takes one of mse, "
                                           "l1, huber"),
    ({"model": {"loss": "huber", "huber_delta": 0.0}}, "huber_delta must be a finite number in"),
])
def test_a_bad_fit_spec_is_refused_saying_what_is_allowed(change, message):
    table = {key: {**FIT_TOML[key], **change.get(key, {})} for key in FIT_TOML}
    with pytest.raises(SpecError, match=message):
        spec_from_dict(table, "fit.toml")


def test_mnist_refuses_a_regression_loss():
    with pytest.raises(SpecError, match="loss 'huber' is a regression loss, for a fit"):
        with_overrides(load_spec("mnist-mlp"), model={"loss": "huber"})
