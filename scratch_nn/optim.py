"""Optimisers with torch.optim's update rules, names and defaults (schedulers: scratch_nn.schedulers).

Each optimiser holds the model's live parameter arrays (`params`, name -> array) and updates them
in place in `step(grads)`; `grads` has the same keys and is only read. `optimizer.state[name]` holds
torch's state names in the parameters' dtype (`step` is an int; torch keeps a tensor). There is one
parameter group: `optimizer.lr` is a plain attribute that schedulers set.

The arithmetic follows torch's single-tensor code paths (what torch runs on CPU) operation by
operation, in the parameters' dtype (hyper-parameters are Python floats, which NumPy applies in the
array's dtype). It agrees with torch to an ulp or two of each array's scale, not bit for bit: torch's
CPU kernels fuse `add(alpha=)`, `lerp_` and `addcmul_` into fused multiply-adds, and its vectorised
`sqrt` is not always correctly rounded; NumPy offers neither.

Steps allocate nothing (SGD's first step allocates the momentum buffer): each optimiser keeps two
scratch arrays per parameter and writes every intermediate into them with `out=` or in place.

When the parameters are consecutive views of one flat array, as an MLP keeps them, SGD applies its
update once to that whole array (scratch_nn.flat) instead of once per tensor: the rule is
elementwise, so the values are the same, and `state[name]` holds views of the whole-array state.
For a large net that update runs in OpenBLAS's level-1 routines on its threads instead of NumPy's
one-core ufuncs (scratch_nn.elementwise; `update_path` says which ran), fusing the multiply-adds
as torch does.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from scratch_nn.elementwise import NumpyOps, choose_ops
from scratch_nn.flat import FlatParameters, flat_array
from scratch_nn.spec import OPTIMIZERS, TrainSpec

Parameters = Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]  # dict or named_parameters()


def _check_at_least_zero(values: dict[str, float]) -> None:
    """torch's checks, in torch's order, with its messages ("Invalid learning rate: -1") plus the rule."""
    for description, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {description}: {value} (must be >= 0)")


def _add_scaled(grad: np.ndarray, param: np.ndarray, weight_decay: float, out: np.ndarray) -> np.ndarray:
    """out = grad + weight_decay * param (torch: grad.add(param, alpha=weight_decay)); returns out."""
    np.multiply(param, weight_decay, out=out)
    out += grad
    return out


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, work: np.ndarray) -> None:
    """start = start + weight * (end - start), in place, with torch's two branches of `lerp_`.

    `weight` must already be rounded to the arrays' dtype (torch rounds it before `weight - 1`).
    """
    np.subtract(end, start, out=work)
    if abs(weight) < 0.5:
        work *= weight
        start += work
    else:  # torch: end - (1 - weight) * (end - start), better conditioned for large weights
        work *= weight - 1.0
        np.add(end, work, out=start)


def _decay_add_square_(average: np.ndarray, decay: float, grad: np.ndarray, work: np.ndarray) -> None:
    """average = decay * average + ((1 - decay) * grad) * grad, in place (torch: mul_().addcmul_())."""
    average *= decay
    np.multiply(grad, 1 - decay, out=work)
    work *= grad
    average += work


def _live_parameters(params: Parameters) -> tuple[dict[str, np.ndarray], np.dtype]:
    """A new dict of the same live arrays, and their one floating dtype; ValueError otherwise."""
    params = dict(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list; give a dict name -> array")
    for name, param in params.items():
        if not isinstance(param, np.ndarray) or not np.issubdtype(param.dtype, np.floating):
            found = getattr(param, "dtype", type(param).__name__)
            raise ValueError(f"parameter {name!r} must be a floating-point NumPy array, got {found}")
    dtypes = sorted({str(param.dtype) for param in params.values()})
    if len(dtypes) > 1:
        raise ValueError(f"parameters must share one dtype, got {', '.join(dtypes)}")
    return params, next(iter(params.values())).dtype


def _scratch(param: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays like `param` for a step's intermediates (saves allocating them at every step)."""
    return np.empty_like(param), np.empty_like(param)


