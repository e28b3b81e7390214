"""The training loop of `svt run`: both sides over the same batches, epoch by epoch, recording as it goes.

    record = train_side_by_side(spec, (train_x, train_y), (test_x, test_y), check_every=50)
    record = train_side_by_side(spec, train, test, sides=(learner_side, torch_side), parity=learner_parity)

One `numpy.random.Generator(spec.train.seed)` draws, in this order: the initial weights (scratch
side; torch copies them), then per epoch one permutation of the training set (both sides use it),
and within each step the dropout masks (scratch side; torch applies the same ones).

With `sides` given (`svt run --model`: a `benchmark.sides.learner.LearnerSide` and the TorchSide
of its twin, built from the learner's initial weights), the generator draws only the permutations,
and `parity(first_side, x, y)` gives the rows of each parity check (`learner_parity`); the first
side is called "scratch" in this module's code, whatever its name.

Each epoch runs first on the scratch side, then on the torch side, over the same batches. Taking
turns by epoch rather than by step keeps the two thread pools out of each other's way: NumPy's
OpenBLAS threads and torch's OpenMP threads both spin-wait after each call, and interleaving the
two every step made both sides 3-8 times slower on two cores (measured: 1.2 and 1.5 ms per step
alone, 4.6 and 12.3 ms interleaved, on the default spec).

Every `check_every` steps (and on the first) the run looks inside, before that step's update:
the gradient-parity engine compares the two implementations on that batch from the same weights
(`benchmark.parity.engine.gradient_parity`), the drift between the two models' weights is measured (the
scratch weights are kept for the torch side's turn), and each side records gradient norms,
update/weight ratios and unit statistics.

Time: the report's training seconds of a side are its training steps alone. All the looking inside
(the parity checks, the drift, the diagnostics and the memory accounting of the observed steps)
runs inside the side's `instrumentation` stopwatch, is subtracted from the steps' wall time and
reported on its own row; the loop's own bookkeeping (progress bar, step records) is outside the
clock. Torch's turn starts once NumPy's threads have gone idle (`benchmark.core.clocks.settle`: OpenBLAS
spins for 0.1 s after a call, and on two cores that made the torch steps after it several times
slower; torch's own threads sleep at once). On the default spec the training seconds so measured
agree with `svt bench`'s epoch time.
"""
from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from benchmark.core.clocks import settle
from benchmark.core.memory import peak_rss_mb
from benchmark.report.record import RunRecord
from benchmark.sides.probe import drift_rows
from benchmark.sides.scratch import ScratchSide
from benchmark.sides.torch import TorchSide
from scratch_nn.spec import Spec


@dataclass
class Epoch:
    """One epoch's batches and what the scratch side's turn leaves for the torch side's."""

    number: int
    first_step: int                      # the global step number of batches[0]
    batches: list[np.ndarray]            # index arrays into the training set
    keeps: list[dict] = field(default_factory=list)    # per step: dropout layer -> kept units (bool)
    weights: dict = field(default_factory=dict)        # check step -> scratch weights before it
    stopped_at: int | None = None        # the step whose loss was not finite, on either side


