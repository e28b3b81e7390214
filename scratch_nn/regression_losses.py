"""Losses on real-valued targets, for fitting a function: L1 and Huber (MSE is `losses.MSELoss`,
which takes real targets as well as class indices).

    loss = HuberLoss(delta=1.0)
    value = loss.forward(outputs, targets)   # outputs and targets (N, 1), or any equal shapes
    grad_outputs = loss.backward()           # same shape, already divided by the element count

Both reduce by the mean over every element, as torch's default reduction="mean"
(torch/nn/modules/loss.py: L1Loss, HuberLoss; the kernels in aten/src/ATen/native/Loss.cpp and
PointwiseOps: huber_loss_backward).
"""
from __future__ import annotations

import numpy as np


def check_real_targets(outputs: np.ndarray, targets: np.ndarray, where: str) -> None:
    """Real-valued targets of the outputs' own shape (torch would broadcast a mismatch, with a warning)."""
    if targets.dtype.kind != "f":
        raise ValueError(f"{where}: targets must be real numbers (a float array), got dtype {targets.dtype}")
    if targets.shape != outputs.shape:
        raise ValueError(f"{where}: targets must have the outputs' shape {outputs.shape}, got {targets.shape}")


class L1Loss:
    """L = mean |z - t|;  dL/dz = sign(z - t) / size, with sign(0) = 0 as torch's (torch.sgn).

    As torch.nn.L1Loss().
    """

    def __init__(self) -> None:
        self._diff = None

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> np.floating:
        check_real_targets(outputs, targets, "L1Loss")
        self._diff = outputs - targets  # (N, 1)
        return outputs.dtype.type(np.mean(np.abs(self._diff)))

    def backward(self) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("L1Loss.backward called before forward: call forward(outputs, targets) first")
        return np.sign(self._diff) * self._diff.dtype.type(1.0 / self._diff.size)

    def __repr__(self) -> str:
        return "L1Loss()"


class HuberLoss:
    """L = mean h(z - t) with h(d) = d^2 / 2 where |d| < delta, else delta (|d| - delta / 2);
    dL/dz = clip(z - t, -delta, delta) / size.

    As torch.nn.HuberLoss(delta=delta): quadratic near the target, linear (robust to outliers) far
    from it; at |d| = delta both branches give the same value and slope, so the choice there does
    not matter (torch takes the linear one in the forward, the clip in the backward).
    """

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta}")
        self.delta = delta
        self._diff = None

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> np.floating:
        check_real_targets(outputs, targets, "HuberLoss")
        diff = self._diff = outputs - targets  # (N, 1)
        size = np.abs(diff)
        delta = diff.dtype.type(self.delta)
        pointwise = np.where(size < delta, 0.5 * diff * diff, delta * (size - 0.5 * delta))
        return outputs.dtype.type(np.mean(pointwise))

    def backward(self) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("HuberLoss.backward called before forward: call forward(outputs, targets) first")
        delta = self._diff.dtype.type(self.delta)
        return np.clip(self._diff, -delta, delta) * self._diff.dtype.type(1.0 / self._diff.size)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta})"
