"""What a comparison run records: the one object `svt run` fills and `benchmark.report.writer` writes out.

Tables are lists of flat dicts (one row per observation, "tidy"), so each becomes a CSV readable
with `pandas.read_csv` with no reshaping. `side` is one of `record.sides`: "scratch" and "torch",
or in `svt run --model` the learner's file name and "torch".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scratch_nn.spec import Spec

SIDES = ("scratch", "torch")

# The columns of each table, in order; the report writes exactly these (documented in the README).
COLUMNS = {
    "steps": ["step", "epoch", "side", "loss", "lr"],
    "epochs": ["epoch", "side", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
               "seconds", "peak_memory_mb"],
    "layers": ["step", "side", "parameter", "grad_norm", "weight_norm", "update_ratio"],
    "units": ["step", "side", "layer", "activation", "dead_fraction", "saturated_fraction"],
    "parity": ["step", "tensor", "shape", "max_abs_diff", "rel_error", "scratch_vs_f64", "torch_vs_f64",
               "tolerance", "cosine", "ok", "explained"],
    "drift": ["step", "parameter", "drift"],
}


@dataclass
class RunRecord:
    """Everything `svt run` measured; filled as training goes, complete or not (divergence, Ctrl-C).

    steps      loss of every training step, both sides
    epochs     per-epoch train/test loss and accuracy, wall time and peak memory, both sides
    layers     every `check_every` steps: per-parameter gradient norm, weight norm, update/weight ratio
    units      every `check_every` steps: per activation layer, fraction of dead ReLU units (never
               positive on the batch) and of saturated sigmoid/tanh units
    parity     every `check_every` steps: the gradient-parity engine's rows on that batch (in float32
               with each side's distance from the float64 reference, which is what is judged)
    drift      every `check_every` steps: ||w_scratch - w_torch|| / ||w_torch|| per parameter
    """

    spec: Spec
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    units: list[dict] = field(default_factory=list)
    parity: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    # Final evaluation on the test set, per side (absent when training stopped before it).
    test_labels: np.ndarray | None = None          # (10000,) int64
    test_images: np.ndarray | None = None          # (10000, 28, 28) uint8, for the gallery
    predictions: dict[str, np.ndarray] = field(default_factory=dict)    # side -> (10000,) int64
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (10000, 10)
    first_layer_weights: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (units, 784) or conv's
    feature_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # side -> conv layer -> (C, H, W)
    timing: dict[str, dict] = field(default_factory=dict)  # side -> train_seconds, eval_seconds, peak_memory_mb, ...
    environment: dict = field(default_factory=dict)        # python/numpy/torch versions, BLAS, threads
    parity_verdict: str = ""        # one line, e.g. "gradients agree at every check (94 checks): ..."
    stopped: str | None = None      # why training stopped early (divergence), or None
    targets: list[dict] = field(default_factory=list)  # {"target", "measured", "holds"}: the run's own checks
    seconds_total: float = 0.0
    sides: tuple[str, str] = SIDES  # the two sides' names, the one compared first ("scratch", "my_net.py")
