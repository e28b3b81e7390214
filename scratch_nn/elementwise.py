"""The three in-place tensor operations SGD's update is written in, done by NumPy or by NumPy's OpenBLAS.

    ops.mul_(x, alpha)              x <- alpha * x               (torch: x.mul_(alpha))
    ops.add_(y, x, alpha, work)     y <- y + alpha * x           (torch: y.add_(x, alpha=alpha))
    ops.add(x, y, alpha, out)       out <- x + alpha * y, returns out  (torch: x.add(y, alpha=alpha))

`NumpyOps` are ufunc calls (`work` holds alpha * x; an alpha of 1 needs none). `OpenBlasOps` are
OpenBLAS's scal and axpy in the library NumPy loaded (scratch_nn.blas), threaded across
OpenBLAS's pool, with one rounding per multiply-add as torch's vectorised kernels have
(`add` copies x into out first, a pass NumPy's version does not need). `choose_ops(dtype, size)`
picks the faster for an update of `size` elements (the figures at `BLAS_MIN_ELEMENTS`).
"""
from __future__ import annotations

import numpy as np

from scratch_nn.blas import Level1, level1

# From this many elements on, a whole-array update runs in OpenBLAS. Measured on this project's
# 2-core machine, an SGD-momentum update right after a product, OpenBLAS / NumPy time: on a quiet
# machine 0.38 (float32) and 0.51 (float64) at 1.9 M elements (the wide net), on one busy with
# other work (load average 4-5) one OpenBLAS thread 1.9 at 10k elements, 0.95 at 100k, 0.88 at
# 235k and 0.66 at 1.9 M, but two threads 1.2-11 at every size (the other thread waits for a
# core). So the threads are used only where they pay most: the default net (235k) stays on NumPy,
# whose one-core update already takes half of torch's two-thread one there.
BLAS_MIN_ELEMENTS = 1_000_000


class NumpyOps:
    """The operations as NumPy ufuncs on one core: two roundings where torch fuses a multiply-add."""

    name = "numpy"

    @staticmethod
    def mul_(x: np.ndarray, alpha: float) -> None:
        x *= alpha

    @staticmethod
    def add_(y: np.ndarray, x: np.ndarray, alpha: float, work: np.ndarray) -> None:
        if alpha == 1:
            y += x
            return
        np.multiply(x, alpha, out=work)  # x may be `work` itself: fine, elementwise in place
        y += work

    @staticmethod
    def add(x: np.ndarray, y: np.ndarray, alpha: float, out: np.ndarray) -> np.ndarray:
        np.multiply(y, alpha, out=out)
        out += x
        return out


class OpenBlasOps:
    """The operations as OpenBLAS's scal and axpy on contiguous 1-D arrays, on OpenBLAS's threads."""

    name = "openblas"

    def __init__(self, blas: Level1) -> None:
        self.blas = blas

    def mul_(self, x: np.ndarray, alpha: float) -> None:
        self.blas.scal(alpha, x)

    def add_(self, y: np.ndarray, x: np.ndarray, alpha: float, work: np.ndarray) -> None:
        self.blas.axpy(alpha, x, y)  # needs no work array

    def add(self, x: np.ndarray, y: np.ndarray, alpha: float, out: np.ndarray) -> np.ndarray:
        np.copyto(out, x)
        self.blas.axpy(alpha, y, out)
        return out


def choose_ops(dtype, size: int) -> NumpyOps | OpenBlasOps:
    """OpenBLAS's operations for a whole-array update of at least BLAS_MIN_ELEMENTS elements when
    NumPy's OpenBLAS can be called (scratch_nn.blas), else NumPy's."""
    blas = level1(dtype) if size >= BLAS_MIN_ELEMENTS else None
    return OpenBlasOps(blas) if blas is not None else NumpyOps()
