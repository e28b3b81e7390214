"""`svt bench`: the FLOP count it divides by, the files it writes, the input it refuses.

No timing assertions: the machine is shared and noisy. The quick run checks what must hold whatever
the load: the documented columns and metrics, ratio = scratch / torch, the thread counts both
libraries report, memory figures that add up, and an atomic output folder.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from benchmark.bench.timing import inference_flops, linear_shapes, training_flops
from benchmark.commands.cli import main
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.notation import parse_layers

DOCUMENTED_COLUMNS = ["spec", "dtype", "batch_size", "metric", "unit", "scratch", "torch", "ratio", "update_path"]
DOCUMENTED_METRICS = {"step_time", "forward_time", "backward_time", "update_time", "inference_time",
                      "inference_throughput", "gflops", "ceiling_fraction", "matmul_ceiling", "epoch_time",
                      "peak_rss", "train_memory", "memory_growth"}


def tiny(*hidden: int, input_size: int = 3, output_size: int = 2) -> ModelSpec:
    return ModelSpec(layers=parse_layers(",".join(map(str, (*hidden, output_size)))), input_shape=(input_size,))


@pytest.mark.parametrize("model, batch, forward, training", [
    # 3-4-2, N=5. forward: 2*5*3*4 + 2*5*4*2 = 120 + 80. backward: weight grads 120 + 80, input
    # grad of the second Linear only (the first one's input is the data) 80.
    (tiny(4), 5, 200, 200 + 200 + 80),
    # 3-4-5-2, N=1. forward: 2*(12 + 20 + 10) = 84. backward: weight grads 84, input grads of the
    # second and third Linear 2*(20 + 10) = 60.
    (tiny(4, 5), 1, 84, 84 + 84 + 60),
    # one Linear 3-2 (no hidden layer), N=7: forward 2*7*3*2 = 84; backward: its weight grad only.
    (tiny(), 7, 84, 84 + 84),
])
def test_flop_count_of_tiny_nets_by_hand(model, batch, forward, training):
    assert inference_flops(model, batch) == forward
    assert training_flops(model, batch) == training


AVX512 = {"avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize("core, flags, forced, says", [
    ("Haswell", AVX512, "Haswell", "as OPENBLAS_CORETYPE=Haswell in the environment asks"),
    ("Haswell", AVX512, "haswell", "as OPENBLAS_CORETYPE=haswell in the environment asks"),
    ("Haswell", AVX512, "NoSuchCore", "as it picked for this CPU model"),  # the variable was not taken
    ("HASWELL", AVX512, None, "as it picked for this CPU model"),  # a build without runtime selection
    ("Zen", AVX512, None, "as it picked for this CPU model"),
    ("Haswell", {"avx2", "fma"}, None, None),  # no AVX-512: Haswell is the right choice
    ("Haswell", AVX512 - {"avx512bw"}, None, None),  # SkylakeX's kernels need all five
    ("SkylakeX", AVX512, None, None),  # already the AVX-512 kernels
    (None, AVX512, None, None),  # NumPy not on OpenBLAS
])
def test_blas_kernel_hint_only_when_avx512_kernels_are_left_unused(core, flags, forced, says):
    from benchmark.core.environment import blas_kernel_hint

    hint = blas_kernel_hint(core, flags, forced)
    if says is None:
        assert hint is None
    else:
        assert f"runs its {core} (AVX2) kernels, {says}, on a CPU that has AVX-512" in hint
        assert "OPENBLAS_CORETYPE=SkylakeX" in hint


def test_linear_shapes_follow_the_spec():
    assert linear_shapes(tiny(4, 5)) == [(3, 4), (4, 5), (5, 2)]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist):  # `mnist` fetches and verifies the data first
    parent = tmp_path_factory.mktemp("bench")
    out = parent / "out"
    result = subprocess.run([sys.executable, "-m", "benchmark", "bench", "--quick", "--threads", "1", "--profile",
                             "--out", str(out)], capture_output=True, text=True, timeout=240)
    return result, parent, out


def test_quick_run_succeeds_and_prints_the_table(quick_run):
    result, _, out = quick_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "mnist-mlp, float32: 784-256-128-10 relu" in result.stdout
    assert "scratch step" in result.stdout and "torch step" in result.stdout and "upd path" in result.stdout
    assert "targets:" in result.stdout
    assert f"written: {out}" in result.stdout


def test_quick_run_writes_the_documented_csv(quick_run):
    _, _, out = quick_run
    with open(out / "bench.csv", newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == DOCUMENTED_COLUMNS
        rows = list(reader)
    assert {row["metric"] for row in rows} == DOCUMENTED_METRICS
    steps = [row for row in rows if row["metric"] == "step_time"]
    assert sorted(int(row["batch_size"]) for row in steps) == [1, 64]  # --quick's batch sizes
    for row in rows:
        scratch, torch = float(row["scratch"]), float(row["torch"])
        if row["metric"] != "memory_growth":  # growth may be 0 on either side
            assert scratch > 0 and torch > 0, row
        if row["metric"] in ("matmul_ceiling", "epoch_time", "peak_rss", "train_memory"):
            assert float(row["ratio"]) == pytest.approx(scratch / torch, rel=1e-9), row


def test_quick_run_states_the_update_path_the_optimizer_took(quick_run):
    """Every row names the code that ran scratch's update: the path this spec's optimiser takes here."""
    from benchmark.sides.scratch import ScratchSide
    from scratch_nn.spec import load_spec

    _, _, out = quick_run
    with open(out / "bench.csv", newline="", encoding="utf-8") as file:
        paths = {row["update_path"] for row in csv.DictReader(file)}
    expected = ScratchSide(load_spec("mnist-mlp")).update_path()
    assert paths == {expected}
    assert expected in ("openblas (flat)", "numpy (flat)")  # an MLP's parameters are one flat array
    assert f"| {expected} |" in (out / "bench.md").read_text(encoding="utf-8")


def test_quick_run_ratios_of_timings_are_medians_of_back_to_back_pairs(quick_run):
    """For timings, `ratio` is the median over repeats of scratch block / torch block (which ran
    back to back), and a rate's ratio is its inverse: recomputed here from the raw blocks."""
    import numpy as np

    _, _, out = quick_run
    with open(out / "bench.csv", newline="", encoding="utf-8") as file:
        rows = {(row["metric"], row["batch_size"]): float(row["ratio"]) for row in csv.DictReader(file)
                if row["metric"] != "memory_growth"}  # growth's ratio is empty (NaN) when torch's is 0
    raw = json.loads((out / "bench.json").read_text(encoding="utf-8"))["timing"]["steps"]
    for entry in raw:
        batch = str(entry["batch_size"])
        scratch, torch = (np.array(entry[side]["blocks"]) for side in ("scratch", "torch"))
        for column, phase in enumerate(("forward", "backward", "update")):
            expected = np.median(scratch[:, column] / torch[:, column])
            assert rows[(f"{phase}_time", batch)] == pytest.approx(expected, rel=1e-9)
        step = np.median(scratch.sum(axis=1) / torch.sum(axis=1))
        assert rows[("step_time", batch)] == pytest.approx(step, rel=1e-9)
        assert rows[("gflops", batch)] == pytest.approx(1 / step, rel=1e-9)
        inference = np.median(np.divide(entry["scratch"]["inference_blocks"], entry["torch"]["inference_blocks"]))
        assert rows[("inference_time", batch)] == pytest.approx(inference, rel=1e-9)
        assert rows[("inference_throughput", batch)] == pytest.approx(1 / inference, rel=1e-9)


