"""The training loop of `svt run`: both sides in lockstep over the same batches, recording as it goes.

    record = train_side_by_side(spec, (train_x, train_y), (test_x, test_y), check_every=50)

One `numpy.random.Generator(spec.train.seed)` draws, in this order: the initial weights (scratch
side; torch copies them), then per epoch one permutation of the training set (both sides use it),
and within each step the dropout masks (scratch side; torch applies the same ones).

Every `check_every` steps (and on the first) the run looks inside, before that step's update:
the gradient-parity engine compares the two implementations on that batch from the same weights
(`benchmark.parity.gradient_parity`), the drift between the two models' weights is measured, and
each side records gradient norms, update/weight ratios and unit statistics.
"""
from __future__ import annotations

import math
import platform
import time

import numpy as np

from benchmark.lockstep import ScratchSide, TorchSide, drift_rows
from benchmark.memory import peak_rss_mb
from benchmark.record import RunRecord
from scratch_nn.spec import Spec


def train_side_by_side(spec: Spec, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                       check_every: int = 50, quiet: bool = False) -> RunRecord:
    """Train both sides for `spec.train.epochs` epochs; returns what was recorded (also when a
    loss stops being finite: then `record.stopped` says where, and there is no test evaluation)."""
    from tqdm import tqdm

    rng = np.random.default_rng(spec.train.seed)
    scratch = ScratchSide(spec, rng)
    torch_side = TorchSide(spec, scratch)
    sides = (scratch, torch_side)
    record = RunRecord(spec=spec, environment=environment())
    seconds = {side.name: 0.0 for side in sides}
    x, y = train
    batch_size, step = spec.train.batch_size, 0
    for epoch in range(1, spec.train.epochs + 1):
        order = rng.permutation(len(x))
        totals = {side.name: [0.0, 0] for side in sides}  # loss * batch, correct
        bar = tqdm(range(0, len(x), batch_size), desc=f"epoch {epoch}/{spec.train.epochs}",
                   disable=quiet, leave=False, unit="step", mininterval=0.5)
        for start in bar:
            step += 1
            batch = order[start:start + batch_size]
            xb, yb = x[batch], y[batch]
            observe = step == 1 or step % check_every == 0
            if observe:
                look_inside(record, step, scratch, torch_side, xb, yb, spec)
            losses = {}
            for side in sides:
                begun = time.perf_counter()
                with side.memory:
                    if side is scratch:
                        loss, correct = scratch.step(xb, yb, observe)
                    else:
                        loss, correct = torch_side.step(xb, yb, scratch.masks(), observe)
                seconds[side.name] += time.perf_counter() - begun
                if step == 1:
                    side.memory.settle()  # what the first step left (caches, buffers) is held
                losses[side.name] = loss
                totals[side.name][0] += loss * len(batch)
                totals[side.name][1] += correct
                record.steps.append({"step": step, "epoch": epoch, "side": side.name, "loss": loss, "lr": side.lr()})
            if observe:
                record_diagnostics(record, step, sides)
                bar.set_postfix(scratch=f"{losses['scratch']:.4f}", torch=f"{losses['torch']:.4f}", refresh=False)
            if not all(math.isfinite(loss) for loss in losses.values()):
                record.stopped = divergence_message(record, step, losses)
                return finish(record, sides, seconds, test=None)
        for side in sides:
            side.end_epoch()
        end_of_epoch(record, epoch, sides, totals, len(x), test, seconds)
        if not quiet:
            tqdm.write(epoch_line(record.epochs[-2:], spec.train.epochs))
    return finish(record, sides, seconds, test)


def look_inside(record: RunRecord, step: int, scratch: ScratchSide, torch_side: TorchSide,
                x: np.ndarray, y: np.ndarray, spec: Spec) -> None:
    """Gradient parity on this batch (from scratch's weights, on both implementations) and drift."""
    from benchmark.parity import gradient_parity

    with np.errstate(all="ignore"):  # a diverging run shows up in the losses, checked right after
        report = gradient_parity(scratch.model, x, y, l1=spec.train.l1)
    for row in report.rows:
        record.parity.append({"step": step, "tensor": row.name, "shape": "x".join(map(str, row.shape)),
                              "max_abs_diff": row.max_abs, "rel_error": row.rel_error,
                              "cosine": row.cosine, "ok": row.ok})
    for row in drift_rows(scratch.weights(), torch_side.weights()):
        record.drift.append({"step": step, **row})


def record_diagnostics(record: RunRecord, step: int, sides) -> None:
    for side in sides:
        record.layers += [{"step": step, "side": side.name, **row} for row in side.diagnostics["parameters"]]
        record.units += [{"step": step, "side": side.name, **row} for row in side.diagnostics["units"]]


def divergence_message(record: RunRecord, step: int, losses: dict[str, float]) -> str:
    side = next(name for name, loss in losses.items() if not math.isfinite(loss))
    finite = [row["loss"] for row in record.steps if row["side"] == side and math.isfinite(row["loss"])]
    last = f"the last finite loss was {finite[-1]:.4g}" if finite else "no step had a finite loss"
    return (f"the {side} loss became {losses[side]} at step {step} ({last}); training diverged: "
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
            "seconds": seconds[side.name], "peak_memory_mb": side.memory.peak_mb,
        })


def epoch_line(rows: list[dict], epochs: int) -> str:
    """`epoch 3/10  scratch: loss 0.0712 test 97.91%  torch: loss 0.0712 test 97.90%`"""
    parts = [f"{row['side']}: loss {row['train_loss']:.4f} test {row['test_accuracy']:.2%} "
             f"({row['seconds']:.1f} s)" for row in rows]
    return f"epoch {rows[0]['epoch']}/{epochs}  " + "  ".join(parts)


def finish(record: RunRecord, sides, seconds: dict, test) -> RunRecord:
    """Final evaluation on the test set, timing, and the parity verdict over every check."""
    for side in sides:
        begun = time.perf_counter()
        if test is not None:
            _, probabilities = side.evaluate(*test)
            record.probabilities[side.name] = probabilities
            record.predictions[side.name] = probabilities.argmax(axis=1)
        record.first_layer_weights[side.name] = side.weights()["layers.0.weight"]
        record.timing[side.name] = {"train_seconds": seconds[side.name],
                                    "eval_seconds": time.perf_counter() - begun,
                                    "peak_memory_mb": side.memory.peak_mb,
                                    "held_memory_mb": side.memory.held / 1e6,
                                    "process_peak_rss_mb": peak_rss_mb()}
    if test is not None:
        record.test_labels = test[1]
    record.parity_verdict = parity_verdict(record)
    return record


def parity_verdict(record: RunRecord) -> str:
    """One line over every parity check of the run."""
    if not record.parity:
        return "no gradient-parity check ran"
    checks = sorted({row["step"] for row in record.parity})
    broken = [row for row in record.parity if not row["ok"]]
    worst = max((row["rel_error"] for row in record.parity if math.isfinite(row["rel_error"])), default=math.nan)
    dtype = record.spec.model.dtype
    if not broken:
        return (f"gradients agree at all {len(checks)} checks: worst relative error {worst:.1e} "
                f"({dtype}, tolerance {'1e-10' if dtype == 'float64' else '1e-4'})")
    first = broken[0]
    return (f"gradients DIFFER: first break at step {first['step']}, {first['tensor']} "
            f"(relative error {first['rel_error']:.1e}); {len(broken)} tensors out of tolerance over "
            f"{len(checks)} checks")


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
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "blas": blas, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.machine()}
