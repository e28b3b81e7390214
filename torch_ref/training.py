"""Loss, L1 penalty, optimiser and schedule of a spec, as torch's own classes with torch's names.

    loss_fn = build_loss(model_spec)                    # nn.CrossEntropyLoss or MSE on one-hot
    optimizer = build_optimizer(train_spec, module)     # torch.optim.SGD / Adam / AdamW / RMSprop
    scheduler = build_scheduler(train_spec, optimizer)  # StepLR / CosineAnnealingLR, or None
    loss = loss_fn(logits, targets) + l1_penalty(module, train_spec.l1)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratch_nn.spec import ModelSpec, TrainSpec


class OneHotMSELoss(nn.Module):
    """`nn.MSELoss` (mean over N * C) between the logits and the one-hot encoded class targets, or
    the real targets themselves (a fit: floating-point targets of the outputs' shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.mse = nn.MSELoss()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.is_floating_point():
            return self.mse(logits, targets)
        one_hot = F.one_hot(targets, num_classes=logits.shape[1]).to(logits.dtype)  # (N, C)
        return self.mse(logits, one_hot)


def build_loss(model_spec: ModelSpec) -> nn.Module:
    """`nn.CrossEntropyLoss(label_smoothing=...)`, `OneHotMSELoss()`, or for a fit `nn.L1Loss()` or
    `nn.HuberLoss(delta=...)`; all average over the batch given (reduction="mean")."""
    if model_spec.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=model_spec.label_smoothing)
    if model_spec.loss == "l1":
        return nn.L1Loss()
    if model_spec.loss == "huber":
        return nn.HuberLoss(delta=model_spec.huber_delta)
    return OneHotMSELoss()


def l1_penalty(module, l1: float) -> torch.Tensor:
    """`l1 * sum |W|` over the weights of the weight layers the spec names (`TorchSequential.weight_layers`:
    its linear and conv2d layers; not biases, not batch-norm), as on the scratch side."""
    total = sum(layer.weight.abs().sum() for _, layer in module.weight_layers())
    return l1 * total


def build_optimizer(train_spec: TrainSpec, module: nn.Module) -> torch.optim.Optimizer:
    """torch.optim's optimiser named by the spec, over all of `module`'s parameters."""
    t = train_spec
    params = module.parameters()
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, dampening=t.dampening,
                               weight_decay=t.weight_decay, nesterov=t.nesterov)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=t.lr, alpha=t.alpha, eps=t.eps,
                                   weight_decay=t.weight_decay, momentum=t.momentum)
    raise ValueError(f"unknown optimizer {t.optimizer!r}")  # spec validation makes this unreachable


def build_scheduler(train_spec: TrainSpec,
                    optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    """StepLR or CosineAnnealingLR (T_max = epochs), stepped once per epoch; None for "constant"."""
    if train_spec.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=train_spec.step_size, gamma=train_spec.gamma)
    if train_spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_spec.epochs)
    return None


def optimizer_state(optimizer: torch.optim.Optimizer, module: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The optimiser's per-parameter state by parameter name, as NumPy: {"layers.0.weight":
    {"momentum_buffer": ...}} with torch's state names (`step`, `exp_avg`, `exp_avg_sq`, `square_avg`,
    `momentum_buffer`). Entries torch keeps as None (SGD's buffer without momentum) are left out."""
    state = {}
    for name, param in module.named_parameters():
        entries = optimizer.state.get(param, {})
        state[name] = {key: value.detach().cpu().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
                       for key, value in entries.items() if value is not None}
    return state


def training_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Everything a step changes, by name: parameters ("layers.0.weight"), optimiser states
    ("layers.0.weight.exp_avg"), buffers ("layers.1.running_var") and "lr", as NumPy copies."""
    states = optimizer_state(optimizer, module)
    state = {}
    for name, param in module.named_parameters():
        state[name] = param.detach().numpy().copy()
        state.update({f"{name}.{key}": value for key, value in states[name].items()})
    state.update({name: value.detach().numpy().copy() for name, value in module.named_buffers()})
    state["lr"] = np.array(optimizer.param_groups[0]["lr"])
    return state


def load_training_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, np.ndarray]) -> None:
    """The inverse of `training_state`: set the parameters, the optimiser states, the buffers and the
    lr from `state` (the same names; values cast to the module's dtype), so that the next step
    starts from exactly that state. The parity engine uses it to start every compared step of a
    trajectory from the scratch side's state.

    A parameter whose state has no entries gets an empty torch state (torch then initialises it
    on the next step, as on the first). `step` becomes a 0-dim tensor of the default dtype, as
    torch creates it (torch/optim/adam.py `_init_group`: `torch.tensor(0.0, dtype=_get_scalar_dtype())`).
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(torch.from_numpy(np.array(state[name])))
            prefix = f"{name}."
            entries = {key[len(prefix):]: value for key, value in state.items()
                       if key.startswith(prefix) and "." not in key[len(prefix):]}
            optimizer.state[param] = {
                key: torch.tensor(float(value), dtype=torch.get_default_dtype()) if key == "step"
                else torch.from_numpy(np.array(value)).to(param.dtype) for key, value in entries.items()}
        for name, buffer in module.named_buffers():
            buffer.copy_(torch.from_numpy(np.array(state[name])))
    for group in optimizer.param_groups:
        group["lr"] = float(state["lr"])