def train_side_by_side(spec: Spec, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                       check_every: int = 50, quiet: bool = False, sides: tuple | None = None,
                       parity=None) -> RunRecord:
    """Train both sides for `spec.train.epochs` epochs; returns what was recorded (also when a
    loss stops being finite: then `record.stopped` says where, and there is no test evaluation).
    `sides` and `parity`: see the module docstring (default: the scratch model of `spec` and its twin)."""
    from tqdm import tqdm

    rng = np.random.default_rng(spec.train.seed)
    if sides is None:
        scratch = ScratchSide(spec, rng)
        torch_side = TorchSide(spec, scratch.model.state_dict())  # the same initial weights, exactly
    else:
        scratch, torch_side = sides
    record = RunRecord(spec=spec, environment=environment(), sides=(scratch.name, torch_side.name))
    parity = parity or scratch_parity
    seconds = dict.fromkeys(record.sides, 0.0)
    x, y = train
    batch_size, first_step = spec.train.batch_size, 1
    for number in range(1, spec.train.epochs + 1):
        order = rng.permutation(len(x))
        epoch = Epoch(number, first_step, [order[start:start + batch_size] for start in range(0, len(x), batch_size)])
        steps = len(epoch.batches)  # one bar for both turns: say so, or 2 x 469 reads as 938 batches
        first, second = record.sides
        bar = tqdm(total=2 * steps, desc=f"epoch {number}/{spec.train.epochs} ({first} {steps} + {second} {steps})",
                   disable=quiet, leave=False, unit="step", mininterval=0.5)
        # The latest loss of each side in this epoch: torch's shows "-" until its turn starts, not the
        # previous epoch's loss beside scratch's current one.
        bar.losses = dict.fromkeys(record.sides, "-")
        totals = {}
        try:
            for side in (scratch, torch_side):
                if side is torch_side:
                    settle()  # OpenBLAS's threads still spin after scratch's turn: they would slow torch's
                totals[side.name] = run_epoch(record, side, scratch, epoch, train, check_every, seconds, bar,
                                              parity)
        finally:  # Ctrl-C too: the bar is cleared before the CLI's line
            bar.close()
        record.steps.sort(key=lambda row: row["step"])  # stable: scratch before torch within a step
        if epoch.stopped_at is not None:
            record.stopped = divergence_message(record, epoch.stopped_at)
            return finish(record, (scratch, torch_side), seconds, test=None)
        for side in (scratch, torch_side):
            side.end_epoch()
        end_of_epoch(record, number, (scratch, torch_side), totals, len(x), test, seconds)
        if not quiet:
            tqdm.write(epoch_line(record.epochs[-2:], spec.train.epochs))
            sys.stdout.flush()  # through a pipe too, each epoch's line as it ends
        first_step += len(epoch.batches)
    return finish(record, (scratch, torch_side), seconds, test)


def run_epoch(record: RunRecord, side, scratch: ScratchSide, epoch: Epoch, train, check_every: int,
              seconds: dict, bar, parity) -> list:
    """One side's turn over the epoch's batches; returns [sum of loss * batch size, correct]."""
    x, y = train
    totals = [0.0, 0]
    limit = len(epoch.batches) if epoch.stopped_at is None else epoch.stopped_at - epoch.first_step + 1
    for index, batch in enumerate(epoch.batches[:limit]):
        step = epoch.first_step + index
        xb, yb = x[batch], y[batch]
        observe = step == 1 or step % check_every == 0
        if observe:
            with side.instrumentation:
                look_inside(record, step, side, scratch, epoch, xb, yb, parity)
        masks = masks_for(scratch, epoch.keeps[index]) if side is not scratch and epoch.keeps else {}
        loss, correct, training = timed_step(side, scratch, xb, yb, masks, observe, observe or step == 2)
        seconds[side.name] += training
        if step == 1:
            side.memory.settle()  # what the first step left (caches, buffers) is held
        if side is scratch and scratch.masks():
            epoch.keeps.append({name: mask != 0 for name, mask in scratch.masks().items()})
        totals[0] += loss * len(batch)
        totals[1] += correct
        record.steps.append({"step": step, "epoch": epoch.number, "side": side.name, "loss": loss, "lr": side.lr()})
        if observe:
            with side.instrumentation:
                record_diagnostics(record, step, side)
        if index % 20 == 0:
            bar.losses[side.name] = f"{loss:.4f}"
            bar.set_postfix(bar.losses, refresh=False)
        bar.update()
        if not math.isfinite(loss):
            epoch.stopped_at = step if epoch.stopped_at is None else min(step, epoch.stopped_at)
            break
    return totals


def timed_step(side, scratch: ScratchSide, x: np.ndarray, y: np.ndarray, masks: dict, observe: bool,
               account_memory: bool):
    """One training step of `side`: (loss, correct, seconds of training in it).

    The seconds are the step's wall time less what the side's instrumentation took inside it.
    Memory is accounted (each mallinfo2 call walks the heap) on the first step (what it leaves is
    held), the second (the growth within a step is the same at every step of a batch size) and the
    observed ones, not on every step.
    """
    watched = side.instrumentation.seconds
    begun = time.perf_counter()
    with side.memory if account_memory else contextlib.nullcontext():
        loss, correct = scratch.step(x, y, observe) if side is scratch else side.step(x, y, masks, observe)
    return loss, correct, time.perf_counter() - begun - (side.instrumentation.seconds - watched)


