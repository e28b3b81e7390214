"""Memory per side, inside one process where both sides run in turn.

Both NumPy and torch (on the CPU) allocate their arrays with the C library's malloc, and glibc's
`mallinfo2()` says how many bytes are in use right now (it walks the heap's free lists: 1-15 µs
per call measured in a run's process, more on a fragmented heap). So each side measures the heap
around its own code only:

    held       bytes the side keeps between steps: its model and optimiser state (growth while
               it is built) plus what its first step leaves behind (cached activations, gradient
               arrays, momentum buffers)
    transient  the largest growth within one later step (activations and temporaries alive between
               the forward and the backward), sampled after the forward and after the backward

and its peak is held + transient. `svt run` accounts the first step (held), the second and those where
it looks inside (transient: the growth is the same at every step of a batch size). Where
mallinfo2 is not available (not glibc) the figures are NaN. Process-wide peak resident memory
comes from `peak_rss_mb()`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import resource
import sys

from benchmark.core.clocks import Stopwatch


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _load_mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc older than 2.33
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _load_mallinfo2()


def heap_in_use() -> float:
    """Bytes allocated through malloc and not yet freed (small blocks plus mmapped ones); NaN if unknown."""
    if _MALLINFO2 is None:
        return math.nan
    info = _MALLINFO2()
    return float(info.uordblks + info.hblkhd)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


class SideMemory:
    """Wrap a side's code in `with memory:`; call `memory.sample()` inside at its high points.

    Outside a `with memory:` block `sample()` does nothing, so a run can account memory on some
    steps only. Its own calls run inside `stopwatch`, which the run keeps out of the side's training
    time.
    """

    def __init__(self, stopwatch: Stopwatch | None = None) -> None:
        self.held = 0.0
        self.transient = 0.0
        self.settled = False  # after the first step, growth within a step is transient, not held
        self.stopwatch = stopwatch or Stopwatch()
        self._start = math.nan
        self._inside = False

    def __enter__(self) -> SideMemory:
        with self.stopwatch:
            self._start = heap_in_use()
        self._inside = True
        return self

    def sample(self) -> None:
        if self._inside and self.settled:
            with self.stopwatch:
                self.transient = max(self.transient, heap_in_use() - self._start)

    def __exit__(self, *exc_info) -> None:
        if self.settled:
            self.sample()
        else:
            with self.stopwatch:
                self.held += max(0.0, heap_in_use() - self._start)
        self._inside = False

    def settle(self) -> None:
        self.settled = True

    @property
    def peak_mb(self) -> float:
        return (self.held + self.transient) / 1e6
