"""What the run looks at inside the two sides, in NumPy, the same for both: unit statistics of an
activation layer's output, per-parameter gradient and weight norms and update/weight ratios, and
the drift between the two sides' weights.

    unit_stats("relu", output)                  # {"activation", "dead_fraction", "saturated_fraction"}
    parameter_rows(before, after, grads)        # per parameter: grad_norm, weight_norm, update_ratio
    drift_rows(scratch_weights, torch_weights)  # per parameter and "all": ||w_s - w_t|| / ||w_t||
"""
from __future__ import annotations

import numpy as np

SIGMOID_TAIL = 0.01  # a sigmoid output below 0.01 or above 0.99 is saturated (slope < 0.01)
TANH_TAIL = 0.99     # a tanh output beyond +-0.99 is saturated (slope < 0.02)


def unit_stats(kind: str, output: np.ndarray) -> dict:
    """Dead fraction (relu: units never positive over the batch) and saturated fraction (sigmoid,
    tanh: outputs in the flat tails) of one activation layer's (N, units) output, `kind` being the
    layer's type in the spec's list; NaN where the statistic does not apply to that layer. In an
    image layer's (N, C, H, W) output a unit is a channel: dead when never positive at any position
    of any image (a conv filter shares its weights over the positions, so it lives or dies whole)."""
    over = (0, 2, 3) if output.ndim == 4 else 0
    dead = float(np.mean(np.all(output <= 0, axis=over))) if kind == "relu" else np.nan
    if kind == "sigmoid":
        saturated = float(np.mean((output < SIGMOID_TAIL) | (output > 1 - SIGMOID_TAIL)))
    elif kind == "tanh":
        saturated = float(np.mean(np.abs(output) > TANH_TAIL))
    else:
        saturated = np.nan
    return {"activation": kind, "dead_fraction": dead, "saturated_fraction": saturated}


def norm(array: np.ndarray) -> float:
    """||array|| in float64, by NumPy's own (single-threaded) sum: `np.linalg.norm` calls BLAS,
    whose OpenBLAS threads then spin for 0.1 s and slowed the torch steps after it (benchmark.core.clocks)."""
    return float(np.sqrt(np.sum(np.square(array, dtype=np.float64))))


def parameter_rows(before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                   grads: dict[str, np.ndarray]) -> list[dict]:
    """Per parameter: ||grad||, ||w|| and ||w_after - w_before|| / ||w_before|| (in float64)."""
    rows = []
    for name, weight in before.items():
        weight_norm = norm(weight)
        update = norm(after[name].astype(np.float64) - weight)
        rows.append({"parameter": name, "grad_norm": norm(grads[name]),
                     "weight_norm": weight_norm, "update_ratio": update / weight_norm if weight_norm else np.nan})
    return rows


def drift_rows(scratch: dict[str, np.ndarray], torch: dict[str, np.ndarray]) -> list[dict]:
    """||w_scratch - w_torch|| / ||w_torch|| per parameter, and over all of them ("all")."""
    rows, squared_diff, squared_norm = [], 0.0, 0.0
    for name, reference in torch.items():
        diff = float(np.sum((scratch[name].astype(np.float64) - reference) ** 2))
        norm = float(np.sum(reference.astype(np.float64) ** 2))
        squared_diff, squared_norm = squared_diff + diff, squared_norm + norm
        rows.append({"parameter": name, "drift": np.sqrt(diff / norm) if norm else np.sqrt(diff)})
    rows.append({"parameter": "all", "drift": np.sqrt(squared_diff / squared_norm) if squared_norm else 0.0})
    return rows