def masks_for(scratch: ScratchSide, keeps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scratch side's dropout masks rebuilt from the kept units, bit for bit: keep / (1 - p) in
    the model dtype, as `scratch_nn.layers.dropout_mask` computes it. Storing an epoch of masks
    as booleans takes a quarter (float32) or an eighth (float64) of the memory."""
    layers = dict(scratch.model.named_layers())
    masks = {}
    for name, keep in keeps.items():
        mask = keep.astype(scratch.model.dtype)
        mask /= 1.0 - layers[name].p
        masks[name] = mask
    return masks


def look_inside(record: RunRecord, step: int, side, scratch: ScratchSide, epoch: Epoch,
                x: np.ndarray, y: np.ndarray, parity) -> None:
    """Scratch's turn: gradient parity on this batch (scratch's weights on both implementations),
    and keep its weights. Torch's turn: the drift between those and torch's own weights."""
    if side is scratch:
        with np.errstate(all="ignore"):  # a diverging run shows up in the losses, checked after the step
            report = parity(scratch, x, y)
        record.parity += [{"step": step, "tensor": row["name"], "shape": "x".join(map(str, row["shape"])),
                           "max_abs_diff": row["max_abs"], **{key: row[key] for key in (
                               "rel_error", "scratch_vs_f64", "torch_vs_f64", "tolerance", "cosine", "ok",
                               "explained")}}
                          for row in report.records()]
        epoch.weights[step] = scratch.weights()
    else:
        record.drift += [{"step": step, **row} for row in drift_rows(epoch.weights.pop(step), side.weights())]


def scratch_parity(scratch: ScratchSide, x: np.ndarray, y: np.ndarray):
    """The parity engine's report on one batch: the scratch model and its twin from the same weights."""
    from benchmark.parity.engine import gradient_parity

    return gradient_parity(scratch.model, x, y, l1=scratch.l1)


def record_diagnostics(record: RunRecord, step: int, side) -> None:
    record.layers += [{"step": step, "side": side.name, **row} for row in side.diagnostics["parameters"]]
    record.units += [{"step": step, "side": side.name, **row} for row in side.diagnostics["units"]]


def divergence_message(record: RunRecord, step: int) -> str:
    """Which side's loss stopped being finite at `step`, its last finite loss, and what to try."""
    at_step = {row["side"]: row["loss"] for row in record.steps if row["step"] == step}
    side = next(name for name in record.sides if not math.isfinite(at_step.get(name, 0.0)))
    finite = [row["loss"] for row in record.steps if row["side"] == side and math.isfinite(row["loss"])]
    last = f"the last finite loss was {finite[-1]:.4g}" if finite else "no step had a finite loss"
    return (f"the {side} loss became {at_step[side]} at step {step} ({last}); training diverged: "
            f"lower the learning rate (--lr, now {record.spec.train.lr:g})")


def end_of_epoch(record: RunRecord, epoch: int, sides, totals: dict, count: int, test, seconds) -> None:
    """Per side: mean training loss and accuracy over the epoch's batches, test loss and accuracy."""
    test_x, test_y = test
    for side in sides:
        test_loss, probabilities = side.evaluate(test_x, test_y)
        record.epochs.append({
            "epoch": epoch, "side": side.name,
            "train_loss": totals[side.name][0] / count, "train_accuracy": totals[side.name][1] / count,
            "test_loss": test_loss, "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == test_y)),
            "seconds": seconds[side.name] - sum(row["seconds"] for row in record.epochs if row["side"] == side.name),
            "peak_memory_mb": side.memory.peak_mb,
        })


def epoch_line(rows: list[dict], epochs: int) -> str:
    """`epoch 3/10  scratch: loss 0.0712 test 97.91%  torch: loss 0.0712 test 97.90%`"""
    parts = [f"{row['side']}: loss {row['train_loss']:.4f} test {row['test_accuracy']:.2%} "
             f"({row['seconds']:.1f} s)" for row in rows]
    return f"epoch {rows[0]['epoch']}/{epochs}  " + "  ".join(parts)


