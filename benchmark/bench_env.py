"""What the machine and the two libraries are really doing, as `svt bench` reports it.

    environment(threads)   # sets torch's threads; reports the thread counts both libraries use,
                           # the BLAS each is built on, versions, the load average
    cpu_ticks(), others_share(start, end)   # how much CPU other processes took meanwhile

Thread counts are asked of the libraries themselves (OpenBLAS through its C API, torch through
`torch.get_num_threads`), not inferred from the environment variables that were meant to set them.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def openblas_threads() -> int | None:
    """The thread count of the OpenBLAS NumPy loaded, asked through its own C API (None if not found)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "openblas_get_num_threads"):
            function = getattr(library, symbol, None)
            if function is not None:
                return int(function())
    return None


def numpy_blas() -> str:
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()


def torch_blas(torch) -> str:
    for line in torch.__config__.show().splitlines():
        if "BLAS_INFO=" in line:
            return line.split("BLAS_INFO=")[1].split(",")[0]
    return "unknown"


def cpu_ticks() -> tuple[int, int, int]:
    """Clock ticks so far: the whole machine's busy and total (/proc/stat), and this process's (all threads)."""
    with open("/proc/stat", encoding="ascii") as stat:
        machine = [int(value) for value in stat.readline().split()[1:]]
    with open("/proc/self/stat", encoding="ascii") as stat:
        own = stat.read().rsplit(")", 1)[1].split()
    idle = machine[3] + machine[4]  # idle and iowait
    return sum(machine) - idle, sum(machine), int(own[11]) + int(own[12])  # utime + stime


def others_share(start: tuple[int, int, int], end: tuple[int, int, int]) -> float:
    """The fraction of all the machine's CPU time that other processes used between two cpu_ticks()."""
    busy, total, own = (after - before for before, after in zip(start, end))
    return max(0.0, (busy - own) / total) if total else 0.0


def environment(threads: int, with_torch: bool = True) -> dict:
    """Set torch's threads to `threads`; report what the libraries and the machine actually have.

    `with_torch=False` leaves torch unimported (the scratch side's memory run never needs it).
    """
    found = {
        "threads_requested": threads,
        "openblas_threads": openblas_threads(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "numpy": np.__version__, "numpy_blas": numpy_blas(),
        "python": sys.version.split()[0],
        "load_average_start": os.getloadavg(),
    }
    if with_torch:
        import torch

        torch.set_num_threads(threads)
        found.update(torch_threads=torch.get_num_threads(), torch=torch.__version__, torch_blas=torch_blas(torch))
    return found
