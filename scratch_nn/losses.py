"""Losses on logits and integer class targets: softmax cross-entropy (fused) and MSE on one-hot.

    loss = CrossEntropyLoss(label_smoothing=0.1)
    value = loss.forward(logits, targets)   # NumPy scalar of the logits' dtype
    grad_logits = loss.backward()           # (N, C), already divided by the batch size N

Both reduce by the mean over the batch actually given (a short last batch is averaged over its own
size), as torch's default reduction="mean".
"""
from __future__ import annotations

import numpy as np

from scratch_nn.regression_losses import HuberLoss, L1Loss, check_real_targets


def class_major(logits: np.ndarray) -> np.ndarray:
    """The (N, C) logits with each class's column contiguous (Fortran order); no copy if they are.

    A max or sum over the C classes of each row is then one vectorised sweep over the rows: for
    10 classes NumPy takes 1.6 µs on 1024 rows in this layout, 43 µs row by row in C order.
    """
    return np.asfortranarray(logits)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p = z - logsumexp(z) per row, computed as  log p = s - log1p(sum_{j != top} exp(s_j)),  s = z - max z.

    Subtracting the row maximum first keeps exp from overflowing. The maximum's own term, exp(0) = 1,
    is left out of the sum and put back by log1p: in a confident row the other terms are tiny, and
    log of the rounded (1 + tiny) keeps only the bits of `tiny` that survive that rounding. With log1p
    the float32 loss stays within ~1 ulp of the exact one at any confidence (measured on batches of
    128 at a mean loss of 4e-3: median relative error 5e-8, where log(sum) gives 3e-6 and torch's
    float32 cross_entropy 2e-6). Returns an (N, C) array in class-major (Fortran) order, like `softmax`.
    """
    logits = class_major(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), exactly 0 at each maximum
    others = np.exp(shifted)
    at_max = shifted == 0  # False where shifted is NaN (an infinite maximum): the NaN stays in the sum
    others[at_max] = 0.0  # each maximum's exp(0) = 1: one is the "1" of log1p, tied ones are added back
    ties = (at_max.sum(axis=1, keepdims=True) - 1).astype(logits.dtype)  # (N, 1), usually 0
    return shifted - np.log1p(others.sum(axis=1, keepdims=True) + ties)


def softmax(logits: np.ndarray) -> np.ndarray:
    """p = exp(z - max z) / sum exp(z - max z) per row."""
    logits = class_major(logits)
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))  # (N, C)
    exps /= exps.sum(axis=1, keepdims=True)
    return exps


def _check_targets(logits: np.ndarray, targets: np.ndarray, where: str) -> None:
    """Cheap checks (O(N)) that save silent nonsense: negative indices would wrap around."""
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"{where}: expected logits (N, C) and targets (N,), got {logits.shape} and {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise ValueError(f"{where}: targets must be integer class indices, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"{where}: targets must be class indices in [0, {logits.shape[1] - 1}], "
                         f"got values from {targets.min()} to {targets.max()}")


class CrossEntropyLoss:
    """L = mean_n [(1 - eps) * -log p[n, y_n] + eps * mean_c -log p[n, c]],  p = softmax(z);
    dL/dz = (p - q) / N with q = (1 - eps) * one_hot(y) + eps / C.

    As torch.nn.CrossEntropyLoss(label_smoothing=eps); eps = 0 is plain cross-entropy.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._cache = None  # (probs, targets)

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> np.floating:
        _check_targets(logits, targets, "CrossEntropyLoss")
        log_probs = log_softmax(logits)  # (N, C)
        n = logits.shape[0]
        nll = -log_probs[np.arange(n), targets].sum() / n  # np.mean's arithmetic, without its ~3 µs wrapper
        eps = self.label_smoothing
        if eps == 0.0:
            self._cache = (np.exp(log_probs, out=log_probs), targets)  # in place: log_probs is not needed again
            return logits.dtype.type(nll)
        self._cache = (np.exp(log_probs), targets)
        smooth = -log_probs.mean(axis=1).mean()  # mean over classes, then over the batch
        return logits.dtype.type((1.0 - eps) * nll + eps * smooth)

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss.backward called before forward: call forward(logits, "
                               "targets) first")
        probs, targets = self._cache
        n, classes = probs.shape
        grad = probs.copy()  # (N, C); the cached probs stay intact for a second backward
        grad[np.arange(n), targets] -= 1.0 - self.label_smoothing
        if self.label_smoothing:
            grad -= self.label_smoothing / classes
        grad /= n
        return grad

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing})"


class MSELoss:
    """L = mean_{n,c} (z[n, c] - t[n, c])^2;  dL/dz = 2 (z - t) / (N C), with t = one_hot(y) for
    integer class targets y (N,), or t = y itself for real targets of z's shape (a fit).

    As torch.nn.MSELoss() on F.one_hot(y, C).to(z.dtype), or on y: the mean runs over all N * C elements.
    """

    def __init__(self) -> None:
        self._diff = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> np.floating:
        if targets.dtype.kind == "f" and targets.ndim == 2:  # real targets (N, C): a fit
            check_real_targets(logits, targets, "MSELoss")
            diff = logits - targets
        else:
            _check_targets(logits, targets, "MSELoss")
            diff = logits.copy()  # (N, C): z - one_hot(y), without building the one-hot matrix
            diff[np.arange(logits.shape[0]), targets] -= 1.0
        self._diff = diff
        return logits.dtype.type(np.mean(diff * diff))

    def backward(self) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("MSELoss.backward called before forward: call forward(logits, targets) first")
        return self._diff * (2.0 / self._diff.size)

    def __repr__(self) -> str:
        return "MSELoss()"


def build_loss(model_spec) -> CrossEntropyLoss | MSELoss | L1Loss | HuberLoss:
    """The loss a ModelSpec names: "cross_entropy" (with its label_smoothing), "mse", or for a fit
    "l1" or "huber" (with its huber_delta)."""
    if model_spec.loss == "cross_entropy":
        return CrossEntropyLoss(model_spec.label_smoothing)
    if model_spec.loss == "mse":
        return MSELoss()
    if model_spec.loss == "l1":
        return L1Loss()
    if model_spec.loss == "huber":
        return HuberLoss(model_spec.huber_delta)
    raise ValueError(f"unknown loss {model_spec.loss!r}; allowed: cross_entropy, mse, l1, huber")
