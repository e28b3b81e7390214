"""`svt bench --profile`'s op-by-op profile on a small CNN: every layer of the scratch step and
torch's own ops, numbered per step, on real torch (its profiler) and a few synthetic MNIST-sized images."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.bench.profile import profile_lines, profile_steps
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import spec_from_dict

SMALL_CNN = {"name": "small-cnn", "model": {"input_shape": [1, 28, 28], "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "max_pool2d", "kernel_size": 4}, {"type": "conv2d", "out_channels": 4, "kernel_size": 3},
    {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 4}}


@pytest.fixture(scope="module")
def profile():
    spec = spec_from_dict(SMALL_CNN, where="test")
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((4, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 4)) for _ in range(2)]
    scratch = ScratchSide(spec)
    torch_side = TorchSide(spec, scratch.model.state_dict(), scheduled=False)
    own = {"scratch": batches, "torch": [torch_side.batch(x, y) for x, y in batches]}
    return profile_steps(scratch, torch_side, own, steps=3)


def test_scratch_profile_names_every_layer_forward_then_backward_in_order(profile):
    names = [name for name, _ in profile["scratch"]["ops"]]
    forward = [f"layers.{index} {kind} forward" for index, kind in
               enumerate(["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Flatten", "Linear"])]
    backward = [name.replace("forward", "backward") for name in reversed(forward)]
    assert names == [*forward, "loss forward + backward", *backward, "optimizer update"]


def test_torch_profile_numbers_each_op_by_its_turn_within_a_step(profile):
    names = [name for name, _ in profile["torch"]["ops"]]
    assert names.index("aten::conv2d #1") < names.index("aten::conv2d #2") < names.index("aten::linear #1")
    assert {"ConvolutionBackward0 #1", "ConvolutionBackward0 #2"} <= set(names)
    assert "aten::conv2d #3" not in names  # two convolutions per step, whatever the step count
    assert any(name.startswith("Optimizer.step") for name in names)


def test_profile_sums_its_ops_and_prints_both_sides_side_by_side(profile):
    for side in ("scratch", "torch"):
        ops = profile[side]["ops"]
        assert all(ms >= 0 for _, ms in ops) and profile[side]["step_ms"] == pytest.approx(sum(ms for _, ms in ops))
    lines = profile_lines({"batch_size": 4, "profile": profile})
    assert lines[0].startswith("profile at batch 4: ms per step, medians of 3 steps per side")
    assert lines[1].split()[:4] == ["scratch", "(sum", "of", "ops)"] and "torch (sum of ops)" in lines[1]
    assert any("layers.0 Conv2d forward" in line for line in lines)


def test_a_block_is_one_op_of_the_scratch_profile():
    """A residual block runs its own layers: the profile times it as one op (walking its layers one
    after another as if they were the model's would feed a layer the wrong input)."""
    spec = spec_from_dict({"name": "small-resnet", "model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2,
                                         "padding": 1}, {"type": "relu"}],
         "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2}]},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
        "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": 2}}, where="test")
    rng = np.random.default_rng(3)
    batches = [(rng.standard_normal((2, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 2))]
    scratch = ScratchSide(spec)
    torch_side = TorchSide(spec, scratch.model.state_dict(), scheduled=False)
    result = profile_steps(scratch, torch_side, {"scratch": batches, "torch": [torch_side.batch(*batches[0])]}, 2)
    forward = [name for name, _ in result["scratch"]["ops"] if name.endswith("forward")]
    assert forward == ["layers.0 Conv2d forward", "layers.1 Residual forward", "layers.2 Flatten forward",
                       "layers.3 Linear forward"]
