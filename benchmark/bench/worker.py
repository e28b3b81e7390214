"""The measuring half of `svt bench`, run in a fresh subprocess so that thread counts and memory are clean.

    python -m benchmark.bench.worker timing --config CONFIG.json --result RESULT.json
    python -m benchmark.bench.worker memory --config CONFIG.json --result RESULT.json

Why a subprocess: OpenBLAS reads OPENBLAS_NUM_THREADS once, when NumPy is first imported, and the
`svt` process has imported NumPy long before it parses `--threads`. `svt bench` therefore starts
this worker with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set in its environment,
and the worker calls `torch.set_num_threads` too; it then asks both libraries how many threads they
really use and reports that (`environment()`), so the figures never rest on an assumption.

`timing`: both sides in this one process, on the same real MNIST batches (the torch side wraps the
same NumPy arrays with `torch.from_numpy`), the two sides' repeats interleaved (scratch, torch, then
torch, scratch, ...) so that a change in machine load hits both. Per spec, dtype and batch size:
forward, backward and update seconds per step (median over repeats of a block's mean; a block lasts
at least `min_block_seconds`), and inference seconds per batch; with each block, one
product of the large-matmul ceiling (`MatmulCeiling`) in that side's library; per spec and dtype
one training epoch on real MNIST. With `--profile`, per row one more block per side, op by op
(benchmark.bench.profile).

`memory`: one side, nothing else. After loading the data (and importing the side's library) the
peak-RSS counter is reset (`/proc/self/clear_refs`), the resident size read as the baseline, and
then the side trains for a few epochs; VmRSS and VmHWM (peak) are read after each epoch.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.bench.profile import profile_steps
from benchmark.bench.timing import time_inference, time_steps, train_epoch
from benchmark.core.clocks import settle  # waits out the other library's spinning threads
from benchmark.core.environment import cpu_ticks, environment, others_share
from benchmark.data.mnist import as_inputs, as_labels, load_mnist
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import spec_from_dict, with_overrides

WARMUP_STEPS = 5
MAX_BLOCK_STEPS = 2000
BATCHES_PER_SIZE = 8  # distinct real batches a timed block cycles through
EPOCH_SEGMENTS = 8  # the timed epoch alternates sides segment by segment
PROFILE_MIN_STEPS = 20  # a profiled block's steps at least (medians per op)
PHASES = ("forward", "backward", "update", "step", "inference")  # what measure_config reports


def progress(message: str) -> None:
    print(f"svt bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Timing: both sides in turn


def interleaved(sides: list, measure, repeats: int) -> dict[str, list]:
    """`measure(side)` `repeats` times per side, alternating which side goes first, settling in between."""
    samples: dict[str, list] = {side.name: [] for side in sides}
    for repeat in range(repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            samples[side.name].append(measure(side))
            settle()
    return samples


def block_length(seconds_per_call: float, min_block_seconds: float) -> int:
    """Calls per timed block, so that a block lasts at least `min_block_seconds` (clock noise averages out)."""
    return max(1, min(MAX_BLOCK_STEPS, math.ceil(min_block_seconds / max(seconds_per_call, 1e-9))))


class MatmulCeiling:
    """The machine's ceiling: GFLOP/s of a large (size x size) @ (size x size) product, per library.

    `sample("scratch")` times one NumPy product, `sample("torch")` one torch product (on the same
    numbers). measure_config takes one sample right after each block of that library's side, so
    that the ceiling is measured in the same seconds as the row it divides. On a shared machine
    throughput drifts over minutes: against a ceiling measured once, before the sweeps, the same
    code read 86% in one run and 69% in another (torch 85% and 66%).
    """

    LIBRARIES = {"scratch": "numpy", "torch": "torch"}  # whose product runs after whose block

    def __init__(self, dtype: str, size: int) -> None:
        import torch

        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
        out, torch_out = np.empty_like(a), torch.from_numpy(np.empty_like(a))
        torch_a, torch_b = torch.from_numpy(a), torch.from_numpy(b)
        self.size, self.flops = size, 2 * size**3
        self._products = {"numpy": lambda: np.matmul(a, b, out=out),
                          "torch": lambda: torch.matmul(torch_a, torch_b, out=torch_out)}

    def sample(self, side_name: str) -> float:
        product = self._products[self.LIBRARIES[side_name]]
        start = time.perf_counter()
        product()
        return self.flops / (time.perf_counter() - start) / 1e9

    def summary(self, samples: dict[str, list[float]]) -> dict:
        """{"size", "numpy", "torch" (median GFLOP/s), "samples"} from each side's list of samples."""
        by_library = {self.LIBRARIES[side_name]: values for side_name, values in samples.items()}
        return {"size": self.size, **{library: statistics.median(values) for library, values in by_library.items()},
                "samples": by_library}


