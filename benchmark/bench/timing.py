"""What a timed training step costs (FLOPs) and how long it takes (the clocks of `svt bench`).

    time_steps(side, batches, steps)        # mean seconds of forward, backward and update per step
    time_inference(side, batches, calls)    # mean seconds per inference call
    train_epoch(side, x, y, batch_size, order)   # seconds of an epoch (or a run of its batches)

`side` is a `benchmark.sides.scratch.ScratchSide` or `benchmark.sides.torch.TorchSide`: each written
the way its users write it, and timed here phase by phase, with nothing but the step inside the
clocks (the spec's `l1` is part of the step on both sides; the lr schedule is not stepped: the
bench times steps, not epochs).

FLOPs of a training step (what the GFLOP/s figures divide): each weight layer is one product. A Linear
(in -> out) on a batch of N costs 2*N*in*out; a Conv2d (C -> O channels, kernel kH x kW, groups G,
output Ho x Wo) costs 2*N*Ho*Wo*O*(C/G)*kH*kW, one multiply-add per weight per output position (as
its im2col product (O, C/G*kH*kW) @ (C/G*kH*kW, N*Ho*Wo) per group; the padding's zeros count).
Training counts three such products per layer (forward, weight gradient, input gradient), except
for the first weight layer, whose input (the data) needs no gradient. Biases, activations, pooling,
batch-norm, the loss and the optimiser are elementwise, O(N*out) against the products' O(N*in*out),
and are not counted. Inference counts the forward products only.
"""
from __future__ import annotations

import math
import time

import numpy as np

from scratch_nn.spec import ModelSpec


def linear_shapes(model_spec: ModelSpec) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer of the spec's list, in order, read off the
    shapes the spec propagated."""
    return [(entry.input_shape[0], entry.spec.out_features) for entry in model_spec.entries
            if entry.spec.type == "linear"]


def product_flops(model_spec: ModelSpec, batch_size: int) -> list[int]:
    """The forward product's FLOPs of every weight layer (linear, conv2d), in order (the module docstring);
    a block adds nothing of its own (its sum and concatenation are no products)."""
    flops = []
    for entry in model_spec.entries:  # every layer, inside residual and concat blocks too
        layer, shape, output = entry.spec, entry.input_shape, entry.output_shape
        if layer.type == "linear":
            flops.append(2 * batch_size * shape[0] * layer.out_features)
        elif layer.type == "conv2d":
            kernel = math.prod(layer.kernel_size) if isinstance(layer.kernel_size, tuple) else layer.kernel_size ** 2
            flops.append(2 * batch_size * math.prod(output) * shape[0] // layer.groups * kernel)
    return flops


def inference_flops(model_spec: ModelSpec, batch_size: int) -> int:
    """The forward products: 2*N*in*out per Linear, 2*N*Ho*Wo*O*(C/G)*kH*kW per Conv2d."""
    return sum(product_flops(model_spec, batch_size))


def training_flops(model_spec: ModelSpec, batch_size: int) -> int:
    """Forward, plus per weight layer the weight gradient and, but for the first, the input gradient."""
    return sum(flops * (2 if index == 0 else 3) for index, flops in enumerate(product_flops(model_spec, batch_size)))


# ---------------------------------------------------------------------------------------------
# Clocks: each returns seconds per call, averaged over a block of calls.


def time_steps(side, batches: list, steps: int) -> tuple[float, float, float]:
    """Mean seconds per step of forward (with the loss), backward and update over `steps` steps,
    cycling through `batches` (pairs already in the side's array type)."""
    clock = time.perf_counter
    forward = backward = update = 0.0
    for step in range(steps):
        x, y = batches[step % len(batches)]
        start = clock()
        side.forward(x, y)
        forward_done = clock()
        side.backward()
        backward_done = clock()
        side.update()
        update_done = clock()
        forward += forward_done - start
        backward += backward_done - forward_done
        update += update_done - backward_done
    return forward / steps, backward / steps, update / steps


def time_inference(side, batches: list, calls: int) -> float:
    """Mean seconds per inference call (eval mode), cycling through `batches`."""
    side.train(False)
    try:
        start = time.perf_counter()
        for call in range(calls):
            side.infer(batches[call % len(batches)][0])
        return (time.perf_counter() - start) / calls
    finally:
        side.train(True)


def train_epoch(side, x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray) -> float:
    """Train on the rows `order` of (x, y) (an epoch, or a run of its batches), in batches of
    `batch_size`, each side gathering its batches in its own way (NumPy fancy indexing, torch
    tensor indexing); return the seconds it took."""
    inputs, targets = side.batch(x, y)
    if side.name == "torch":
        order = side.torch.from_numpy(order)
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        side.forward(inputs[rows], targets[rows])
        side.backward()
        side.update()
    return time.perf_counter() - start
