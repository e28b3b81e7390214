"""The torch side: the `torch_ref` twin with torch's loss, optimiser and schedule, from the same spec.

    side = TorchSide(spec, scratch.model.state_dict())    # the scratch side's initial weights, exactly
    side = TorchSide(spec)                                # or torch's own init (the bench's memory run)
    x, y = side.batch(x_numpy, y_numpy)                   # tensors sharing the NumPy memory: no copy
    side.forward(x, y, masks); side.backward(); side.update()   # one training step in three phases
    loss, correct = side.step(x_numpy, y_numpy, masks, observe=False)   # the same step as the run takes it
    loss, probabilities = side.evaluate(x, y)             # eval mode, under inference_mode
    seen = side.probe(x, y, masks)                        # torch_ref.Recorded: every intermediate, in NumPy
    module = twin(scratch_model, "float64")               # just the module, as the parity engine needs it

Written the way torch's users write it: `model(x)`, `loss_fn(out, y)`,
`optimizer.zero_grad(set_to_none=True)`, `loss.backward()`, `optimizer.step()`, with torch's
default optimiser implementation. The dropout masks the scratch side drew are applied through
`torch_ref.set_dropout_masks`, so both sides drop the same units. torch is imported when a side is
built, not with this module, so that `svt --help` does not load it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmark.core.clocks import Stopwatch
from benchmark.core.memory import SideMemory
from benchmark.sides import probe
from scratch_nn.spec import ModelSpec, Spec


def twin_module(model_spec: ModelSpec, state: dict[str, np.ndarray] | None, dtype: str | None = None,
                training: bool = True):
    """The torch twin of `model_spec` in `dtype` (default: the spec's), holding `state` (a scratch
    `state_dict()`, floating-point entries cast to `dtype`) when given, in train or eval mode."""
    import torch_ref

    dtype = dtype or model_spec.dtype
    module = torch_ref.build_model(replace(model_spec, dtype=dtype))
    if state is not None:
        torch_ref.load_from_numpy(module, {key: value.astype(dtype, copy=False) if value.dtype.kind == "f" else value
                                           for key, value in state.items()})
    return module.train(training)


def twin(scratch_model, dtype: str | None = None):
    """A torch module with the scratch model's spec, weights, buffers and train/eval mode, in the
    model's dtype or in `dtype`."""
    return twin_module(scratch_model.spec, scratch_model.state_dict(), dtype, scratch_model.training)