class Optimizer:
    """What every optimiser shares: the live `params`, `lr`, `state[name]` and the params' `dtype`."""

    def __init__(self, params: Parameters, lr: float) -> None:
        self.params, self.dtype = _live_parameters(params)
        self.lr = lr
        self.state: dict[str, dict] = {name: {} for name in self.params}
        self.update_path = "numpy (per tensor)"  # which code runs the update, as `svt bench` reports it

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum, dampening, Nesterov and L2 decay.

    For each step t = 1, 2, ... and each parameter theta with gradient g:
        g <- g + weight_decay * theta                              if weight_decay != 0
        b <- g (a copy; no dampening)                              if momentum != 0, t = 1
        b <- momentum * b + (1 - dampening) * g                    if momentum != 0, t > 1
        g <- g + momentum * b if nesterov else b                   if momentum != 0
        theta <- theta - lr * g
    """

    def __init__(self, params: Parameters, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False) -> None:
        _check_at_least_zero({"learning rate": lr, "momentum value": momentum,
                              "weight_decay value": weight_decay})
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        flat = flat_array(list(self.params.values()))
        self._flat = FlatParameters(self.params, flat) if flat is not None else None
        # A flat update of a large net runs on OpenBLAS's threads where it can (scratch_nn.elementwise)
        self._ops = choose_ops(self.dtype, flat.size) if self._flat else NumpyOps()
        self.update_path = f"{self._ops.name} ({'flat' if self._flat else 'per tensor'})"
        # Built once, so that a step looks nothing up but grads[name] (none when the update is flat).
        self._slots = [] if self._flat else [(name, param, self.state[name], *_scratch(param))
                                             for name, param in self.params.items()]

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        if self._flat is not None:
            flat = self._flat
            self._update(flat.gradient(grads), flat.param, flat.state, flat.decayed, flat.work)
            flat.publish(self.state)
            return
        for name, param, state, decayed, work in self._slots:
            self._update(grads[name], param, state, decayed, work)

    def _update(self, grad: np.ndarray, param: np.ndarray, state: dict, decayed: np.ndarray,
                work: np.ndarray) -> None:
        """The update rule above for one parameter (or all of them as one flat array), in torch's
        operations (torch/optim/sgd.py, _single_tensor_sgd) done by `self._ops`."""
        if self.weight_decay != 0:
            grad = self._ops.add(grad, param, self.weight_decay, out=decayed)
        if self.momentum != 0:
            grad = self._momentum_direction(grad, param, state, work)
        self._ops.add_(param, grad, -self.lr, work)  # grad may be `work` itself (nesterov): fine in place

    def _momentum_direction(self, grad: np.ndarray, param: np.ndarray, state: dict,
                            work: np.ndarray) -> np.ndarray:
        """Update the momentum buffer from `grad`; return the direction (the buffer, or nesterov's)."""
        ops, buffer = self._ops, state.get("momentum_buffer")
        if buffer is None:  # torch: the first buffer is a copy of the gradient, not dampened
            buffer = state["momentum_buffer"] = np.array(grad, dtype=param.dtype, copy=True)
        else:
            ops.mul_(buffer, self.momentum)
            ops.add_(buffer, grad, 1 - self.dampening, work)
        return ops.add(grad, buffer, self.momentum, out=work) if self.nesterov else buffer


class Adam(Optimizer):
    """Adam: bias-corrected moving averages of the gradient and of its square.

    For each step t = 1, 2, ... and each parameter theta with gradient g, (beta1, beta2) = betas:
        theta <- theta * (1 - lr * weight_decay)                   if decoupled_weight_decay (AdamW)
        g <- g + weight_decay * theta                              otherwise, if weight_decay != 0
        exp_avg    <- beta1 * exp_avg + (1 - beta1) * g            (torch: exp_avg.lerp_(g, 1 - beta1))
        exp_avg_sq <- beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom <- sqrt(exp_avg_sq) / sqrt(1 - beta2**t) + eps       (eps after the bias correction)
        theta <- theta - (lr / (1 - beta1**t)) * exp_avg / denom
    """

    def __init__(self, params: Parameters, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, *, decoupled_weight_decay: bool = False) -> None:
        _check_at_least_zero({"learning rate": lr, "epsilon value": eps})
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta} (must be in [0, 1))")
        _check_at_least_zero({"weight_decay value": weight_decay})
        super().__init__(params, lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = eps, weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay
        self._lerp_weight = float(self.dtype.type(1 - self.betas[0]))  # torch rounds it to the dtype
        self._slots = []
        for name, param in self.params.items():
            state = self.state[name]
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
            self._slots.append((name, param, state, state["exp_avg"], state["exp_avg_sq"], *_scratch(param)))

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        beta1, beta2 = self.betas
        for name, param, state, exp_avg, exp_avg_sq, numerator, work in self._slots:
            state["step"] = step = state["step"] + 1
            grad = grads[name]
            if self.weight_decay != 0 and self.decoupled_weight_decay:
                param *= 1 - self.lr * self.weight_decay
            elif self.weight_decay != 0:
                grad = _add_scaled(grad, param, self.weight_decay, out=numerator)  # free until below
            _lerp_(exp_avg, grad, self._lerp_weight, work)
            _decay_add_square_(exp_avg_sq, beta2, grad, work)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = self.lr / bias_correction1
            np.sqrt(exp_avg_sq, out=work)  # work = denom
            work /= bias_correction2**0.5
            work += self.eps
            np.multiply(exp_avg, -step_size, out=numerator)  # torch's addcdiv: (value * exp_avg) / denom
            numerator /= work
            param += numerator


class AdamW(Adam):
    """Adam with decoupled weight decay: theta <- theta * (1 - lr * weight_decay) before the Adam step.

    The decay never enters exp_avg or exp_avg_sq; otherwise the update is exactly `Adam`'s.
    """

    def __init__(self, params: Parameters, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square, optionally centered and with momentum.

    For each step and each parameter theta with gradient g:
        g <- g + weight_decay * theta                              if weight_decay != 0
        square_avg <- alpha * square_avg + (1 - alpha) * g * g
        grad_avg <- alpha * grad_avg + (1 - alpha) * g             if centered (torch: lerp_)
        avg <- sqrt(square_avg - grad_avg**2) + eps if centered else sqrt(square_avg) + eps
        b <- momentum * b + g / avg;  theta <- theta - lr * b      if momentum > 0 (b starts at 0)
        theta <- theta - lr * g / avg                              otherwise
    """

    def __init__(self, params: Parameters, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False) -> None:
        _check_at_least_zero({"learning rate": lr, "epsilon value": eps, "momentum value": momentum,
                              "weight_decay value": weight_decay, "alpha value": alpha})
        super().__init__(params, lr)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered
        self._lerp_weight = float(self.dtype.type(1 - alpha))  # torch rounds it to the dtype
        self._slots = []
        for name, param in self.params.items():
            state = self.state[name]
            state.update(step=0, square_avg=np.zeros_like(param))
            if momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if centered:
                state["grad_avg"] = np.zeros_like(param)
            self._slots.append((name, param, state, state["square_avg"], state.get("grad_avg"),
                                state.get("momentum_buffer"), *_scratch(param)))

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        for name, param, state, square_avg, grad_avg, buffer, numerator, work in self._slots:
            state["step"] += 1
            grad = grads[name]
            if self.weight_decay != 0:
                grad = _add_scaled(grad, param, self.weight_decay, out=numerator)
            _decay_add_square_(square_avg, self.alpha, grad, work)
            if self.centered:
                _lerp_(grad_avg, grad, self._lerp_weight, work)
                np.multiply(grad_avg, grad_avg, out=work)
                np.subtract(square_avg, work, out=work)
                np.sqrt(work, out=work)
            else:
                np.sqrt(square_avg, out=work)
            work += self.eps  # work = avg
            if self.momentum > 0:
                np.divide(grad, work, out=work)
                buffer *= self.momentum
                buffer += work
                np.multiply(buffer, -self.lr, out=work)
                param += work
            else:
                np.multiply(grad, -self.lr, out=numerator)  # torch's addcdiv: (-lr * g) / avg
                numerator /= work
                param += numerator


def build_optimizer(train_spec: TrainSpec, params: Parameters) -> Optimizer:
    """The optimiser `train_spec.optimizer` names, with the spec's hyper-parameters, over `params`."""
    name, lr, weight_decay = train_spec.optimizer, train_spec.lr, train_spec.weight_decay
    if name == "sgd":
        return SGD(params, lr=lr, momentum=train_spec.momentum, dampening=train_spec.dampening,
                   weight_decay=weight_decay, nesterov=train_spec.nesterov)
    if name in ("adam", "adamw"):
        optimizer_class = Adam if name == "adam" else AdamW
        return optimizer_class(params, lr=lr, betas=train_spec.betas, eps=train_spec.eps,
                               weight_decay=weight_decay)
    if name == "rmsprop":
        return RMSprop(params, lr=lr, alpha=train_spec.alpha, eps=train_spec.eps, weight_decay=weight_decay,
                       momentum=train_spec.momentum)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "build_optimizer"]
