"""What the machine and the two libraries are really doing, as `svt bench` reports it.

    environment(threads)   # sets torch's threads; reports the thread counts both libraries use,
                           # the BLAS each is built on and OpenBLAS's kernels, versions, the load
                           # average
    cpu_ticks(), others_share(start, end)   # how much CPU other processes took meanwhile

Thread counts are asked of the libraries themselves (NumPy's OpenBLAS through its C API, torch through
`torch.get_num_threads`), not inferred from the environment variables that were meant to set them.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from scratch_nn.blas import openblas_function  # NumPy's own OpenBLAS (SciPy may load another)

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_VARIABLES = ("OPENBLAS_CORETYPE",)  # not set by svt bench: passed on as found, and reported


# OpenBLAS's kernels for x86 cores that have AVX2 but not AVX-512
AVX2_KERNELS = ("haswell", "zen")  # lower case: builds without runtime selection say "HASWELL"
AVX512_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")  # what its SkylakeX kernels use


def openblas_threads() -> int | None:
    """The thread count of the OpenBLAS NumPy loaded, asked through its own C API (None if not found)."""
    function = openblas_function("openblas_get_num_threads")
    return int(function()) if function else None


def openblas_core() -> str | None:
    """The CPU kernels OpenBLAS picked at load time ("Haswell", "SkylakeX", ...), or None."""
    function = openblas_function("openblas_get_corename", ctypes.c_char_p)
    name = function() if function else None
    return name.decode("ascii", "replace") if name else None


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU (/proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas_kernel_hint(core: str | None, flags: set[str], forced: str | None) -> str | None:
    """A hint when OpenBLAS runs AVX2 kernels on a CPU that has AVX-512 (None otherwise).

    OpenBLAS picks its kernels by CPU model, or as OPENBLAS_CORETYPE (`forced`) says. Seen on an
    AMD EPYC with AVX-512 whose environment set OPENBLAS_CORETYPE=Haswell: with SkylakeX instead
    the 2048x2048 float32 product ran 1.8x faster (about 240 -> 440 GFLOP/s on 2 threads), and
    with the variable set to an unknown name OpenBLAS picked SkylakeX itself.
    """
    if (core or "").lower() not in AVX2_KERNELS or not all(flag in flags for flag in AVX512_FLAGS):
        return None
    if forced and forced.lower() == core.lower():
        why = f"as OPENBLAS_CORETYPE={forced} in the environment asks"
    else:  # not set, or set to something OpenBLAS did not take (an unknown name makes it detect the CPU)
        why = "as it picked for this CPU model"
    return (f"NumPy's OpenBLAS runs its {core} (AVX2) kernels, {why}, on a CPU that has AVX-512; "
            "OPENBLAS_CORETYPE=SkylakeX (for svt bench, svt run or your own program) would select its "
            "AVX-512 kernels, which may be much faster")


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
    core = openblas_core()
    found = {
        "threads_requested": threads,
        "openblas_threads": openblas_threads(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "numpy": np.__version__, "numpy_blas": numpy_blas(),
        "openblas_core": core,
        "blas_variables": {name: os.environ.get(name) for name in BLAS_VARIABLES},
        "blas_kernel_hint": blas_kernel_hint(core, cpu_flags(), os.environ.get("OPENBLAS_CORETYPE")),
        "python": sys.version.split()[0],
        "load_average_start": os.getloadavg(),
    }
    if with_torch:
        import torch

        torch.set_num_threads(threads)
        found.update(torch_threads=torch.get_num_threads(), torch=torch.__version__, torch_blas=torch_blas(torch))
    return found