class TorchSide:
    """The torch twin with torch's loss, optimiser and (with `scheduled`) schedule."""

    name = "torch"

    def __init__(self, spec: Spec, state: dict[str, np.ndarray] | None = None, *, dtype: str | None = None,
                 training: bool = True, scheduled: bool = True, loss_fn=None, probabilities=None) -> None:
        """`state`: the scratch side's `state_dict()` to start from. `scheduled=False` builds no lr
        scheduler (the bench times steps, and a torch scheduler wraps `optimizer.step` in a counter).
        `loss_fn` (output, targets) -> loss replaces the spec's loss, and `probabilities` (a function of
        the outputs) the softmax of `evaluate`: the twin of a learner's model (`svt run --model`)
        takes the loss the model file declares."""
        import torch

        import torch_ref

        self.torch, self.dtype = torch, dtype or spec.model.dtype
        self.instrumentation = Stopwatch()  # the run's looking inside, kept out of the training time
        self.memory = SideMemory(self.instrumentation)
        with self.memory:
            self.module = twin_module(spec.model, state, self.dtype, training)
            self.loss_fn = loss_fn or torch_ref.build_loss(spec.model)
            self.optimizer = torch_ref.build_optimizer(spec.train, self.module)
            self.scheduler = torch_ref.build_scheduler(spec.train, self.optimizer) if scheduled else None
        self.l1, self.set_masks, self.l1_penalty = spec.train.l1, torch_ref.set_dropout_masks, torch_ref.l1_penalty
        self.probabilities = probabilities or (lambda outputs: torch.softmax(outputs, dim=1))
        self.diagnostics: dict = {}
        self.logits, self.loss = None, None

    # -- the training step, in the three phases the bench times ------------------------------

    def batch(self, x: np.ndarray, y: np.ndarray):
        return self.torch.from_numpy(x), self.torch.from_numpy(y)  # shares the NumPy memory: no copy

    def forward(self, x, y, masks: dict[str, np.ndarray] | None = None, observe: bool = False) -> None:
        """Logits and loss (+ L1) of tensors (x, y), with the scratch side's dropout `masks` if given;
        `observe` records each activation layer's unit statistics through forward hooks."""
        if masks is not None:
            self.set_masks(self.module, masks)
        if observe:
            with self.instrumentation:
                handles = self._observe_units()
            try:
                self.logits = self.module(x)
            finally:
                with self.instrumentation:
                    for handle in handles:
                        handle.remove()
        else:
            self.logits = self.module(x)
        self.loss = self.loss_fn(self.logits, y)
        if self.l1:
            self.loss = self.loss + self.l1_penalty(self.module, self.l1)

    def backward(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss.backward()

    def update(self) -> None:
        self.optimizer.step()

    def loss_value(self) -> float:
        return float(self.loss.detach())

    def step(self, x: np.ndarray, y: np.ndarray, masks: dict[str, np.ndarray],
             observe: bool = False) -> tuple[float, int]:
        """One idiomatic torch training step in train mode with the scratch side's dropout masks;
        returns the loss and the number of correct argmaxes."""
        self.module.train()
        x, y = self.batch(x, y)
        self.forward(x, y, masks, observe)
        self.memory.sample()
        self.backward()
        self.memory.sample()
        if observe:
            with self.instrumentation:
                before = self.weights()
        self.update()
        if observe:
            with self.instrumentation:
                grads = {name: param.grad.numpy() for name, param in self.module.named_parameters()}
                self.diagnostics["parameters"] = probe.parameter_rows(before, self.weights(), grads)
        correct = int((self.logits.detach().argmax(dim=1) == y).sum())
        return self.loss_value(), correct

    def _observe_units(self) -> list:
        """Forward hooks that record each activation layer's statistics into `diagnostics`."""
        units = self.diagnostics["units"] = []

        def hook(name, kind):
            def record(layer, inputs, output):
                with self.instrumentation:
                    stats = probe.unit_stats(kind, output.detach().numpy())
                    if not (np.isnan(stats["dead_fraction"]) and np.isnan(stats["saturated_fraction"])):
                        units.append({"layer": name, **stats})
            return record

        import torch_ref

        return [layer.register_forward_hook(hook(name, entry.spec.type))  # every layer, inside blocks too
                for (name, layer), entry in zip(torch_ref.named_layers(self.module), self.module.spec.entries)]

    # -- everything else ----------------------------------------------------------------------

    def probe(self, x: np.ndarray, y: np.ndarray, masks: dict | None = None, nudges: dict | None = None):
        """Forward and backward of NumPy (x, y) with every intermediate recorded
        (`torch_ref.forward_backward`; `nudges` moves layer inputs, see there); the gradients are
        left in `.grad`, ready for `update()`."""
        import torch_ref

        return torch_ref.forward_backward(self.module, self.loss_fn, x, y, self.l1, masks, nudges)

    def infer(self, x):
        with self.torch.inference_mode():
            return self.module(x)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, np.ndarray]:
        """Eval-mode mean loss over NumPy (x, y) and the softmax probabilities (N, classes) (or what
        the `probabilities` given to the constructor makes of the outputs)."""
        torch = self.torch
        self.module.eval()
        total, probabilities = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                logits = self.module(torch.from_numpy(x[start:start + batch_size]))
                targets = torch.from_numpy(y[start:start + batch_size])
                total += float(self.loss_fn(logits, targets)) * len(logits)
                probabilities.append(self.probabilities(logits).numpy())
        return total / len(x), np.concatenate(probabilities)

    def end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def weights(self) -> dict[str, np.ndarray]:
        return {name: param.detach().numpy().copy() for name, param in self.module.named_parameters()}

    def feature_maps(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Each conv2d layer's output (C, H, W) for one example (1, *input_shape), in eval mode (forward hooks)."""
        import torch_ref

        maps, handles = {}, []
        for (name, layer), entry in zip(torch_ref.named_layers(self.module), self.module.spec.entries):
            if entry.spec.type == "conv2d":
                def keep(module, inputs, output, name=name):
                    maps[name] = output[0].detach().numpy().copy()
                handles.append(layer.register_forward_hook(keep))
        self.module.eval()
        try:
            self.infer(self.torch.from_numpy(image))
        finally:
            for handle in handles:
                handle.remove()
            self.module.train()
        return maps

    def state(self) -> dict[str, np.ndarray]:
        """Parameters, optimiser states, buffers and "lr", named as `ScratchSide.state` names them."""
        import torch_ref

        return torch_ref.training_state(self.module, self.optimizer)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Start from a scratch side's `state()`: parameters, optimiser states, buffers and lr."""
        import torch_ref

        torch_ref.load_training_state(self.module, self.optimizer, state)

    def update_path(self) -> str:
        return f"torch {self.optimizer_implementation()}"

    def optimizer_implementation(self) -> str:
        """Which of torch's optimiser code paths `step()` runs with the default arguments."""
        from torch.optim.optimizer import _default_to_fused_or_foreach

        params = list(self.module.parameters())
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        return "fused" if fused else "foreach" if foreach else "single-tensor (for-loop)"
