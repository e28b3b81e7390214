"""What `svt run --model FILE.py` needs of the check engine: the learner's side, its twin, the parity checks.

    sides, parity = learner_sides(model, declaration, rows, spec, name="my_net.py")
    record = train_side_by_side(spec, train, test, sides=sides, parity=parity)   # benchmark.run

`model` is their file in its own process (`benchmark.check.learner.LearnerProcess`), `declaration`
what the file declares (`benchmark.check.twin.Declaration`: the twin's ModelSpec in their dtype,
LOSS, REDUCTION, SCALE) and `rows` the mapping of their parameters to the twin's
(`benchmark.check.mapping`, square layers decided). The twin (`TorchSide`) starts from *their*
initial weights, copied in their dtype into torch's layouts, and takes the declared loss; the
learner's side (`benchmark.sides.learner.LearnerSide`) steps with their `step` (or p -= lr * g), the
twin with `torch.optim.SGD` at the same lr (`spec.train` is plain SGD, see `model_run_spec`).

Every `check_every` steps the run looks inside as `svt run` does: `learner_parity` compares their
loss and gradients on that batch with the twin's from the same weights, named by their names, with
the engine's rules (`benchmark.check.engine.judge`: float64 relative error <= 1e-10; float32 each
side against a float64 twin from the same float32 weights).

The test loss and the probabilities the report shows are computed alike on both sides from each
side's outputs (`output_loss`, `probabilities`): a forward that returns probabilities (rows >= 0
summing to 1) is read as such, scores go through a softmax; outputs of a sigmoid (squared error,
binary cross-entropy) are normalised to sum to 1 over the classes for the report's confidences.
"""
from __future__ import annotations

import numpy as np

from benchmark.check.engine import call_pairs, judge, twin_passes
from benchmark.check.mapping import to_twin
from benchmark.check.twin import twin_loss
from benchmark.parity.report import ParityReport
from benchmark.sides.learner import LearnerSide
from benchmark.sides.torch import TorchSide
from scratch_nn.losses import log_softmax, softmax
from scratch_nn.spec import Spec, TrainSpec, validate

DEFAULTS = {"lr": 0.1, "batch_size": 64, "epochs": 5, "seed": 0}  # `svt run --model`'s training, plain SGD
LOG_FLOOR = -100.0  # torch's binary_cross_entropy clamps each log at -100 (aten/src/ATen/native/Loss.cpp)


def model_run_spec(declaration, name: str, **train) -> Spec:
    """The run's Spec: the twin's model (their dtype) and plain SGD (`train`'s values, else DEFAULTS)."""
    chosen = {key: default if train.get(key) is None else train[key] for key, default in DEFAULTS.items()}
    return validate(Spec(name=name, model=declaration.model, train=TrainSpec(optimizer="sgd", **chosen),
                         description=f"{name}: the learner's model (its own initial weights) against its "
                                     f"{declaration.describe()}"),
                    "command line")


def learner_sides(model, declaration, rows, spec: Spec, name: str) -> tuple[tuple, object]:
    """(their side, the twin's side) from their current weights, and the parity function of the run."""
    import torch

    names = {row.theirs: row.twin for row in rows}
    learner = LearnerSide(name, model, lambda arrays: to_twin(rows, arrays), names,
                          lambda outputs, y: output_loss(declaration, outputs, y),
                          lambda outputs: probabilities(declaration, outputs), spec.train.lr)
    twin = TorchSide(spec, learner.weights(), loss_fn=twin_loss(declaration),
                     probabilities=lambda outputs: torch.from_numpy(probabilities(declaration, outputs.numpy())))
    return (learner, twin), lambda side, x, y: learner_parity(declaration, rows, side, x, y)


def learner_parity(declaration, rows, side: LearnerSide, x: np.ndarray, y: np.ndarray) -> ParityReport:
    """Their loss and gradients on (x, y) against the twin's from the same weights (the engine's pairs and rules)."""
    seen = side.model.loss_and_grads(x.copy(), y)
    dtype = declaration.model.dtype
    passes = twin_passes(declaration, side.weights(), x, y, dtype)
    return ParityReport(judge(call_pairs(rows, seen, passes, x, None, declaration, ""), dtype), dtype)


def is_probabilities(outputs: np.ndarray) -> bool:
    """Rows of non-negative numbers summing to 1 (a softmax's output), within float32 rounding."""
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, rtol=0, atol=1e-5))


def output_loss(declaration, outputs: np.ndarray, y: np.ndarray) -> float:
    """The declared loss (LOSS, REDUCTION, SCALE: `benchmark.check.twin`) of a side's outputs (N, 10), float64."""
    outputs = np.asarray(outputs, dtype=np.float64)
    rows = np.arange(len(y))
    if declaration.loss == "cross_entropy":
        if is_probabilities(outputs):
            per_example = -np.log(np.maximum(outputs[rows, y], np.finfo(np.float64).tiny))
        else:
            per_example = -log_softmax(outputs)[rows, y]  # the stable log-sum-exp of scratch_nn
    else:
        one_hot = np.eye(outputs.shape[1])[y]
        if declaration.loss == "squared_error":
            per_unit = (outputs - one_hot) ** 2
        else:
            per_unit = -(one_hot * np.maximum(np.log(outputs), LOG_FLOOR)
                         + (1 - one_hot) * np.maximum(np.log1p(-outputs), LOG_FLOOR))
        per_example = per_unit.sum(axis=1)
    total = per_example.mean() if declaration.reduction == "mean" else per_example.sum()
    return float(declaration.scale * total)


def probabilities(declaration, outputs: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 10) for the report from a side's outputs (module docstring)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if is_probabilities(outputs):
        return outputs
    if declaration.loss != "cross_entropy" and np.all(outputs >= 0):
        totals = outputs.sum(axis=1, keepdims=True)
        return np.divide(outputs, totals, out=np.full_like(outputs, 0.1), where=totals > 0)
    return softmax(outputs)