def test_quick_run_measures_the_ceiling_with_each_row(quick_run):
    """Each row's ceiling is the median of the products taken with its blocks (one per block and
    library), and its fractions divide that row's GFLOP/s by the better of the two libraries."""
    import numpy as np

    _, _, out = quick_run
    with open(out / "bench.csv", newline="", encoding="utf-8") as file:
        rows = {(row["metric"], row["batch_size"]): row for row in csv.DictReader(file)}
    raw = json.loads((out / "bench.json").read_text(encoding="utf-8"))["timing"]["steps"]
    for entry in raw:
        batch, ceiling = str(entry["batch_size"]), entry["ceiling"]
        assert ceiling["size"] == 512  # --quick
        for library, side in (("numpy", "scratch"), ("torch", "torch")):
            samples = ceiling["samples"][library]
            assert len(samples) == len(entry[side]["blocks"]) == 3  # --quick: 3 repeats
            assert float(rows[("matmul_ceiling", batch)][side]) == pytest.approx(np.median(samples), rel=1e-9)
        best = max(ceiling["numpy"], ceiling["torch"])
        for side in ("scratch", "torch"):
            gflops = float(rows[("gflops", batch)][side])
            assert float(rows[("ceiling_fraction", batch)][side]) == pytest.approx(gflops / best, rel=1e-9)


