"""The two sides of a comparison run, stepped in lockstep: the scratch MLP and its torch twin.

    scratch = ScratchSide(spec, rng)               # draws the initial weights from rng
    torch_side = TorchSide(spec, scratch)          # copies them, exactly
    loss_s, correct_s = scratch.step(x, y)         # the dropout masks come from rng ...
    loss_t, correct_t = torch_side.step(x, y, scratch.masks())   # ... and are applied on torch too

Both sides offer the same small interface, so the run loop treats them alike: `step`, `evaluate`,
`end_epoch`, `weights`, `memory` (a `benchmark.core.memory.SideMemory` around its own code), and, on
the steps where the run looks inside, `observe=True`, after which `diagnostics` holds
per-parameter gradient and weight norms, update/weight ratios, and per activation layer the
fraction of dead ReLU units and of saturated sigmoid/tanh outputs. All that observing (and the
memory accounting) runs inside the side's `instrumentation` stopwatch, which the run subtracts
from the step's time: the training seconds it reports are the training alone.
"""
from __future__ import annotations

import numpy as np

from benchmark.core.clocks import Stopwatch
from benchmark.core.memory import SideMemory
from scratch_nn.losses import build_loss, softmax
from scratch_nn.model import MLP
from scratch_nn.optim import build_optimizer
from scratch_nn.schedulers import build_scheduler
from scratch_nn.spec import Spec
from scratch_nn.train import add_l1_gradient, l1_penalty

SIGMOID_TAIL = 0.01  # a sigmoid output below 0.01 or above 0.99 is saturated (slope < 0.01)
TANH_TAIL = 0.99     # a tanh output beyond +-0.99 is saturated (slope < 0.02)


def unit_stats(kind: str, output: np.ndarray) -> dict:
    """Dead fraction (relu: units never positive over the batch) and saturated fraction (sigmoid,
    tanh: outputs in the flat tails) of one activation layer's (N, units) output, `kind` being the
    layer's type in the spec's list; NaN where the statistic does not apply to that layer."""
    dead = float(np.mean(np.all(output <= 0, axis=0))) if kind == "relu" else np.nan
    if kind == "sigmoid":
        saturated = float(np.mean((output < SIGMOID_TAIL) | (output > 1 - SIGMOID_TAIL)))
    elif kind == "tanh":
        saturated = float(np.mean(np.abs(output) > TANH_TAIL))
    else:
        saturated = np.nan
    return {"activation": kind, "dead_fraction": dead, "saturated_fraction": saturated}


def norm(array: np.ndarray) -> float:
    """||array|| in float64, by NumPy's own (single-threaded) sum: `np.linalg.norm` calls BLAS,
    whose OpenBLAS threads then spin for 0.1 s and slowed the torch steps after it (benchmark.core.clocks)."""
    return float(np.sqrt(np.sum(np.square(array, dtype=np.float64))))


def parameter_rows(before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                   grads: dict[str, np.ndarray]) -> list[dict]:
    """Per parameter: ||grad||, ||w|| and ||w_after - w_before|| / ||w_before|| (in float64)."""
    rows = []
    for name, weight in before.items():
        weight_norm = norm(weight)
        update = norm(after[name].astype(np.float64) - weight)
        rows.append({"parameter": name, "grad_norm": norm(grads[name]),
                     "weight_norm": weight_norm, "update_ratio": update / weight_norm if weight_norm else np.nan})
    return rows


class ScratchSide:
    """The scratch MLP with its loss, optimiser and schedule, all from the spec."""

    name = "scratch"

    def __init__(self, spec: Spec, rng: np.random.Generator) -> None:
        self.instrumentation = Stopwatch()  # the run's looking inside, kept out of the training time
        self.memory = SideMemory(self.instrumentation)
        with self.memory:
            self.model = MLP(spec.model, rng)
            self.loss_fn = build_loss(spec.model)
            self.optimizer = build_optimizer(spec.train, dict(self.model.named_parameters()))
            self.scheduler = build_scheduler(spec.train, self.optimizer)
        self.l1 = spec.train.l1
        self.diagnostics: dict = {}

    def step(self, x: np.ndarray, y: np.ndarray, observe: bool = False) -> tuple[float, int]:
        """One training step; returns the loss (L1 term included) and the number of correct argmaxes."""
        self.model.train()
        logits = self._forward_observed(x) if observe else self.model.forward(x)
        loss = float(self.loss_fn.forward(logits, y)) + l1_penalty(self.model, self.l1)
        self.memory.sample()
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        self.memory.sample()
        add_l1_gradient(self.model, self.l1)
        grads = dict(self.model.named_gradients())
        if observe:
            with self.instrumentation:
                before = self.weights()
        self.optimizer.step(grads)
        if observe:
            with self.instrumentation:
                self.diagnostics["parameters"] = parameter_rows(before, dict(self.model.named_parameters()), grads)
        return loss, int(np.count_nonzero(logits.argmax(axis=1) == y))

    def _forward_observed(self, x: np.ndarray) -> np.ndarray:
        """`model.forward`, layer by layer, keeping the activation statistics of each layer."""
        units = []
        hidden = x
        for (name, layer), layer_spec in zip(self.model.named_layers(), self.model.spec.layers):
            hidden = layer.forward(hidden)
            with self.instrumentation:
                stats = unit_stats(layer_spec.type, hidden)
                if not (np.isnan(stats["dead_fraction"]) and np.isnan(stats["saturated_fraction"])):
                    units.append({"layer": name, **stats})
        self.diagnostics["units"] = units
        return hidden

    def masks(self) -> dict[str, np.ndarray]:
        """The dropout masks of the last training forward, by layer name."""
        return {name: layer.mask for (name, layer), layer_spec in zip(self.model.named_layers(), self.model.spec.layers)
                if layer_spec.type == "dropout"}

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, np.ndarray]:
        """Eval-mode mean loss over (x, y) and the softmax probabilities (N, classes)."""
        self.model.eval()
        total, probabilities = 0.0, []
        for start in range(0, len(x), batch_size):
            logits = self.model.forward(x[start:start + batch_size])
            total += float(self.loss_fn.forward(logits, y[start:start + batch_size])) * len(logits)
            probabilities.append(softmax(logits))
        return total / len(x), np.concatenate(probabilities)

    def end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.lr)

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.model.named_parameters()}