def real_batches(x: np.ndarray, y: np.ndarray, batch_size: int, count: int, seed: int) -> list:
    """`count` distinct batches of real training images, each a contiguous array."""
    order = np.random.default_rng(seed).permutation(len(x))
    count = max(1, min(count, len(x) // batch_size))
    return [(x[order[i * batch_size:(i + 1) * batch_size]], y[order[i * batch_size:(i + 1) * batch_size]])
            for i in range(count)]


def measure_config(spec, batches: list, repeats: int, min_block_seconds: float, ceiling: MatmulCeiling,
                   profile: bool = False) -> dict:
    """Training-step phases and inference time of both sides at one batch size (fresh sides), and
    the matmul ceiling in the same seconds.

    A side's timed block is `steps` training steps, then `calls` inference calls, then one untimed
    (for the block) sample of its library's ceiling product; the blocks of the two sides alternate.
    Both counts are calibrated after a warm-up, the same for both sides. With `profile`, one more
    block per side afterwards, op by op (benchmark.bench.profile).
    """
    scratch = ScratchSide(spec)
    sides = [scratch, TorchSide(spec, scratch.model.state_dict(), scheduled=False)]
    own = {side.name: [side.batch(x, y) for x, y in batches] for side in sides}
    per_step, per_call = 0.0, 0.0
    for side in sides:
        time_steps(side, own[side.name], WARMUP_STEPS)
        per_step = max(per_step, sum(time_steps(side, own[side.name], WARMUP_STEPS)))
        per_call = max(per_call, time_inference(side, own[side.name], WARMUP_STEPS))
        ceiling.sample(side.name)  # warm-up: the first product pays for its library's thread start
        settle()
    steps, calls = block_length(per_step, min_block_seconds), block_length(per_call, min_block_seconds / 2)

    def block(side) -> tuple:
        time_steps(side, own[side.name], 2)  # untimed: threads that slept through settle() wake up here
        timings = time_steps(side, own[side.name], steps), time_inference(side, own[side.name], calls)
        return timings, ceiling.sample(side.name)  # before settle(): its threads are still awake

    samples = interleaved(sides, block, repeats)
    result: dict = {"steps_per_block": steps, "calls_per_block": calls, "update_path": scratch.update_path()}
    seconds = {}  # side -> (repeats, 5): forward, backward, update, step, inference of each block
    for side in sides:
        phases = np.array([training for (training, _), _ in samples[side.name]])  # (repeats, 3)
        inference = np.array([[call] for (_, call), _ in samples[side.name]])  # (repeats, 1): s per call
        seconds[side.name] = np.hstack([phases, phases.sum(axis=1, keepdims=True), inference])
        result[side.name] = {**dict(zip(PHASES, np.median(seconds[side.name], axis=0).tolist())),
                             "blocks": phases.tolist(), "inference_blocks": inference[:, 0].tolist(),
                             "final_loss": side.loss_value()}
    result["ceiling"] = ceiling.summary({name: [gflops for _, gflops in blocks] for name, blocks in samples.items()})
    # The two sides' blocks of one repeat ran back to back: the median of their ratios is not
    # skewed by a slow spell of the shared machine, as the ratio of the two medians can be.
    pairs = seconds["scratch"] / seconds["torch"]
    result["paired_ratio"] = dict(zip(PHASES, np.median(pairs, axis=0).tolist()))
    if profile:
        result["profile"] = profile_steps(scratch, sides[1], own, max(steps, PROFILE_MIN_STEPS))
    return result


def measure_epoch(spec, x: np.ndarray, y: np.ndarray, images: int) -> dict:
    """One epoch of each side (fresh, same initial weights, same order) over the first `images` images.

    The epoch is cut into EPOCH_SEGMENTS runs of whole batches, and the two sides take turns
    segment by segment (settling in between), so that a change in machine load during the epoch
    hits both; each side's epoch time is the sum of its segments.
    """
    scratch = ScratchSide(spec)
    sides = [scratch, TorchSide(spec, scratch.model.state_dict(), scheduled=False)]
    batch_size = spec.train.batch_size
    order = np.random.default_rng(spec.train.seed).permutation(images)
    for side in sides:  # warm-up: first-call costs (thread pools, allocator caches) are not the epoch
        train_epoch(side, x, y, batch_size, order[:WARMUP_STEPS * batch_size])
    batches = math.ceil(images / batch_size)
    bounds = [round(batches * k / EPOCH_SEGMENTS) * batch_size for k in range(EPOCH_SEGMENTS + 1)]
    seconds = {side.name: 0.0 for side in sides}
    for index, (first, last) in enumerate(zip(bounds[:-1], bounds[1:])):
        for side in sides if index % 2 == 0 else sides[::-1]:
            settle()
            seconds[side.name] += train_epoch(side, x, y, batch_size, order[first:last])
    return {"images": images, "batch_size": batch_size, "seconds": seconds, "update_path": scratch.update_path(),
            "final_loss": {side.name: side.loss_value() for side in sides}}


def timing_job(config: dict) -> dict:
    env = environment(config["threads"])
    ticks = cpu_ticks()
    mnist = load_mnist(config["data_dir"], quiet=True)
    specs = [spec_from_dict(plain, where="svt bench worker") for plain in config["specs"]]
    result = {"environment": env, "steps": [], "epochs": []}
    import torch

    result["environment"]["torch_optimizer"] = TorchSide(specs[0], scheduled=False).optimizer_implementation()
    for dtype in config["dtypes"]:
        x = as_inputs(mnist.train_images, dtype)
        y = as_labels(mnist.train_labels)
        ceiling = MatmulCeiling(dtype, config["ceiling_size"])
        for spec in specs:
            spec = with_overrides(spec, model={"dtype": dtype})
            spec_x = x.reshape(len(x), *spec.model.input_shape)  # the shape the spec asks (a view)
            for batch_size in config["batch_sizes"]:
                progress(f"{spec.name} {dtype} batch {batch_size}: training step and inference")
                batches = real_batches(spec_x, y, batch_size, BATCHES_PER_SIZE, spec.train.seed)
                row = measure_config(spec, batches, config["repeats"], config["min_block_seconds"], ceiling,
                                     config.get("profile", False))
                result["steps"].append({"spec": spec.name, "dtype": dtype, "batch_size": batch_size, **row})
            progress(f"{spec.name} {dtype}: one epoch per side ({config['epoch_images']:,} images, "
                     f"batch {spec.train.batch_size})")
            epoch = measure_epoch(spec, spec_x, y, config["epoch_images"])
            result["epochs"].append({"spec": spec.name, "dtype": dtype, **epoch})
        del x, y, ceiling, spec_x
        gc.collect()
    result["environment"]["load_average_end"] = os.getloadavg()
    result["environment"]["others_cpu_share"] = others_share(ticks, cpu_ticks())
    result["environment"]["torch_threads_end"] = torch.get_num_threads()
    return result


# ---------------------------------------------------------------------------------------------
# Memory: one side alone


def memory_status() -> dict[str, float]:
    """VmRSS and VmHWM (peak resident size) of this process in MB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / 1e6  # kB -> MB
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def memory_job(config: dict) -> dict:
    env = environment(config["threads"], with_torch=config["side"] == "torch")  # before the baseline
    spec = with_overrides(spec_from_dict(config["spec"], where="svt bench worker"), model={"dtype": config["dtype"]})
    mnist = load_mnist(config["data_dir"], quiet=True)
    x, y = as_inputs(mnist.train_images, config["dtype"], shape=spec.model.input_shape), as_labels(mnist.train_labels)
    del mnist
    gc.collect()
    peak_reset = reset_peak()  # loading the data has its own transient peak, which is not training's
    baseline = memory_status()
    side = ScratchSide(spec) if config["side"] == "scratch" else TorchSide(spec, scheduled=False)
    rng = np.random.default_rng(spec.train.seed)
    epochs = []
    for _ in range(config["epochs"]):
        seconds = train_epoch(side, x, y, spec.train.batch_size, rng.permutation(config["images"]))
        epochs.append({**memory_status(), "seconds": seconds})
    return {"side": config["side"], "spec": spec.name, "dtype": config["dtype"], "images": config["images"],
            "batch_size": spec.train.batch_size, "baseline": baseline, "epochs": epochs,
            "peak_reset": peak_reset, "final_loss": side.loss_value(), "update_path": side.update_path(),
            "threads": {key: env.get(key) for key in ("openblas_threads", "torch_threads")}}


JOBS = {"timing": timing_job, "memory": memory_job}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench.worker",
                                     description="the measuring subprocess of `svt bench` (not for direct use)")
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--result", required=True, type=Path)
    args = parser.parse_args(argv)
    result = JOBS[args.job](json.loads(args.config.read_text(encoding="utf-8")))
    args.result.write_text(json.dumps(result, indent=1), encoding="utf-8")  # the parent reads it after exit 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