def test_quick_run_memory_figures_add_up(quick_run):
    _, _, out = quick_run
    raw = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert {run["side"] for run in raw["memory"]} == {"scratch", "torch"}
    for run in raw["memory"]:
        assert len(run["epochs"]) == 2  # --quick: two epochs per memory run
        assert run["baseline"]["VmRSS"] > 100  # MB: the float32 training set alone is 188 MB
        assert all(epoch["VmHWM"] >= run["baseline"]["VmRSS"] for epoch in run["epochs"])


def test_quick_run_reports_the_threads_both_libraries_use(quick_run):
    _, _, out = quick_run
    environment = json.loads((out / "bench.json").read_text(encoding="utf-8"))["timing"]["environment"]
    assert environment["threads_requested"] == 1
    assert environment["torch_threads"] == 1
    assert environment["openblas_threads"] in (1, None)  # None: NumPy not built on OpenBLAS
    assert environment["thread_variables"]["OPENBLAS_NUM_THREADS"] == "1"
    # the kernels OpenBLAS runs, and the variable that may force them, passed on untouched
    assert environment["blas_variables"] == {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    if environment["openblas_threads"] is not None:
        assert environment["openblas_core"]


def test_quick_run_with_profile_prints_both_sides_ops_per_batch_size(quick_run):
    """--profile: per row, scratch's layers and torch's profiler ops, measured in the timing worker."""
    result, _, out = quick_run
    for batch in (1, 64):
        assert f"profile at batch {batch}: ms per step" in result.stdout
    timing = json.loads((out / "bench.json").read_text(encoding="utf-8"))["timing"]
    for row in timing["steps"]:
        scratch, torch = row["profile"]["scratch"], row["profile"]["torch"]
        names = [name for name, _ in scratch["ops"]]
        assert names[:2] == ["layers.0 Linear forward", "layers.1 ReLU forward"] and names[-1] == "optimizer update"
        assert "aten::linear #1" in [name for name, _ in torch["ops"]]
        for side in (scratch, torch):
            assert side["step_ms"] == pytest.approx(sum(ms for _, ms in side["ops"])) and side["step_ms"] > 0
    assert "### profile at batch 64" in (out / "bench.md").read_text(encoding="utf-8")


def test_quick_run_writes_markdown_and_plot_atomically(quick_run):
    _, parent, out = quick_run
    assert sorted(path.name for path in out.iterdir()) == ["bench.csv", "bench.json", "bench.md", "step_time.png"]
    assert (out / "step_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "bench.md").read_text(encoding="utf-8")
    assert "| batch | scratch step | torch step | ratio |" in markdown
    assert "## Targets" in markdown
    assert [path.name for path in parent.iterdir()] == ["out"]  # no temporary folder left behind


@pytest.mark.parametrize("arguments, message", [
    (["--batch-sizes", "0,64"], "--batch-sizes: each item must be an integer from 1 to 60,000"),
    (["--batch-sizes", "1,sixty"], "got 'sixty' in '1,sixty'"),
    (["--repeats", "0"], "--repeats must be a positive integer, got 0"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--epochs", "1"], "--epochs (of the memory runs) must be at least 2"),
    (["--layers", "64:relu,7"], "layers.2 (linear) gives (N, 7), which does not fit MNIST's 10 classes"),
    (["--spec", "dropout-bn", "--batch-sizes", "1,64"], "cannot train on a batch of 1"),
])
def test_bad_input_exits_2_with_one_line(arguments, message, capsys):
    assert main(["bench", "--quick", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert len(error.strip().splitlines()) == 1


def test_an_out_folder_with_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 2
    assert "holds other files (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_out_path_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "bench.csv"
    target.write_text("x")
    assert main(["bench", "--quick", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_relu_speed_trick_keeps_the_values_when_shape_and_dtype_change():
    """ReLU compares with a cached zero array (faster than the scalar 0); a new shape or dtype must
    get a new one, never a stale or mistyped one."""
    import numpy as np

    from scratch_nn.activations import ReLU

    layer, rng = ReLU(), np.random.default_rng(0)
    for shape, dtype in [((4, 3), np.float32), ((4, 3), np.float32), ((2, 5), np.float32), ((2, 5), np.float64)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = layer.forward(x)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        np.testing.assert_array_equal(layer.backward(np.ones_like(x)), (x > 0).astype(dtype))
    assert not np.any(layer._zeros)  # the cached array stays zero: nothing writes into it


@pytest.mark.parametrize("settings", [
    {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    {"momentum": 0.5, "dampening": 0.3}, {"momentum": 0.0, "weight_decay": 1e-2},
])
@pytest.mark.parametrize("gradients_as", ["live views", "copies"])
def test_sgd_on_flat_parameters_equals_sgd_per_tensor(settings, gradients_as):
    """An MLP keeps its parameters in one flat array, which SGD updates in one go. Bit for bit the
    same as the per-tensor update (the rule is elementwise), including the momentum buffers, whether
    the gradients come as the model's own views or as separate copies (then gathered)."""
    import numpy as np

    from scratch_nn.model import MLP
    from scratch_nn.optim import SGD

    model = MLP(tiny(4, 5, input_size=6, output_size=3), np.random.default_rng(0))
    flat = SGD(model.named_parameters(), lr=0.1, **settings)
    assert flat._flat is not None  # the MLP's parameters are views of one array
    separate = {name: value.copy() for name, value in model.named_parameters()}
    per_tensor = SGD(separate, lr=0.1, **settings)
    assert per_tensor._flat is None
    rng = np.random.default_rng(1)
    for _ in range(3):
        for _name, grad in model.named_gradients():
            grad[...] = rng.standard_normal(grad.shape)
        live = dict(model.named_gradients())
        flat.step(live if gradients_as == "live views" else {name: g.copy() for name, g in live.items()})
        per_tensor.step({name: g.copy() for name, g in live.items()})
    for name, value in model.named_parameters():
        np.testing.assert_array_equal(value, separate[name])
        assert set(flat.state[name]) == set(per_tensor.state[name])
        for key, state in per_tensor.state[name].items():
            np.testing.assert_array_equal(flat.state[name][key], state)


def test_conv_flops_are_counted_per_output_position_and_weight():
    """conv 1->6 5x5 pad 2 on 28x28 (first: 2 products), conv 6->16 5x5 groups 2 on 14x14 -> 10x10, linear
    400->10, N=2: forward 2*2*28*28*6*1*25 + 2*2*10*10*16*3*25 + 2*2*400*10."""
    from scratch_nn.spec import spec_from_dict

    spec = spec_from_dict({"model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel_size": 5, "padding": 2}, {"type": "max_pool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 16, "kernel_size": [5, 5], "groups": 2},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}]}}, where="test")
    products = [2 * 2 * 28 * 28 * 6 * 25, 2 * 2 * 10 * 10 * 16 * 3 * 25, 2 * 2 * 400 * 10]
    assert inference_flops(spec.model, 2) == sum(products)
    assert training_flops(spec.model, 2) == 2 * products[0] + 3 * products[1] + 3 * products[2]


def test_the_targets_judge_every_mlp_row_at_1_and_every_cnn_row_at_1_3():
    """Each MLP of the run, in each dtype, is held to step ratio <= 1 at every batch size; a CNN
    (a conv2d in its list) to <= 1.3 at every batch size in both dtypes (issue 27's floor)."""
    from types import SimpleNamespace

    from benchmark.bench.report import BenchResults, targets
    from scratch_nn.spec import load_builtin_spec

    mlp, cnn = load_builtin_spec("mnist-mlp"), load_builtin_spec("lenet5-relu")
    ratios = {("mnist-mlp", "float32"): {1: 0.5, 1024: 1.02}, ("mnist-mlp", "float64"): {1: 0.9, 1024: 0.99},
              ("lenet5-relu", "float32"): {1: 0.6, 64: 1.4, 256: 1.2}, ("lenet5-relu", "float64"): {1: 1.31, 64: 0.9}}
    rows = [{"spec": spec, "dtype": dtype, "batch_size": batch, "metric": "step_time", "ratio": value}
            for (spec, dtype), by_batch in ratios.items() for batch, value in by_batch.items()]
    plan = SimpleNamespace(specs=(mlp, cnn), dtypes=("float32", "float64"))
    found = {row["target"]: (row["measured"], row["holds"]) for row in targets(BenchResults(plan, {}, [], rows))}
    assert found == {
        "mnist-mlp float32: step ratio <= 1 at every batch size": ("worst 1.02 at batch 1024", False),
        "mnist-mlp float64: step ratio <= 1 at every batch size": ("worst 0.99 at batch 1024", True),
        "lenet5-relu float32: step ratio <= 1.3 at every batch size": ("worst 1.40 at batch 64", False),
        "lenet5-relu float64: step ratio <= 1.3 at every batch size": ("worst 1.31 at batch 1", False),
    }
