"""More of the mistakes learners make, each told from the twin's own intermediates (benchmark.check.diagnose
calls these before it falls back to "the gradient is wrong: cosine ..."):

    wrong_axis_words     a bias gradient of one number per example: summed over the units, not the batch
    zero_words           a gradient of zeros where the right one is not
    wrong_input_words    a weight gradient a.T @ d with another layer's input a (the right one is the
                         layer's own input): dW = x.T @ delta with the wrong layer's x
    overflow_words       their loss at the same weights with every output score raised by a constant
                         (the last bias + SHIFT): softmax and cross-entropy do not change (softmax(z + c)
                         = softmax(z)), but exp(z) without the max shift overflows to inf and the loss to nan
    label_hint           their code raised a broadcasting error: svt's y are int labels (N,), not one-hot

A layer "layers.k" of the twin: its input is x (k = 0) or the output of "layers.k-1"; the gradient
at its output d is the gradient at the input of "layers.k+1", or grad_logits for the last layer;
its weight gradient (out, in) is d.T @ input (torch's layout) and its bias gradient d.sum(axis=0).
"""
from __future__ import annotations

import numpy as np

from benchmark.check.mapping import to_their_layout

SHIFT = 1000.0  # exp(1000) overflows float64 (past ~709) and float32 (past ~88)


def wrong_axis_words(theirs: str, their_shape: tuple, grad: np.ndarray, batch: int) -> str | None:
    """A gradient with one number per example (size N) where the parameter has another size."""
    if grad.size != batch or int(np.prod(their_shape)) == batch or len(their_shape) > 2 or (
            len(their_shape) == 2 and min(their_shape) > 1):
        return None
    return (f"{theirs}'s gradient has shape {grad.shape}, one number per example (the batch has {batch}), but "
            f"{theirs} is {tuple(their_shape)}: summed over the wrong axis, the units instead of the examples; "
            "a bias gradient sums over the batch (rows: d.sum(axis=0); columns: d.sum(axis=1, keepdims=True))")


def zero_words(theirs: str, grad: np.ndarray, right: np.ndarray) -> str | None:
    if np.any(grad) or not np.any(right):
        return None
    return (f"{theirs}'s gradient is all zeros where the right one is not (norm {np.linalg.norm(right):.3g}): "
            "nothing reaches it (a gradient never filled in, or multiplied by a mask that is always 0?)")


def layer_io(recorded, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each twin layer's (input, gradient at its output) (module docstring)."""
    names = list(recorded.outputs)
    inputs = [x] + [recorded.outputs[name] for name in names[:-1]]
    grad_outs = [recorded.grad_inputs[name] for name in names[1:]] + [recorded.grad_logits]
    return {name: (layer_input, grad_out) for name, layer_input, grad_out in zip(names, inputs, grad_outs)}


def wrong_input_words(row, rows, grad: np.ndarray, recorded, x: np.ndarray, model_spec, dtype: str) -> str | None:
    """Their weight gradient is d.T @ a (in their layout) with a the input of another weight layer."""
    from benchmark.check.diagnose import fit_factor

    if x is None or len(row.twin_shape) != 2 or grad.ndim != 2:  # (another width of input: another shape too)
        return None
    io = layer_io(recorded, x)
    grad_out = io[row.layer][1]
    weights = {other.layer: other.theirs for other in rows if len(other.twin_shape) == 2}
    for layer, theirs in weights.items():
        candidate = io[layer][0]
        if layer == row.layer:
            continue
        wrong = to_their_layout(row, grad_out.T @ candidate)
        if wrong.shape == grad.shape and fit_factor(grad, wrong, dtype) is not None:
            return (f"{row.theirs}'s gradient is computed with {theirs}'s input ({feeds(layer, model_spec)}) instead "
                    f"of its own ({feeds(row.layer, model_spec)}): in dW = aᵀ·delta (or delta·aᵀ), a must be the "
                    "activation that feeds this layer")
    return None


def feeds(layer: str, model_spec) -> str:
    """What feeds twin layer "layers.k": "x, the network's input" or "the output of layers.3, sigmoid"."""
    index = int(layer.rpartition(".")[2])
    return "x, the network's input" if index == 0 else \
        f"the output of layers.{index - 1}, {model_spec.layers[index - 1].type}"


def overflow_words(model, rows, declaration, x: np.ndarray, y: np.ndarray, loss: float) -> str | None:
    """Their loss with the last layer's bias raised by SHIFT (module docstring), under cross_entropy, when
    their loss `loss` at the weights themselves is finite."""
    index = {row.theirs: int(row.layer.rpartition(".")[2]) for row in rows}
    last_layer = max(index.values())
    last = next((row for row in rows if index[row.theirs] == last_layer and len(row.twin_shape) == 1), None)
    if declaration.loss != "cross_entropy" or last is None or not np.isfinite(loss):
        return None  # a loss not finite at the weights themselves is the loss finding's, not overflow's
    from benchmark.check.learner import TheirError

    bias = model.parameters()[last.theirs]
    model.set_parameters({last.theirs: bias + SHIFT})
    try:
        shifted = model.loss_and_grads(x.copy(), y)["loss"]
        if np.isfinite(shifted) and abs(shifted - loss) <= 1e-2 * max(abs(loss), 1.0):
            return None
        outcome = f"your loss is {shifted:.6g} (instead of {loss:.6g})"
    except TheirError as error:  # an assert on the loss, a check of their own
        outcome = f"your loss_and_grads raises {error.summary}"
    finally:
        model.set_parameters({last.theirs: bias})
    return (f"{outcome} when every output score is raised by "
            f"{SHIFT:g} ({last.theirs} + {SHIFT:g}), which changes neither softmax nor the loss: exp overflows; "
            "subtract each row's largest score before exp (softmax(z) = exp(z - max z) / sum), or use log-sum-exp")


def label_hint(summary: str) -> str:
    """A hint for an error in loss_and_grads that may come from labels taken for one-hot vectors."""
    if any(word in summary for word in ("broadcast", "mismatch", "shape", "dimension", "out of bounds")):
        return ("; svt passes y as int labels of shape (N,); if your code wants one-hot rows (N, 10), "
                "convert in the model file: np.eye(10)[y] (columns: np.eye(10)[y].T)")
    return ""
