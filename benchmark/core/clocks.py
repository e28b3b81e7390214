"""Clocks shared by the run and the bench: training time kept apart from the time spent watching it.

    instrumentation = Stopwatch()
    with instrumentation:          # memory accounting, gradient norms, unit statistics ...
        ...
    instrumentation.seconds        # summed over every block: subtracted from the step's time

    settle()                       # before timing one library right after the other

`svt run` looks inside its training (memory accounting around a step, the diagnostics of the steps
where it observes, the parity checks); each side runs that work inside its own Stopwatch, and the
run subtracts it from the step's wall time, so that the report's training seconds measure training
alone and the instrumentation gets a row of its own.
"""
from __future__ import annotations

import time

SETTLE_SECONDS = 0.15  # > OpenBLAS's 0.1 s of spinning after a call (see settle())


class Stopwatch:
    """The seconds spent inside `with stopwatch:` blocks, summed (blocks must not nest)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds += time.perf_counter() - self._start


def settle() -> None:
    """Wait until the library that just ran has no busy thread left, so it cannot slow the other one.

    After a multi-threaded call OpenBLAS keeps its worker threads spinning (busy, not yielding the
    core) for 2**28 CPU cycles, about 0.1 s, before they sleep; torch's OpenMP workers go to sleep at
    once. On two cores, torch steps started right after NumPy work ran several times slower (each
    parallel region waited for a core). A user runs one library at a time, so each library's timed
    work starts only once the other library's threads are idle.
    """
    time.sleep(SETTLE_SECONDS)
