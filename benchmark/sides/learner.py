"""The learner's side of `svt run --model`: their own model, driven one training step at a time.

    side = LearnerSide("my_net.py", model, to_twin, output_loss, probabilities, lr=0.1)
    loss, correct = side.step(x, y, observe=False)   # their forward, loss_and_grads, then their step
    loss, probabilities = side.evaluate(x, y)         # their forward on the test set
    side.weights()                                    # their arrays in the twin's names and layouts

`model` is the learner's model as svt drives it (`benchmark.check.learner.LearnerProcess`: their
file in its own process; or `InMemoryModel`): `parameters()`, `loss_and_grads(x, y)` ->
{"loss", "grads", ...}, `forward(x)`, `step(grads, lr)` (their own step, or p -= lr * g in
place). This module never looks inside their code: it only calls those four, so it has the same
methods as `ScratchSide` where the run calls them, and the run treats it as its first side.

What the side is given, by the run that built it (nothing here imports the check engine):
- `to_twin(arrays)`: their arrays by their names -> the twin's state (its names, its layouts), so
  the drift and the report's weight pictures compare like with like; `names` their name -> twin name;
- `output_loss(outputs, y)`: the loss the file declares (LOSS, REDUCTION, SCALE) of their forward's
  outputs, and `probabilities(outputs)`: the class probabilities the report shows (the same
  functions the twin's evaluation uses, so the two sides' test figures are computed alike).

The side's memory lives in their process: the figures of this process would say nothing about it,
so they are NaN (`NotMeasured`).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from benchmark.core.clocks import Stopwatch
from benchmark.sides import probe


class NotMeasured:
    """A side's memory that cannot be measured from here: the methods of `SideMemory`, NaN figures."""

    held = math.nan
    peak_mb = math.nan

    def __enter__(self) -> NotMeasured:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def sample(self) -> None:
        pass

    def settle(self) -> None:
        pass


class LearnerSide:
    """The learner's model as a side of the run (module docstring)."""

    def __init__(self, name: str, model, to_twin: Callable, names: dict[str, str], output_loss: Callable,
                 probabilities: Callable, lr: float) -> None:
        self.name, self.model, self.to_twin, self.names = name, model, to_twin, names
        self.output_loss, self.probabilities, self.learning_rate = output_loss, probabilities, lr
        self.instrumentation = Stopwatch()  # the run's looking inside, kept out of the training time
        self.memory = NotMeasured()
        self.diagnostics: dict = {"units": []}  # their activations are not visible from here

    def step(self, x: np.ndarray, y: np.ndarray, observe: bool = False) -> tuple[float, int]:
        """One of their training steps: their forward (for the batch's accuracy), their loss and
        gradients, then their step at the run's lr; returns the loss and the number of correct argmaxes."""
        correct = int(np.sum(np.argmax(self.model.forward(x), axis=1) == y))
        seen = self.model.loss_and_grads(x, y)
        if observe:
            with self.instrumentation:
                before = self.weights()
        self.model.step(seen["grads"], self.learning_rate)
        if observe:
            with self.instrumentation:
                grads = {self.names[name]: np.asarray(grad) for name, grad in seen["grads"].items()}
                self.diagnostics["parameters"] = probe.parameter_rows(before, self.weights(), grads)
        return float(seen["loss"]), correct

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, np.ndarray]:
        """Their forward over (x, y) in chunks: the declared loss (mean over the chunks, weighted by
        their sizes, as `TorchSide.evaluate`) and the class probabilities (N, 10)."""
        total, probabilities = 0.0, []
        for start in range(0, len(x), batch_size):
            outputs = np.asarray(self.model.forward(x[start:start + batch_size]), dtype=np.float64)
            total += self.output_loss(outputs, y[start:start + batch_size]) * len(outputs)
            probabilities.append(self.probabilities(outputs))
        return total / len(x), np.concatenate(probabilities)

    def weights(self) -> dict[str, np.ndarray]:
        """Their current parameters in the twin's names and layouts (copies)."""
        return self.to_twin(self.model.parameters())

    def masks(self) -> dict[str, np.ndarray]:
        return {}  # no dropout the run could hand to the twin

    def lr(self) -> float:
        return self.learning_rate

    def end_epoch(self) -> None:
        pass  # no schedule: their step, or SGD, at one lr
