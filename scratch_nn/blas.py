"""NumPy's own OpenBLAS, for two level-1 routines: y <- alpha * x + y (axpy) and x <- alpha * x (scal).

Why: NumPy's elementwise operations run on one core. OpenBLAS's axpy (above 10,000 elements)
and scal (above 1,048,576) split the array across OpenBLAS's threads, the pool that NumPy's
matrix products already use, so they take the threads that are spinning idle right after the
backward pass's last product instead of competing with them (OpenBLAS's idle workers spin, not
yield, for about 0.1 s: a Python thread or a second library's pool on the other core gets half
of it). Measured on the wide net (1.9 M parameters, 2 cores shared with other work at a load
average of 1.3-2.4, SGD momentum, each update right after a product; medians), float32 / float64:

    NumPy ufuncs (4 passes, one core)                     2.4 ms / 4.7 ms
    NumPy's OpenBLAS: scal + 2 axpy (3 passes, 2 threads)  0.9 ms / 2.4 ms    torch 1.5 / 2.7 ms
    SciPy's BLAS (its own OpenBLAS, a second pool)         the whole step 3-4x slower: the pools fight
    numexpr (its own threads)                              the whole step 1.8x slower than NumPy's
    NumPy ufuncs on two halves, one Python worker thread   no faster than one core

So the routines are called in the library NumPy itself loaded (found among the process's mapped
libraries, ctypes from the standard library; no new dependency). `level1(dtype)` is None when
NumPy uses another BLAS, the platform has no /proc/self/maps, or the dtype is not float32/float64:
the optimiser then keeps its NumPy path. axpy's kernels for CPUs with FMA (Haswell and later) fuse
the multiply-add (one rounding), as torch's `add(other, alpha=)` does (aten/src/ATen/native/ufunc/
add.h: `vec::fmadd(other, alpha, self)`); kernels without FMA (OPENBLAS_CORETYPE=Sandybridge) round
twice, as NumPy does, and then differ from torch's in the last bit of about a third of the elements.
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

SYMBOL_FORMATS = ("scipy_{}64_", "{}64_", "scipy_{}", "{}")  # NumPy wheels: scipy_cblas_saxpy64_


def loaded_openblas_paths() -> list[str]:
    """The OpenBLAS shared libraries mapped into this process (Linux), NumPy's own first."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return []
    numpy_root = Path(np.__file__).resolve().parent
    own = (str(numpy_root), str(numpy_root.parent / "numpy.libs"))  # where NumPy's wheels vendor it

    def numpy_first(path: str) -> tuple[bool, str]:
        return not path.startswith(own), path

    return sorted(paths, key=numpy_first)


