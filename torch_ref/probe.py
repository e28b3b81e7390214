"""One training-mode forward and backward of a TorchMLP that keeps every intermediate, as NumPy.

    seen = forward_backward(module, loss_fn, x, y, l1=0.0, masks={"layers.3": mask})
    seen.outputs["layers.0"]      # the output of layer 0 (its pre-activations, for a Linear)
    seen.grad_inputs["layers.2"]  # dL/d(input of layer 2)
    seen.grads["layers.0.weight"], seen.loss, seen.buffers["layers.1.running_mean"]

Forward hooks record each layer's input and output and call `retain_grad()` on them, so that after
`loss.backward()` their `.grad` holds the gradient with respect to them. This is how the parity
engine looks inside the torch side without changing the module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from torch_ref.model import named_layers, set_dropout_masks
from torch_ref.training import l1_penalty


@dataclass
class Recorded:
    """What one forward/backward computed, copied to NumPy."""

    outputs: dict[str, np.ndarray]  # layer -> its output
    loss: np.ndarray  # scalar, l1 penalty included
    grads: dict[str, np.ndarray]  # parameter -> its .grad
    grad_inputs: dict[str, np.ndarray]  # layer -> dL/d(its input)
    buffers: dict[str, np.ndarray]  # after the forward (batch norm updates its running statistics)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().copy()


def forward_backward(module: nn.Module, loss_fn: nn.Module, x: np.ndarray, y: np.ndarray,
                     l1: float = 0.0, masks: dict[str, np.ndarray] | None = None) -> Recorded:
    """Run loss_fn(module(x), y) + l1_penalty(module, l1) forward and backward (`.grad` is reset
    first, and left holding this batch's gradients, ready for `optimizer.step()`)."""
    set_dropout_masks(module, masks or {})
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(name: str):
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            inputs[0].retain_grad()  # the first layer's input is x itself, a leaf that requires grad
            output.retain_grad()
            seen[name] = (inputs[0], output)
        return hook

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in named_layers(module)]
    try:
        logits = module(torch.from_numpy(x.copy()).requires_grad_())
    finally:
        for handle in handles:
            handle.remove()
    loss = loss_fn(logits, torch.from_numpy(y)) + l1_penalty(module, l1)
    module.zero_grad(set_to_none=True)
    loss.backward()
    return Recorded(outputs={name: _numpy(output) for name, (_, output) in seen.items()},
                    loss=_numpy(loss),
                    grads={name: _numpy(param.grad) for name, param in module.named_parameters()},
                    grad_inputs={name: _numpy(inputs.grad) for name, (inputs, _) in seen.items()},
                    buffers={name: _numpy(value) for name, value in module.named_buffers()})
