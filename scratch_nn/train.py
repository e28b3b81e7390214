"""One training step of the scratch MLP, and the L1 penalty a spec can ask for (`TrainSpec.l1`).

    loss, logits = train_step(model, loss_fn, optimizer, x, y, l1=0.0)

L1 adds  l1 * sum |W|  over the weights of the weight layers the spec names (its linear layers; not
biases, not batch-norm: `Sequential.weight_layers`) to the loss, and its gradient  l1 * sign(W)  to
those weights' gradients, after the backward pass.
torch_ref adds the same term to the torch loss; autograd's gradient of |w| is sign(w) too, with
sign(0) = 0.

`train_step` is the library's own plain training loop, for users of scratch_nn alone. The
benchmark does not call it: its one scratch training step (for the run, the parity engine, the
bench and sanity) is `benchmark.sides.scratch.ScratchSide`, which computes the same step in
phases the bench can time, and the same L1 through the two functions here.
"""
from __future__ import annotations

import numpy as np


def l1_penalty(model, l1: float) -> float:
    """l1 * sum |W| over the model's weight layers (0.0 when l1 is 0, without touching them)."""
    if not l1:
        return 0.0
    return l1 * sum(float(np.abs(layer.params["weight"]).sum()) for _, layer in model.weight_layers())


def add_l1_gradient(model, l1: float) -> None:
    """grad_W += l1 * sign(W) for every weight layer's weight, in place (after `model.backward`)."""
    if not l1:
        return
    for _, layer in model.weight_layers():
        layer.grads["weight"] += l1 * np.sign(layer.params["weight"])


def train_step(model, loss_fn, optimizer, x: np.ndarray, y: np.ndarray,
               l1: float = 0.0) -> tuple[float, np.ndarray]:
    """Forward, loss (+ L1), backward (+ L1's gradient), optimiser step. Returns the loss and the
    logits, both from before the update."""
    logits = model.forward(x)
    loss = float(loss_fn.forward(logits, y)) + l1_penalty(model, l1)
    model.backward(loss_fn.backward(), input_grad=False)
    add_l1_gradient(model, l1)
    optimizer.step(dict(model.named_gradients()))
    return loss, logits