def numpy_blas_version() -> str | None:
    """The OpenBLAS version NumPy was built against, as NumPy records it ("0.3.31.188.0"), or None."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return blas.get("version") if "openblas" in blas.get("name", "") else None


@functools.cache
def numpy_openblas() -> tuple[ctypes.CDLL, str] | None:
    """NumPy's OpenBLAS and its symbol format: the loaded OpenBLAS of NumPy's version, NumPy's own first.

    Another OpenBLAS may be loaded too (SciPy's wheels bring one, with its own threads); its
    version, or its place outside NumPy's folders, tells them apart.
    """
    version = numpy_blas_version()
    for path in loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)  # the already-loaded library: the same instance NumPy calls
        except OSError:  # e.g. a mapping of a file deleted since it was loaded
            continue
        for symbol_format in SYMBOL_FORMATS:
            get_config = getattr(library, symbol_format.format("openblas_get_config"), None)
            if get_config is None:
                continue
            get_config.restype = ctypes.c_char_p
            config = get_config().decode("ascii", "replace").split()
            if version is not None and config[1:2] == [version]:
                return library, symbol_format
    return None


def openblas_function(name: str, restype=ctypes.c_int):
    """A function of NumPy's OpenBLAS by its plain name (`openblas_get_num_threads`), or None."""
    found = numpy_openblas()
    if found is None:
        return None
    library, symbol_format = found
    function = getattr(library, symbol_format.format(name), None)
    if function is not None:
        function.restype = restype
    return function


class Level1:
    """axpy and scal of one dtype on contiguous 1-D arrays, in NumPy's OpenBLAS (the module docstring)."""

    def __init__(self, dtype: np.dtype, integer, axpy, scal) -> None:
        self.dtype = dtype
        scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        pointer = ctypes.c_void_p
        axpy.argtypes = [integer, scalar, pointer, integer, pointer, integer]  # n, alpha, x, incx, y, incy
        scal.argtypes = [integer, scalar, pointer, integer]  # n, alpha, x, incx
        axpy.restype = scal.restype = None
        self._axpy, self._scal = axpy, scal

    def _check(self, *arrays: np.ndarray) -> None:
        """The C routines trust their pointers and sizes: refuse what would make them read astray."""
        for array in arrays:
            if array.dtype != self.dtype or array.size != arrays[0].size or not array.flags.c_contiguous:
                raise ValueError(f"Level1 needs contiguous {self.dtype} arrays of one size, got "
                                 f"{array.dtype} {array.shape} (contiguous: {array.flags.c_contiguous})")

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> None:
        """y <- alpha * x + y, in place, with alpha rounded to the arrays' dtype first."""
        self._check(x, y)
        if alpha == 0:  # OpenBLAS returns at once; torch still adds 0 * x (NaN where x is inf or NaN)
            y += x * 0.0
            return
        self._axpy(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)

    def scal(self, alpha: float, x: np.ndarray) -> None:
        """x <- alpha * x, in place, with alpha rounded to the array's dtype first."""
        self._check(x)
        if alpha == 0:  # OpenBLAS may write zeros where torch's 0 * x gives NaN (x inf or NaN)
            x *= 0.0
            return
        self._scal(x.size, alpha, x.ctypes.data, 1)


def cblas_functions(dtype: np.dtype, names: tuple[str, ...]):
    """(blasint, cblas_<s|d><name>...) of NumPy's OpenBLAS for float32/float64, a missing one as None;
    None when there is no such OpenBLAS or dtype."""
    prefix = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(np.dtype(dtype))
    get_config = openblas_function("openblas_get_config", ctypes.c_char_p)
    if prefix is None or get_config is None:
        return None
    integer = ctypes.c_int64 if b"USE64BITINT" in get_config() else ctypes.c_int32  # blasint
    return integer, *(openblas_function(f"cblas_{prefix}{name}", None) for name in names)


@functools.cache
def level1(dtype) -> Level1 | None:
    """axpy and scal for `dtype` in NumPy's OpenBLAS; None where there are none (see the module docstring)."""
    found = cblas_functions(dtype, ("axpy", "scal"))
    if found is None or None in found:
        return None
    integer, axpy, scal = found
    return Level1(np.dtype(dtype), integer, axpy, scal)


# ---------------------------------------------------------------------------------------------
# The outer product of a batch of one: dL/dW = g^T x for one example.

# From this many elements of W the BLAS outer product beats np.dot's (k = 1) matrix product. Measured
# here (2 threads, interleaved, medians of 40 blocks of 20 calls, µs, at a load average of 2.5 from other
# work; zeroing + ger against np.dot, torch's mm beside):
#     float64  1024x1024  3029 vs 7791 (torch 754);   1024x784  667 vs 1070 (torch 276)
#     float32  1024x1024   457 vs 1918 (torch 209);   1024x784  345 vs  511 (torch 166)
#     256x784 (200,704): float64 173 vs 136, float32 111 vs 70: np.dot;  128x256: np.dot 12-23 vs 39-56
# Nothing was measured between 200,704 and 802,816 elements: 500,000 is a judgement between the two.
OUTER_MIN_ELEMENTS = 500_000
ROW_MAJOR = 101  # CBLAS_ORDER


class Outer:
    """out <- column row^T for 1-D `column` (m,) and `row` (n,) into a C-contiguous (m, n) `out`.

    OpenBLAS's gemm with an inner dimension of 1 (what np.dot does for one example) is several times
    slower than its rank-1 update ger, threaded over OpenBLAS's pool: so `out` is zeroed and ger adds
    column row^T to it. Each entry is one rounded product, c_i * r_j, exactly as np.dot and torch's
    mm give it. Zeroing: axpby(0, 0, 0, out) (out <- 0 * 0 + 0 * out) where the library writes plain
    zeros for a beta of 0 even over NaN (checked once, on a NaN probe long enough for its vector
    kernel: a diverged step leaves NaN in the gradient), else NumPy's fill. The vectors are handed to
    BLAS contiguous (a copy of m + n elements at most): a NumPy view may have a negative or zero stride,
    which BLAS reads differently (from the lowest address) or refuses.
    """

    def __init__(self, dtype: np.dtype, integer, ger, axpby) -> None:
        scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        pointer = ctypes.c_void_p
        # order, m, n, alpha, x, incx, y, incy, a, lda
        ger.argtypes = [ctypes.c_int, integer, integer, scalar, pointer, integer, pointer, integer, pointer, integer]
        if axpby is not None:
            # n, alpha, x, incx, beta, y, incy
            axpby.argtypes = [integer, scalar, pointer, integer, scalar, pointer, integer]
            axpby.restype = None
        ger.restype = None
        self.dtype, self._ger, self._axpby = dtype, ger, axpby
        self._zero = np.zeros(1, dtype=dtype)  # x of axpby, read with a stride of 0
        if axpby is not None:
            probe = np.full(4099, np.nan, dtype=dtype)  # the vector kernel and its scalar tail
            self._fill_zeros(probe)
            if not np.all(probe == 0):
                self._axpby = None

    def _fill_zeros(self, out: np.ndarray) -> None:
        if self._axpby is None:
            out.fill(0)
        else:
            self._axpby(out.size, 0.0, self._zero.ctypes.data, 0, 0.0, out.ctypes.data, 1)

    def __call__(self, column: np.ndarray, row: np.ndarray, out: np.ndarray) -> None:
        m, n = out.shape
        if (column.shape != (m,) or row.shape != (n,) or not out.flags.c_contiguous
                or any(array.dtype != self.dtype for array in (column, row, out))):
            raise ValueError(f"Outer needs {self.dtype} column ({m},), row ({n},) and a contiguous out, got "
                             f"{column.dtype} {column.shape}, {row.dtype} {row.shape}, {out.dtype} {out.shape}")
        column, row = np.ascontiguousarray(column), np.ascontiguousarray(row)  # no copy when they are
        self._fill_zeros(out)
        self._ger(ROW_MAJOR, m, n, 1.0, column.ctypes.data, 1, row.ctypes.data, 1, out.ctypes.data, n)


@functools.cache
def outer_product(dtype) -> Outer | None:
    """The BLAS outer product for `dtype` in NumPy's OpenBLAS, or None (then np.dot does it)."""
    found = cblas_functions(dtype, ("ger", "axpby"))
    if found is None or found[1] is None:
        return None
    integer, ger, axpby = found
    return Outer(np.dtype(dtype), integer, ger, axpby)
