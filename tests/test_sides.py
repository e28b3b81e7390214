"""benchmark.sides: the one ScratchSide and the one TorchSide that the run, the parity engine, the
bench and sanity step.

What these tests prove: the side's three phases (what the bench times) are the library's own
training step bit for bit, L1 and dropout included; a probe followed by `update()` (what the parity
trajectory does) is that same step; the torch side starts from the scratch side's weights exactly,
in its dtype or cast to another, and in float64 takes the same steps as scratch; the state a side
reports loads into the other.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.losses import build_loss
from scratch_nn.optim import build_optimizer
from scratch_nn.spec import load_spec, with_overrides
from scratch_nn.train import train_step

STEPS = 3


def small_spec(dtype: str, **train):
    return with_overrides(load_spec("mnist-mlp"), layers="24:tanh+dropout0.25,16:relu+bn,10", model={"dtype": dtype},
                          train={"batch_size": 16, "momentum": 0.9, "l1": 1e-3, **train})


def batches(dtype: str, count: int = STEPS):
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((16, 784)).astype(dtype), rng.integers(0, 10, 16)) for _ in range(count)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_three_phases_are_the_library_training_step_bit_for_bit(dtype):
    spec = small_spec(dtype)
    side = ScratchSide(spec, np.random.default_rng(0))
    model = copy.deepcopy(side.model)  # its dropout generator too: both draw the same masks
    loss_fn, optimizer = build_loss(spec.model), build_optimizer(spec.train, dict(model.named_parameters()))
    for x, y in batches(dtype):
        side.forward(x, y)
        side.backward()
        side.update()
        loss, logits = train_step(model, loss_fn, optimizer, x, y, spec.train.l1)
        assert side.loss_value() == loss
        assert np.array_equal(side.logits, logits)
    for (name, value), (_, expected) in zip(side.model.named_parameters(), model.named_parameters()):
        assert np.array_equal(value, expected), name


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_probe_then_update_is_the_same_step(optimizer):
    """The parity trajectory steps a side with `probe` (every intermediate kept) and `update`."""
    spec = small_spec("float64", optimizer=optimizer, lr=0.01)
    stepped, probed = ScratchSide(spec, np.random.default_rng(0)), ScratchSide(spec, np.random.default_rng(0))
    for x, y in batches("float64"):
        loss, _ = stepped.step(x, y)
        seen = probed.probe(x, y)
        probed.update()
        assert float(seen.loss) == loss
    for name, value in stepped.state().items():
        assert np.array_equal(value, probed.state()[name]), name


def test_the_torch_side_starts_from_the_scratch_weights_and_steps_alike_in_float64():
    spec = small_spec("float64")
    scratch = ScratchSide(spec, np.random.default_rng(0))
    torch_side = TorchSide(spec, scratch.model.state_dict())
    assert all(np.array_equal(value, torch_side.weights()[name]) for name, value in scratch.weights().items())
    for x, y in batches("float64"):
        scratch_loss, scratch_correct = scratch.step(x, y)
        torch_loss, torch_correct = torch_side.step(x, y, scratch.masks())  # the masks scratch drew
        assert torch_loss == pytest.approx(scratch_loss, rel=1e-12)
        assert torch_correct == scratch_correct
    for name, value in scratch.weights().items():
        np.testing.assert_allclose(torch_side.weights()[name], value, rtol=1e-10, atol=1e-13, err_msg=name)
    scratch.end_epoch()
    torch_side.end_epoch()
    assert torch_side.lr() == pytest.approx(scratch.lr(), rel=1e-15)  # the cosine schedule's first step


def test_a_torch_side_in_another_dtype_holds_the_scratch_state_cast_and_loads_a_scratch_state():
    spec = small_spec("float32")
    scratch = ScratchSide(spec, np.random.default_rng(0))
    wider = TorchSide(spec, scratch.model.state_dict(), dtype="float64", training=False)
    assert not wider.module.training
    for name, value in scratch.weights().items():
        assert wider.weights()[name].dtype == np.float64
        assert np.array_equal(wider.weights()[name], value.astype(np.float64)), name
    x, y = batches("float32", 1)[0]
    scratch.step(x, y)
    same = TorchSide(spec)  # torch's own init, then the scratch side's whole training state
    same.load_state(scratch.state())
    state = same.state()
    for name, value in scratch.state().items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_the_bench_builds_a_torch_side_without_a_scheduler():
    """A torch lr scheduler wraps optimizer.step in a counter: not inside the bench's timed steps."""
    side = TorchSide(small_spec("float32"), scheduled=False)  # the spec has a cosine schedule
    assert side.scheduler is None and TorchSide(small_spec("float32")).scheduler is not None
    assert "step" not in vars(side.optimizer)  # the optimiser's own step, not an instance wrapper
    side.end_epoch()
    assert side.lr() == small_spec("float32").train.lr
