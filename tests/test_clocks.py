"""The run's clock: a side's training seconds leave out what the run spends looking inside it.

The instrumentation is made slow on purpose here (a sleep in the project's own diagnostics and
memory probe), so that a training step of a tiny net on real torch and NumPy is far shorter than
it: the training seconds must stay far below the instrumentation's, which gets its own figure.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark.core import memory
from benchmark.core.clocks import Stopwatch
from benchmark.core.memory import SideMemory
from benchmark.run import training_run
from benchmark.sides import probe
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import load_spec, with_overrides

SLOW = 0.2  # seconds each slowed instrumentation call sleeps: far above a tiny step, even on a busy machine


def small_spec(layers: str = "32:relu,10"):
    return with_overrides(load_spec("mnist-mlp"), layers=layers, train={"batch_size": 16})


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)


def test_the_stopwatch_sums_its_blocks():
    stopwatch = Stopwatch()
    for _ in range(2):
        with stopwatch:
            time.sleep(0.01)
    assert stopwatch.seconds >= 0.02


def test_memory_is_sampled_only_inside_its_block_and_times_itself():
    side_memory = SideMemory()
    side_memory.settle()
    side_memory.sample()  # outside a block: nothing, not even a call to mallinfo2
    assert side_memory.transient == 0.0 and side_memory.stopwatch.seconds == 0.0
    with side_memory:
        kept = np.ones(1_000_000)  # 8 MB through malloc
        side_memory.sample()
    del kept
    assert side_memory.transient >= 8e6 and side_memory.stopwatch.seconds > 0.0


@pytest.mark.parametrize("make_side", [
    lambda spec: ScratchSide(spec, np.random.default_rng(0)),
    lambda spec: TorchSide(spec, ScratchSide(spec, np.random.default_rng(0)).model.state_dict()),
], ids=["scratch", "torch"])
def test_observing_and_memory_accounting_stay_out_of_the_training_seconds(make_side, batch, monkeypatch):
    real_stats, real_heap = probe.unit_stats, memory.heap_in_use

    def slow_stats(*args):
        time.sleep(SLOW)
        return real_stats(*args)

    def slow_heap():
        time.sleep(SLOW)
        return real_heap()

    monkeypatch.setattr(probe, "unit_stats", slow_stats)
    monkeypatch.setattr(memory, "heap_in_use", slow_heap)
    side = make_side(small_spec())
    scratch = side if isinstance(side, ScratchSide) else None
    watched, begun = side.instrumentation.seconds, time.perf_counter()  # building the side was watched too
    loss, correct, training = training_run.timed_step(side, scratch, *batch, {}, observe=True, account_memory=True)
    wall, slept = time.perf_counter() - begun, side.instrumentation.seconds - watched
    assert np.isfinite(loss) and 0 <= correct <= 16
    assert slept >= 5 * SLOW  # the statistics of each of the 3 layers, the memory probe on entry and exit
    assert side.diagnostics["units"] and side.diagnostics["parameters"]
    assert 0 < training and 5 * SLOW < wall
    # the leak this guards against: a sleep counted in both `training` and `slept` would make their sum
    # exceed the wall time by SLOW (0.2 s); the gap is 0.000 s idle and under load, however slow the step
    assert training == pytest.approx(wall - slept, abs=0.05)


def test_looking_inside_does_not_change_the_training(mnist):
    """The losses of every step, bit for bit, whether the run observes every step or only the first."""
    from benchmark.data.mnist import as_inputs, as_labels

    spec = with_overrides(load_spec("mnist-mlp"), layers="32:relu+dropout0.2,16:tanh+bn,10",
                          train={"batch_size": 50, "epochs": 2})
    train = as_inputs(mnist.train_images[:300], "float32"), as_labels(mnist.train_labels[:300])
    test = as_inputs(mnist.test_images[:100], "float32"), as_labels(mnist.test_labels[:100])
    runs = [training_run.train_side_by_side(spec, train, test, check_every=every, quiet=True) for every in (1, 1000)]
    losses = [[(row["step"], row["side"], row["loss"]) for row in record.steps] for record in runs]
    assert len(losses[0]) == 2 * 12 and losses[0] == losses[1]
    assert len(runs[0].layers) > len(runs[1].layers) and runs[1].timing["torch"]["instrumentation_seconds"] > 0
