"""Blocks: layers whose own lists hold layers. A residual block adds its body's output to its
shortcut's; a concat runs branches side by side and joins their channels. Each child is an ordinary
layer (it caches its own input), so a block's backward only routes gradients between them.

    Residual(body, shortcut=None)   y = body(x) + shortcut(x)      (shortcut None: the identity)
    Concat(branches)                y = cat([branch(x) for branch in branches], dim=1)

Names are torch's: `children()` gives ("body.0", layer), ("shortcut.0", layer), ("branches.1.0", layer),
so the model's parameter names are `layers.3.body.0.weight` and so on (scratch_nn.model).
"""
from __future__ import annotations

import numpy as np

from scratch_nn.layer import Layer


def run_forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer.forward(x)
    return x


def run_backward(layers: list[Layer], grad_out: np.ndarray, input_grad: bool) -> np.ndarray | None:
    """Backward through a list in reverse; the first layer returns dL/dx only if `input_grad`."""
    for layer in reversed(layers[1:]):
        grad_out = layer.backward(grad_out)
    return layers[0].backward(grad_out, input_grad=input_grad)


class Block(Layer):
    """A layer made of named lists of layers. It has no parameters of its own; its children do."""

    lists: dict[str, list[Layer]]

    def children(self) -> list[tuple[str, Layer]]:
        """("body.0", layer), ...: every layer of the block's lists, with its name relative to the block."""
        return [(f"{name}.{index}", layer) for name, layers in self.lists.items() for index, layer in enumerate(layers)]

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}".replace("\n", "\n  ") for name, layer in self.children()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class Residual(Block):
    """y = body(x) + shortcut(x), shortcut the identity when None (He et al. 2015, torchvision's BasicBlock
    without its final ReLU, which is the next layer of the list).

    Backward: the gradient that reaches the sum goes to both paths unchanged, dL/d(body(x)) =
    dL/d(shortcut(x)) = dL/dy, and the gradients that come back to x add up:
    dL/dx = body's backward(dL/dy) + shortcut's backward(dL/dy) (dL/dy itself for the identity).
    """

    def __init__(self, body: list[Layer], shortcut: list[Layer] | None = None) -> None:
        super().__init__()
        self.body, self.shortcut = list(body), (list(shortcut) if shortcut else None)
        self.lists = {"body": self.body} | ({"shortcut": self.shortcut} if self.shortcut else {})

    def _forward(self, x):
        out = run_forward(self.body, x) + (x if self.shortcut is None else run_forward(self.shortcut, x))
        return out, True  # the children cache what their backward needs

    def _backward(self, grad_out, cache, input_grad):
        grad_body = run_backward(self.body, grad_out, input_grad)
        grad_shortcut = grad_out if self.shortcut is None else run_backward(self.shortcut, grad_out, input_grad)
        return grad_body + grad_shortcut if input_grad else None


class Concat(Block):
    """y = cat([branch(x) for branch in branches], dim=1) (GoogLeNet's Inception module).

    Backward: dL/dy is sliced along the channels, branch b taking its own C_b channels, and the
    gradients the branches send back to x add up: dL/dx = sum_b branch_b's backward(dL/dy[:, slice_b]).
    """

    def __init__(self, branches: list[list[Layer]]) -> None:
        super().__init__()
        self.branches = [list(branch) for branch in branches]
        self.lists = {f"branches.{index}": branch for index, branch in enumerate(self.branches)}

    def _forward(self, x):
        outputs = [run_forward(branch, x) for branch in self.branches]
        return np.concatenate(outputs, axis=1), [output.shape[1] for output in outputs]

    def _backward(self, grad_out, channels, input_grad):
        ends = np.cumsum(channels)
        grads = [run_backward(branch, np.ascontiguousarray(grad_out[:, end - count:end]), input_grad)
                 for branch, count, end in zip(self.branches, channels, ends)]
        return sum(grads[1:], grads[0]) if input_grad else None
