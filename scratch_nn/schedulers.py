"""Learning-rate schedulers with torch.optim.lr_scheduler's rules, names and defaults.

    scheduler = build_scheduler(train_spec, optimizer)   # None for schedule = "constant"
    for epoch in range(epochs):
        ...                                              # optimizer.step(grads) per batch
        if scheduler: scheduler.step()                   # once per epoch, as torch's

A scheduler sets the plain attribute `optimizer.lr` (one parameter group).
"""
from __future__ import annotations

import math

from scratch_nn.optim import Optimizer
from scratch_nn.spec import SCHEDULES, TrainSpec


def _check_positive_integer(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be an integer >= 1)")


class LRScheduler:
    """Sets `optimizer.lr` once per epoch, as torch's schedulers do with their recursive `get_lr`.

    Made at epoch 0 (`last_epoch = 0`, lr unchanged); each `step()` advances `last_epoch` by one and
    sets the optimizer's lr from its current lr. `get_last_lr()` is a one-element list, as in torch.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lrs = [optimizer.lr]
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def get_lr(self) -> float:
        """The lr for epoch `last_epoch`, from the optimizer's current lr."""
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)


class StepLR(LRScheduler):
    """Multiply lr by gamma every step_size epochs: lr = base_lr * gamma**(epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        _check_positive_integer(step_size, "step_size")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self) -> float:
        if self.last_epoch % self.step_size != 0:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from base_lr to eta_min over T_max epochs, computed recursively as torch does.

        lr_t = eta_min + (lr_{t-1} - eta_min) * (1 + cos(pi t / T_max)) / (1 + cos(pi (t - 1) / T_max))

    approximating eta_min + (base_lr - eta_min) * (1 + cos(pi t / T_max)) / 2 (torch's closed form,
    which differs in the last bits). Past T_max the lr rises again (period 2 T_max); at the epochs
    where the ratio's denominator is 0, torch adds (base_lr - eta_min) * (1 - cos(pi / T_max)) / 2.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (torch)
        _check_positive_integer(T_max, "T_max")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr, epoch, eta_min, T_max = self.optimizer.lr, self.last_epoch, self.eta_min, self.T_max
        if (epoch - 1 - T_max) % (2 * T_max) == 0:
            return lr + (self.base_lrs[0] - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
        return ((1 + math.cos(math.pi * epoch / T_max)) / (1 + math.cos(math.pi * (epoch - 1) / T_max))
                * (lr - eta_min) + eta_min)


def build_scheduler(train_spec: TrainSpec, optimizer: Optimizer) -> LRScheduler | None:
    """The per-epoch scheduler: None ("constant"), StepLR ("step"), cosine over all epochs ("cosine")."""
    if train_spec.schedule == "constant":
        return None
    if train_spec.schedule == "step":
        return StepLR(optimizer, step_size=train_spec.step_size, gamma=train_spec.gamma)
    if train_spec.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=train_spec.epochs)
    raise ValueError(f"train.schedule: unknown schedule {train_spec.schedule!r}; "
                     f"allowed: {', '.join(SCHEDULES)}")


__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "build_scheduler"]
