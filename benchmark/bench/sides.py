"""The two sides of `svt bench`, behind one small interface, and the clocks that time them.

    side = ScratchSide(spec)                  # or TorchSide(spec, scratch.model.state_dict())
    x, y = side.batch(x_numpy, y_numpy)       # the side's own array type (torch: no copy)
    side.forward(x, y); side.backward(); side.update()    # one training step, in three timed phases
    side.infer(x)                             # logits in eval mode (torch: under inference_mode)

Each side is written the way its users write it. Scratch: `model.forward`, `loss.forward`,
`model.backward(loss.backward(), input_grad=False)`, `optimizer.step(grads)`. Torch: `model(x)`,
`loss_fn(out, y)`, `optimizer.zero_grad(set_to_none=True)`, `loss.backward()`, `optimizer.step()`
with torch's default optimiser implementation (on the CPU torch picks its single-tensor loop; the
bench reports which one it picked). The spec's `l1` and schedule are not applied: the bench times
the step, not the recipe.

FLOPs of a training step (what the GFLOP/s figures divide): for each Linear (in -> out) on a batch
of N, the forward product costs 2*N*in*out, the weight gradient 2*N*in*out and the input gradient
2*N*in*out, except for the first Linear, whose input (the data) needs no gradient. Biases,
activations, the loss and the optimiser are elementwise, O(N*out) or O(in*out) against the
products' O(N*in*out), and are not counted. Inference counts the forward products only.
"""
from __future__ import annotations

import time

import numpy as np

from scratch_nn.losses import build_loss
from scratch_nn.model import MLP
from scratch_nn.optim import build_optimizer
from scratch_nn.spec import ModelSpec, Spec


def linear_shapes(model_spec: ModelSpec) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer of the spec's list, in order, read off the
    shapes the spec propagated."""
    input_shapes = (model_spec.input_shape, *model_spec.shapes[:-1])
    return [(shape[0], layer.out_features) for layer, shape in zip(model_spec.layers, input_shapes)
            if layer.type == "linear"]


def inference_flops(model_spec: ModelSpec, batch_size: int) -> int:
    """2*N*in*out per Linear: the forward matrix products."""
    return sum(2 * batch_size * fan_in * fan_out for fan_in, fan_out in linear_shapes(model_spec))


def training_flops(model_spec: ModelSpec, batch_size: int) -> int:
    """Forward, plus per Linear the weight gradient (2*N*in*out) and, but for the first, the input gradient."""
    backward = sum(2 * batch_size * fan_in * fan_out * (1 if index == 0 else 2)
                   for index, (fan_in, fan_out) in enumerate(linear_shapes(model_spec)))
    return inference_flops(model_spec, batch_size) + backward


class ScratchSide:
    """The scratch MLP, its loss and optimiser, initialised from the spec's seed."""

    name = "scratch"

    def __init__(self, spec: Spec) -> None:
        self.model = MLP(spec.model, np.random.default_rng(spec.train.seed))
        self.loss_fn = build_loss(spec.model)
        self.optimizer = build_optimizer(spec.train, self.model.named_parameters())
        self.grads = dict(self.model.named_gradients())  # the layers' live gradient arrays
        self.loss = None

    def batch(self, x: np.ndarray, y: np.ndarray):
        return x, y

    def forward(self, x, y) -> None:
        self.loss = self.loss_fn.forward(self.model.forward(x), y)

    def backward(self) -> None:
        self.model.backward(self.loss_fn.backward(), input_grad=False)

    def update(self) -> None:
        self.optimizer.step(self.grads)

    def infer(self, x):
        return self.model.forward(x)

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def loss_value(self) -> float:
        return float(self.loss)

    def update_path(self) -> str:
        """Which code runs the optimiser's update: "openblas (flat)", "numpy (per tensor)", ..."""
        return self.optimizer.update_path


class TorchSide:
    """The torch twin (`torch_ref`), given the scratch side's initial weights when `state` is given."""

    name = "torch"

    def __init__(self, spec: Spec, state: dict[str, np.ndarray] | None = None) -> None:
        import torch

        import torch_ref

        self.torch = torch
        self.module = torch_ref.build_model(spec.model)
        if state is not None:
            torch_ref.load_from_numpy(self.module, state)
        self.loss_fn = torch_ref.build_loss(spec.model)
        self.optimizer = torch_ref.build_optimizer(spec.train, self.module)
        self.loss = None

    def batch(self, x: np.ndarray, y: np.ndarray):
        return self.torch.from_numpy(x), self.torch.from_numpy(y)  # shares the NumPy memory: no copy

    def forward(self, x, y) -> None:
        self.loss = self.loss_fn(self.module(x), y)

    def backward(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss.backward()

    def update(self) -> None:
        self.optimizer.step()

    def infer(self, x):
        with self.torch.inference_mode():
            return self.module(x)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def loss_value(self) -> float:
        return float(self.loss.item())

    def update_path(self) -> str:
        return f"torch {self.optimizer_implementation()}"

    def optimizer_implementation(self) -> str:
        """Which of torch's optimiser code paths `step()` runs with the default arguments."""
        from torch.optim.optimizer import _default_to_fused_or_foreach

        params = list(self.module.parameters())
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        return "fused" if fused else "foreach" if foreach else "single-tensor (for-loop)"


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
