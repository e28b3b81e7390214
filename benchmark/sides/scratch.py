"""The scratch side: a scratch_nn model with its loss, optimiser and schedule, all from one spec.

    side = ScratchSide(spec, rng)                # draws the initial weights from rng (default: the spec's seed)
    side = ScratchSide.around(model, train_spec)  # or trains a model you built (it is changed in place)
    side.forward(x, y); side.backward(); side.update()   # one training step in three phases (the bench times each)
    loss, correct = side.step(x, y, observe=False)        # the same step as the run takes it (train mode, memory)
    loss, probabilities = side.evaluate(x, y)             # eval mode, in chunks
    seen = side.probe(x, y, masks)                        # forward and backward keeping every intermediate

This is the one place the scratch training step is written for the benchmark: the run, the parity
engine (trajectories), the bench and sanity all use it. (`scratch_nn.train.train_step` is the
library's own plain loop, for users of scratch_nn alone.) The three phases do nothing but the
step, so that the bench's timed loops stay as lean as the library: no copies, no checks. L1
(`spec.train.l1`) is part of the step: its penalty is added to the loss in `forward` and its
gradient in `backward` (both do nothing when l1 is 0).

`probe` is the parity engine's view of one batch (`Pass`): every layer's output and input
gradient, the loss, the gradients, buffers and dropout masks, copied.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from benchmark.core.clocks import Stopwatch
from benchmark.core.memory import SideMemory
from benchmark.sides import probe
from scratch_nn.layers import Dropout
from scratch_nn.losses import build_loss, softmax
from scratch_nn.model import MLP
from scratch_nn.optim import build_optimizer
from scratch_nn.schedulers import build_scheduler
from scratch_nn.spec import Spec, TrainSpec
from scratch_nn.train import add_l1_gradient, l1_penalty


@dataclass
class Pass:
    """Everything one side computed for one batch, keyed by layer ("layers.0") or tensor name."""

    outputs: dict[str, np.ndarray]  # layer -> its output
    loss: np.ndarray  # scalar, l1 penalty included
    grads: dict[str, np.ndarray]  # parameter -> dL/dparameter, l1 * sign(W) included
    grad_inputs: dict[str, np.ndarray]  # layer -> dL/d(its input)
    grad_outputs: dict[str, np.ndarray]  # layer -> dL/d(its output), what its backward was given
    buffers: dict[str, np.ndarray]  # after the forward (batch norm updates them in training)
    masks: dict[str, np.ndarray]  # dropout layer -> the mask it applied
    grad_logits: np.ndarray  # dL/d(logits): what the loss's backward handed the last layer


@contextmanager
def watching(model, after_forward=None, before_backward=None, after_backward=None):
    """Within the block, every layer of `model` (inside blocks too) calls `after_forward(name, output)`
    after its forward, `before_backward(name, grad_out)` and `after_backward(name, grad_in)` around its
    backward: torch's forward hooks, for a scratch model. The layers' own `forward`/`backward` are
    shadowed by wrappers on the instances for the time of the block and restored after it, so the
    model runs its own code (a block routes the gradients itself) and the training loop pays nothing."""
    layers = model.named_layers()

    def wrap(name, layer):
        forward, backward = layer.forward, layer.backward

        def watched_forward(x):
            output = forward(x)
            if after_forward:
                after_forward(name, output)
            return output

        def watched_backward(grad_out, input_grad=True):
            if before_backward:
                before_backward(name, grad_out)
            grad_in = backward(grad_out, input_grad)
            if after_backward and grad_in is not None:
                after_backward(name, grad_in)
            return grad_in
        layer.forward, layer.backward = watched_forward, watched_backward

    for name, layer in layers:
        wrap(name, layer)
    try:
        yield
    finally:
        for _, layer in layers:
            del layer.forward, layer.backward  # the class's methods again


def scratch_pass(model, x: np.ndarray, y: np.ndarray, l1: float = 0.0, masks: dict | None = None) -> Pass:
    """Forward and backward of a scratch model (`model.forward`/`backward` themselves), keeping
    copies of every layer's output, input gradient and output gradient, blocks' inner layers
    included (`watching`). `masks` are injected into the dropout layers by name."""
    if x.dtype != model.dtype:
        raise ValueError(f"x has dtype {x.dtype}, the model is {model.dtype}; convert with x.astype(np.{model.dtype})")
    loss_fn, layers = build_loss(model.spec), model.named_layers()
    for name, layer in layers:
        if name in (masks or {}):
            layer.next_mask = masks[name]
    outputs, grad_inputs, grad_outputs = {}, {}, {}
    # copies: layers may reuse their arrays; keep what was handed on now
    with watching(model, lambda name, output: outputs.__setitem__(name, output.copy()),
                  lambda name, grad: grad_outputs.__setitem__(name, grad.copy()),
                  lambda name, grad: grad_inputs.__setitem__(name, grad.copy())):
        logits = model.forward(x)
        loss = loss_fn.forward(logits, y) + l1_penalty(model, l1)
        grad_logits = loss_fn.backward()
        model.backward(grad_logits.copy())
    add_l1_gradient(model, l1)
    grads = {name: grad.copy() for name, grad in model.named_gradients()}
    used = {name: layer.mask for name, layer in layers if isinstance(layer, Dropout) and layer.training}
    return Pass(outputs, np.asarray(loss), grads, grad_inputs, grad_outputs,
                {name: value.copy() for name, value in model.named_buffers()}, used, grad_logits)


class ScratchSide:
    """The scratch model with its loss, optimiser and schedule, all from the spec."""

    name = "scratch"

    def __init__(self, spec: Spec, rng: np.random.Generator | None = None, *, model=None) -> None:
        """Build `spec.model` from `rng` (default: a generator of `spec.train.seed`), or take `model`."""
        self.instrumentation = Stopwatch()  # the run's looking inside, kept out of the training time
        self.memory = SideMemory(self.instrumentation)
        with self.memory:
            if model is None:
                model = MLP(spec.model, np.random.default_rng(spec.train.seed) if rng is None else rng)
            self.model = model
            self.loss_fn = build_loss(spec.model)
            self.optimizer = build_optimizer(spec.train, dict(model.named_parameters()))
            self.scheduler = build_scheduler(spec.train, self.optimizer)
        self.grads = dict(model.named_gradients())  # the layers' live gradient arrays, filled by backward
        self.l1 = spec.train.l1
        self.diagnostics: dict = {}
        self.logits, self.loss, self.penalty = None, None, 0.0

    @classmethod
    def around(cls, model, train_spec: TrainSpec) -> ScratchSide:
        """A side that trains `model` itself (not a copy) with the optimiser of `train_spec`."""
        return cls(Spec(name="model", model=model.spec, train=train_spec), model=model)

    # -- the training step, in the three phases the bench times ------------------------------

    def batch(self, x: np.ndarray, y: np.ndarray):
        """The side's own array type: NumPy's."""
        return x, y

    def forward(self, x: np.ndarray, y: np.ndarray, observe: bool = False) -> None:
        """Logits and loss of (x, y) in the current mode; `observe` keeps each layer's unit statistics."""
        self.logits = self._forward_observed(x) if observe else self.model.forward(x)
        self.loss = self.loss_fn.forward(self.logits, y)
        self.penalty = l1_penalty(self.model, self.l1)

    def backward(self) -> None:
        """Gradients of the last forward's loss (the data's own gradient is not needed), L1's added."""
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        add_l1_gradient(self.model, self.l1)

    def update(self) -> None:
        self.optimizer.step(self.grads)

    def loss_value(self) -> float:
        """The last forward's loss, the L1 penalty included."""
        return float(self.loss) + self.penalty

    def step(self, x: np.ndarray, y: np.ndarray, observe: bool = False) -> tuple[float, int]:
        """One training step in train mode; returns the loss (L1 term included) and the number of
        correct argmaxes. Memory is sampled at the step's high points (inside `with side.memory:`)."""
        self.model.train()
        self.forward(x, y, observe)
        self.memory.sample()
        self.backward()
        self.memory.sample()
        if observe:
            with self.instrumentation:
                before = self.weights()
        self.update()
        if observe:
            with self.instrumentation:
                self.diagnostics["parameters"] = probe.parameter_rows(
                    before, dict(self.model.named_parameters()), self.grads)
        return self.loss_value(), int(np.count_nonzero(self.logits.argmax(axis=1) == y))

    def _forward_observed(self, x: np.ndarray) -> np.ndarray:
        """`model.forward`, keeping the activation statistics of each layer (inside blocks too)."""
        units, kinds = [], {entry.name: entry.spec.type for entry in self.model.spec.entries}

        def observe(name, output):
            with self.instrumentation:
                stats = probe.unit_stats(kinds[name], output)
                if not (np.isnan(stats["dead_fraction"]) and np.isnan(stats["saturated_fraction"])):
                    units.append({"layer": name, **stats})
        with watching(self.model, observe):
            logits = self.model.forward(x)
        self.diagnostics["units"] = units
        return logits

    # -- everything else ----------------------------------------------------------------------

    def probe(self, x: np.ndarray, y: np.ndarray, masks: dict | None = None) -> Pass:
        """Forward and backward of (x, y) with every intermediate kept (`scratch_pass`), L1 included;
        the gradients are left in the model, ready for `update()`."""
        return scratch_pass(self.model, x, y, self.l1, masks)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x)

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, np.ndarray]:
        """Eval-mode mean loss over (x, y) and the softmax probabilities (N, classes)."""
        self.model.eval()
        total, probabilities = 0.0, []
        for start in range(0, len(x), batch_size):
            logits = self.model.forward(x[start:start + batch_size])
            total += float(self.loss_fn.forward(logits, y[start:start + batch_size])) * len(logits)
            probabilities.append(softmax(logits))
        return total / len(x), np.concatenate(probabilities)

    def masks(self) -> dict[str, np.ndarray]:
        """The dropout masks of the last training forward, by layer name."""
        return {name: layer.mask for name, layer in self.model.named_layers() if isinstance(layer, Dropout)}

    def end_epoch(self) -> None:
        """The lr schedule's step (once per epoch, as torch's schedulers)."""
        if self.scheduler is not None:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.lr)

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.model.named_parameters()}

    def feature_maps(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Each conv2d layer's output (C, H, W) for one example (1, *input_shape), in eval mode."""
        self.model.eval()
        maps, kinds = {}, {entry.name: entry.spec.type for entry in self.model.spec.entries}

        def keep(name, output):
            if kinds[name] == "conv2d":
                maps[name] = np.array(output[0])
        with watching(self.model, keep):
            self.model.forward(image)
        self.model.train()
        return maps

    def state(self) -> dict[str, np.ndarray]:
        """Parameters, optimiser states ("layers.0.weight.exp_avg"), buffers and "lr", copied."""
        state = {}
        for name, value in self.model.named_parameters():
            state[name] = value.copy()
            state.update({f"{name}.{key}": np.array(entry) for key, entry in self.optimizer.state.get(name, {}).items()
                          if entry is not None})
        state.update({name: value.copy() for name, value in self.model.named_buffers()})
        state["lr"] = np.array(self.optimizer.lr)
        return state

    def update_path(self) -> str:
        """Which code runs the optimiser's update: "openblas (flat)", "numpy (per tensor)", ..."""
        return self.optimizer.update_path
