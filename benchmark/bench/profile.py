"""`svt bench --profile`: where a training step's time goes, op by op, on both sides.

    profile = profile_steps(scratch_side, torch_side, batches, steps)
    # {"scratch": {"ops": [[name, ms per step], ...], "step_ms": ...}, "torch": {...}}

Measured in the bench's own timing subprocess, on the sides and real batches the row was just
timed with, after its interleaved blocks (so the same threads, data and warm caches), one block of
`steps` steps per side, the other side's threads settled in between:

- scratch: the step written out layer by layer (what `Sequential.forward`/`backward` do), with a
  clock read after each layer's forward, the loss, each layer's backward and the update; an op is
  named by its layer (`layers.0 Conv2d forward`; a residual or concat block is one op, its layers
  inside it). The clocks cost a few hundred nanoseconds per op.
- torch: `torch.profiler` (CPU activity) around the same number of steps, each step inside a
  `record_function`; the ops are the step's top-level events (`aten::conv2d`, `aten::relu`, the
  autograd engine's `ConvolutionBackward0`, `Optimizer.step#SGD.step`, ...), the n-th of a name in a
  step called `name #n` (torch's own ops have no layer names: `aten::conv2d #2` is the second
  convolution of the forward, `ConvolutionBackward0 #1` the first one the backward meets, that is
  the last layer's). The profiler's own bookkeeping makes torch's profiled step slower than its
  timed one; `step_ms` of each side is the sum of its ops, to set beside the bench's step times.

The ops whose times are printed are the per-step medians over the block.
"""
from __future__ import annotations

import statistics
import time

from benchmark.core.clocks import settle

STEP_EVENT = "svt bench step"  # the record_function around each profiled torch step


def scratch_profile(side, batches: list, steps: int) -> dict:
    """Per-op milliseconds per step (medians over `steps` steps) of the scratch side's training step."""
    model, loss_fn = side.model, side.loss_fn
    layers = [(f"layers.{index}", layer) for index, layer in enumerate(model.layers)]  # a block is one op
    samples: dict[str, list[float]] = {}

    def lap(name: str, started: float) -> float:
        now = time.perf_counter()
        samples.setdefault(name, []).append(now - started)
        return now

    for step in range(steps):
        x, y = batches[step % len(batches)]
        clock = time.perf_counter()
        hidden = x
        for name, layer in layers:
            hidden = layer.forward(hidden)
            clock = lap(f"{name} {type(layer).__name__} forward", clock)
        side.loss = loss_fn.forward(hidden, y)
        grad = loss_fn.backward()
        clock = lap("loss forward + backward", clock)
        for index in range(len(layers) - 1, -1, -1):  # the first layer's input is data: no gradient
            name, layer = layers[index]
            grad = layer.backward(grad, input_grad=index > 0)
            clock = lap(f"{name} {type(layer).__name__} backward", clock)
        side.update()
        lap("optimizer update", clock)
    return summary(samples)


def torch_profile(side, batches: list, steps: int) -> dict:
    """Per-op milliseconds per step (medians over `steps` steps) of the torch side's top-level ops."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for step in range(steps):
            x, y = batches[step % len(batches)]
            with record_function(STEP_EVENT):
                side.forward(x, y)
                side.backward()
                side.update()
    samples: dict[str, list[float]] = {}
    for step_event in (event for event in profiler.events() if event.name == STEP_EVENT):
        seen: dict[str, int] = {}
        for child in sorted(step_event.cpu_children, key=lambda event: event.time_range.start):
            name = child.name.removeprefix("autograd::engine::evaluate_function: ")
            seen[name] = seen.get(name, 0) + 1
            samples.setdefault(f"{name} #{seen[name]}", []).append(child.cpu_time_total / 1e6)  # µs -> s
    return summary(samples)


def summary(samples: dict[str, list[float]]) -> dict:
    """{"ops": [[name, median ms per step], ...] in the order first met, "step_ms": their sum}."""
    ops = [[name, statistics.median(values) * 1e3] for name, values in samples.items()]
    return {"ops": ops, "step_ms": sum(milliseconds for _, milliseconds in ops)}


def profile_steps(scratch, torch_side, own_batches: dict, steps: int) -> dict:
    """Both sides' per-op profiles, one block each, the other side's threads settled first."""
    settle()
    result = {"steps": steps, "scratch": scratch_profile(scratch, own_batches["scratch"], steps)}
    settle()
    result["torch"] = torch_profile(torch_side, own_batches["torch"], steps)
    settle()
    return result


# ---------------------------------------------------------------------------------------------
# The report: both sides' ops side by side

SHOWN_SHARE = 0.01  # ops under 1% of their side's step are summed into one line


def side_lines(profile: dict, side: str) -> list[str]:
    """`name  ms  share` per op of one side, the small ones summed, its total first."""
    total = profile["step_ms"]
    shown = [(name, ms) for name, ms in profile["ops"] if ms >= SHOWN_SHARE * total]
    rest = [ms for _, ms in profile["ops"] if ms < SHOWN_SHARE * total]
    if rest:
        shown.append((f"{len(rest)} ops under {SHOWN_SHARE:.0%} each", sum(rest)))
    lines = [f"{side + ' (sum of ops)':<40} {total:7.3f}  100%"]
    return lines + [f"{name[:40]:<40} {ms:7.3f} {ms / total:4.0%}" for name, ms in shown]


def profile_lines(step_row: dict) -> list[str]:
    """The profile of one bench row: a title, then scratch's ops beside torch's (ms per step)."""
    profile = step_row["profile"]
    left, right = side_lines(profile["scratch"], "scratch"), side_lines(profile["torch"], "torch")
    width = max(map(len, left))
    lines = [f"profile at batch {step_row['batch_size']}: ms per step, medians of {profile['steps']} steps per "
             "side (torch's under torch.profiler, which slows it)"]
    for index in range(max(len(left), len(right))):
        pair = (left[index] if index < len(left) else "", right[index] if index < len(right) else "")
        lines.append(f"  {pair[0]:<{width}}   {pair[1]}".rstrip())
    return lines