class TorchSide:
    """The torch twin with torch's loss, optimiser and schedule, starting from the scratch weights."""

    name = "torch"

    def __init__(self, spec: Spec, scratch: ScratchSide) -> None:
        import torch

        import torch_ref

        self.torch = torch
        self.instrumentation = Stopwatch()  # the run's looking inside, kept out of the training time
        self.memory = SideMemory(self.instrumentation)
        with self.memory:
            self.module = torch_ref.build_model(spec.model)
            torch_ref.load_from_numpy(self.module, scratch.model.state_dict())
            self.loss_fn = torch_ref.build_loss(spec.model)
            self.optimizer = torch_ref.build_optimizer(spec.train, self.module)
            self.scheduler = torch_ref.build_scheduler(spec.train, self.optimizer)
        self.l1, self.set_masks, self.l1_penalty = spec.train.l1, torch_ref.set_dropout_masks, torch_ref.l1_penalty
        self.diagnostics: dict = {}

    def step(self, x: np.ndarray, y: np.ndarray, masks: dict[str, np.ndarray],
             observe: bool = False) -> tuple[float, int]:
        """One idiomatic torch training step with the scratch side's dropout masks."""
        torch = self.torch
        self.module.train()
        self.set_masks(self.module, masks)
        with self.instrumentation:
            handles = self._observe_units() if observe else []
        try:
            logits = self.module(torch.from_numpy(x))
        finally:
            with self.instrumentation:
                for handle in handles:
                    handle.remove()
        loss = self.loss_fn(logits, torch.from_numpy(y))
        if self.l1:
            loss = loss + self.l1_penalty(self.module, self.l1)
        self.memory.sample()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.memory.sample()
        if observe:
            with self.instrumentation:
                before = self.weights()
        self.optimizer.step()
        if observe:
            with self.instrumentation:
                grads = {name: param.grad.numpy() for name, param in self.module.named_parameters()}
                self.diagnostics["parameters"] = parameter_rows(before, self.weights(), grads)
        correct = int((logits.detach().argmax(dim=1) == torch.from_numpy(y)).sum())
        return float(loss.detach()), correct

    def _observe_units(self) -> list:
        """Forward hooks that record each activation layer's statistics into `diagnostics`."""
        units = self.diagnostics["units"] = []

        def hook(name, kind):
            def record(layer, inputs, output):
                with self.instrumentation:
                    stats = unit_stats(kind, output.detach().numpy())
                    if not (np.isnan(stats["dead_fraction"]) and np.isnan(stats["saturated_fraction"])):
                        units.append({"layer": name, **stats})
            return record

        return [layer.register_forward_hook(hook(f"layers.{index}", layer_spec.type))
                for index, (layer, layer_spec) in enumerate(zip(self.module.layers, self.module.spec.layers))]

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, np.ndarray]:
        torch = self.torch
        self.module.eval()
        total, probabilities = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                logits = self.module(torch.from_numpy(x[start:start + batch_size]))
                targets = torch.from_numpy(y[start:start + batch_size])
                total += float(self.loss_fn(logits, targets)) * len(logits)
                probabilities.append(torch.softmax(logits, dim=1).numpy())
        return total / len(x), np.concatenate(probabilities)

    def end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def weights(self) -> dict[str, np.ndarray]:
        return {name: param.detach().numpy().copy() for name, param in self.module.named_parameters()}


def drift_rows(scratch: dict[str, np.ndarray], torch: dict[str, np.ndarray]) -> list[dict]:
    """||w_scratch - w_torch|| / ||w_torch|| per parameter, and over all of them ("all")."""
    rows, squared_diff, squared_norm = [], 0.0, 0.0
    for name, reference in torch.items():
        diff = float(np.sum((scratch[name].astype(np.float64) - reference) ** 2))
        norm = float(np.sum(reference.astype(np.float64) ** 2))
        squared_diff, squared_norm = squared_diff + diff, squared_norm + norm
        rows.append({"parameter": name, "drift": np.sqrt(diff / norm) if norm else np.sqrt(diff)})
    rows.append({"parameter": "all", "drift": np.sqrt(squared_diff / squared_norm) if squared_norm else 0.0})
    return rows