def finish(record: RunRecord, sides, seconds: dict, test) -> RunRecord:
    """Final evaluation on the test set, timing, and the parity verdict over every check."""
    for side in sides:
        if side.name == "torch":
            settle()  # after scratch's evaluation, as before torch's turns
        begun = time.perf_counter()
        if test is not None:
            _, probabilities = side.evaluate(*test)
            record.probabilities[side.name] = probabilities
            record.predictions[side.name] = probabilities.argmax(axis=1)
        eval_seconds = time.perf_counter() - begun
        first = record.spec.model.weight_layer_names()[0]  # the first weight layer of the spec's list
        record.first_layer_weights[side.name] = side.weights()[f"{first}.weight"]
        if test is not None and any(entry.spec.type == "conv2d" for entry in record.spec.model.entries):
            record.feature_maps[side.name] = side.feature_maps(test[0][:1])  # the first test digit
        steps = sum(row["side"] == side.name for row in record.steps)
        record.timing[side.name] = {"train_seconds": seconds[side.name],
                                    "train_ms_per_step": 1e3 * seconds[side.name] / steps if steps else None,
                                    "instrumentation_seconds": side.instrumentation.seconds,
                                    "eval_seconds": eval_seconds,
                                    "peak_memory_mb": side.memory.peak_mb,
                                    "held_memory_mb": side.memory.held / 1e6,
                                    "process_peak_rss_mb": peak_rss_mb()}
    if test is not None:
        record.test_labels = test[1]
    last_step = max((row["step"] for row in record.steps), default=0)
    if last_step and not any(row["step"] == last_step for row in record.drift):  # the final drift
        record.drift += [{"step": last_step, **row} for row in drift_rows(sides[0].weights(), sides[1].weights())]
    record.parity_verdict = parity_verdict(record)
    return record


def parity_verdict(record: RunRecord) -> str:
    """One line over every parity check of the run: agreement with the worst figures, or the first break."""
    if not record.parity:
        return "no gradient-parity check ran"
    float32 = record.spec.model.dtype == "float32"
    measure, label = ("scratch_vs_f64", "scratch vs f64") if float32 else ("rel_error", "relative error")
    rule = ("float32: each tensor as close to a float64 reference as torch's" if float32
            else "float64: relative error <= 1e-10")
    checks = len({row["step"] for row in record.parity})
    counted = f"{checks} check{'s' * (checks != 1)}"
    broken = [row for row in record.parity if not row["ok"]]
    if broken:
        first = broken[0]
        return (f"gradients DIFFER: first break at step {first['step']}, {first['tensor']} ({label} "
                f"{first[measure]:.1e} > {first['tolerance']:.1e}); {len(broken)} tensors out of tolerance "
                f"over {counted} ({rule})")
    judged = [row for row in record.parity if not row["explained"] and math.isfinite(row[measure])]
    worst = max(judged, key=lambda row: row[measure] / row["tolerance"], default=None)
    detail = "" if worst is None else f"; worst {worst['tensor']} at step {worst['step']}: {label} {worst[measure]:.1e}"
    if worst is not None and float32:
        detail += f", torch vs f64 {worst['torch_vs_f64']:.1e}"
    explained = sum(bool(row["explained"]) for row in record.parity)
    kinks = f"; {explained} tensors explained by kink crossings" if explained else ""
    return f"gradients agree at every check ({counted}{detail}) ({rule}){kinks}"


def environment() -> dict:
    """Versions, BLAS and threads: what a reader needs to compare timings across machines."""
    import os

    import torch

    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")
        info = config.get("Build Dependencies", {}).get("blas", {})
        blas = f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # numpy < 1.25 has no mode="dicts"; the rest of the report does not need it
        pass
    from benchmark.core.environment import openblas_core

    kernels = openblas_core()
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "blas": blas, "blas_kernels": f"{kernels or 'unknown'} (OPENBLAS_CORETYPE="
                                          f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')})",
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.machine()}
