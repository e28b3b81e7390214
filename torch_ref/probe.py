"""One training-mode forward and backward of a TorchMLP that keeps every intermediate, as NumPy.

    seen = forward_backward(module, loss_fn, x, y, l1=0.0, masks={"layers.3": mask})
    seen.outputs["layers.0"]      # the output of layer 0 (its pre-activations, for a Linear)
    seen.grad_inputs["layers.2"]  # dL/d(input of layer 2)
    seen.grads["layers.0.weight"], seen.loss, seen.buffers["layers.1.running_mean"]

Forward hooks record each layer's input and output and call `retain_grad()` on them, so that after
`loss.backward()` their `.grad` holds the gradient with respect to them. This is how the parity
engine looks inside the torch side without changing the module. Inside a block one tensor feeds
several layers (a residual block's input feeds its body and its shortcut, and is the body's first
layer's input too), so a pre-hook hands each layer its own alias of its input (`view_as`, no
copy): its `.grad` is what that layer alone sends back, as scratch's `backward` returns it.
"""
from __future__ import annotations

import copy
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
    grad_logits: np.ndarray  # dL/d(logits): what the loss's backward hands the last layer


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().copy()


def forward_backward(module: nn.Module, loss_fn: nn.Module, x: np.ndarray, y: np.ndarray,
                     l1: float = 0.0, masks: dict[str, np.ndarray] | None = None,
                     nudges: dict[str, np.ndarray] | None = None) -> Recorded:
    """Run loss_fn(module(x), y) + l1_penalty(module, l1) forward and backward (`.grad` is reset
    first, and left holding this batch's gradients, ready for `optimizer.step()`).

    `nudges` ({"layers.1": delta}) adds a constant to a layer's input before it runs: the parity
    engine moves a few units that lie within rounding of a kink (ReLU's 0) to the side the scratch
    model took. The gradient flows through unchanged (d(z + delta)/dz = 1)."""
    set_dropout_masks(module, masks or {})
    layers = dict(named_layers(module))
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(name: str):
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            inputs[0].retain_grad()  # the first layer's input is x itself, a leaf that requires grad
            output.retain_grad()
            seen[name] = (inputs[0], output)
        return hook

    def nudger(delta: np.ndarray):
        def pre_hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (inputs[0] + torch.from_numpy(delta), *inputs[1:])
        return pre_hook

    def own_input(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (inputs[0].view_as(inputs[0]), *inputs[1:])  # a tensor of this layer's own (see above)

    handles = [layers[name].register_forward_pre_hook(nudger(np.array(delta)))
               for name, delta in (nudges or {}).items()]
    handles += [layer.register_forward_pre_hook(own_input) for layer in layers.values()]
    handles += [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        logits = module(torch.from_numpy(x.copy()).requires_grad_())
    finally:
        for handle in handles:
            handle.remove()
    logits.retain_grad()
    loss = loss_fn(logits, torch.from_numpy(y))
    if l1:  # the penalty's abs and sum over every weight cost as much as a small model's step
        loss = loss + l1_penalty(module, l1)
    module.zero_grad(set_to_none=True)
    loss.backward()
    return Recorded(outputs={name: _numpy(output) for name, (_, output) in seen.items()},
                    loss=_numpy(loss),
                    grads={name: _numpy(param.grad) for name, param in module.named_parameters()},
                    grad_inputs={name: _numpy(inputs.grad) for name, (inputs, _) in seen.items()},
                    buffers={name: _numpy(value) for name, value in module.named_buffers()},
                    grad_logits=_numpy(logits.grad))


def each_layer_alone(module: nn.Module, loss_fn: nn.Module, inputs: dict[str, np.ndarray],
                     grad_outs: dict[str, np.ndarray], logits: np.ndarray, y: np.ndarray, l1: float = 0.0,
                     masks: dict[str, np.ndarray] | None = None) -> Recorded:
    """Every operation of a pass on its own, from given inputs: layer "layers.i" of (a copy of)
    `module` runs forward on inputs["layers.i"] and backward from grad_outs["layers.i"], and the loss
    runs on `logits`. Given one side's own intermediates, in float64, this is what each of that
    side's operations should have computed from what it was handed: an error made upstream is not
    counted again downstream. The parity engine uses it to tell an error a tensor's own operation
    makes from one it inherits (benchmark.parity.engine.explain_locally)."""
    module = copy.deepcopy(module)
    set_dropout_masks(module, masks or {})
    outputs, grad_inputs, grads = {}, {}, {}
    weight_layers = dict(module.weight_layers())
    for name, layer in named_layers(module):
        x = torch.from_numpy(np.array(inputs[name])).requires_grad_()
        output = layer(x)
        objective = (output * torch.from_numpy(np.array(grad_outs[name]))).sum()
        if l1 and name in weight_layers:  # the l1 penalty's share of this layer's weight gradient
            objective = objective + l1 * layer.weight.abs().sum()
        objective.backward()
        outputs[name], grad_inputs[name] = _numpy(output), _numpy(x.grad)
        grads.update({f"{name}.{key}": _numpy(param.grad) for key, param in layer.named_parameters()})
    scores = torch.from_numpy(np.array(logits)).requires_grad_()
    loss = loss_fn(scores, torch.from_numpy(y))
    loss.backward()
    if l1:
        with torch.no_grad():
            loss = loss + l1_penalty(module, l1)
    return Recorded(outputs, _numpy(loss), grads, grad_inputs,
                    {name: _numpy(value) for name, value in module.named_buffers()}, _numpy(scores.grad))
