"""Finite-difference gradient checks: the independent referee for every hand-written backward.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)        (central differences, error O(h^2))

    relative_error(a, b) = max_i |a_i - b_i| / max(floor, max_i (|a_i| + |b_i|))

The error measure is the cs231n one taken over the tensor (element by element it reads ~1 wherever
both numbers are rounding noise near zero); it is the one measure of the project: the parity engine
(benchmark) judges every row with it too, and runs its finite-difference rows through the same
referee functions, `layer_gradient_pairs` and `model_gradient_pairs`.

Use float64: the rounding error of f (~1e-16 |f|) is amplified by 1/h, which float32 cannot afford.
A gradient entry that happens to be tiny still carries the rounding noise of f; `order=4` (a
five-point stencil, error O(h^4)) allows h ~ 1e-3 and so ~1000x less noise than order 2 at h = 1e-6,
as long as no kink (ReLU at 0) lies within 2h.

A layer is checked through the scalar f(x) = sum(forward(x) * grad_out) with a *random* grad_out, whose
gradient is exactly what backward(grad_out) returns (an all-ones grad_out would hide errors that
cancel in a sum, such as a wrong softmax Jacobian).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def numerical_gradient(f: Callable[[], Any], array: np.ndarray, eps: float = 1e-6,
                       indices: Sequence[int] | np.ndarray | None = None,
                       grad_out: np.ndarray | None = None, order: int = 2) -> np.ndarray:
    """d f() / d array by central differences, perturbing `array` in place (and restoring it).

    `f` takes no arguments and must read `array` (e.g. a layer's live parameter). With `indices`
    (flat indices into `array`) only those coordinates are computed and a 1-D array of them is
    returned; otherwise the full gradient, shaped like `array`.

    order 2: (f(x+h) - f(x-h)) / 2h, error O(h^2);  order 4: (8 (f(x+h) - f(x-h)) - (f(x+2h) -
    f(x-2h))) / 12h, error O(h^4), which allows h ~ 1e-3 and so divides f's rounding noise by a
    larger h (use it for a scalar loss, whose rounding no differencing trick can cancel).

    With `grad_out`, f returns an array and the derivative is that of sum(f() * grad_out), taken as
    sum((f(x + h) - f(x - h)) * grad_out) / 2h: differencing before summing makes the outputs a
    coordinate does not touch cancel exactly, instead of adding their rounding noise to the sum.
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    flat_indices = range(array.size) if indices is None else indices
    grad = np.empty(len(flat_indices), dtype=np.float64)
    for position, flat_index in enumerate(flat_indices):
        index = np.unravel_index(flat_index, array.shape)
        original = array[index]

        def difference(step: float) -> np.ndarray:
            """f(x + step) - f(x - step), as float64 copies (f may return a live array)."""
            array[index] = original + step
            f_plus = np.array(f(), dtype=np.float64)
            array[index] = original - step
            f_minus = np.array(f(), dtype=np.float64)
            array[index] = original
            return f_plus - f_minus

        if order == 2:
            change = difference(eps) / (2.0 * eps)
        else:
            change = (8.0 * difference(eps) - difference(2.0 * eps)) / (12.0 * eps)
        grad[position] = change if grad_out is None else np.sum(change * grad_out)
    return grad.reshape(array.shape) if indices is None else grad


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """max |a - b| / max(floor, max(|a| + |b|)) over the tensor; 0.0 for empty arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a) + np.abs(b))), floor)


def sample_indices(size: int, max_coords: int | None, rng: np.random.Generator) -> np.ndarray:
    """All flat indices if size <= max_coords (or max_coords is None), else max_coords distinct ones."""
    if max_coords is None or size <= max_coords:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_coords, replace=False))


@dataclass
class LayerCheck:
    """What `layer_gradient_pairs` compared: per array ("input", "weight", ...) the analytic and the
    numerical gradient at the sampled coordinates, and the unperturbed output and grad_out."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    output: np.ndarray
    grad_out: np.ndarray


def checked_input_gradient(layer, grad_input, input_shape: tuple[int, ...]) -> np.ndarray:
    """What `layer.backward(grad_out)` returned, refused in words if it is not the input's gradient
    (None: a backward that fills `grads` but forgets to return dL/dx)."""
    kind = type(layer).__name__
    if grad_input is None:
        raise ValueError(f"{kind}.backward(grad_out) returned None: the layer returned no input gradient; "
                         f"backward must return dL/dx, an array of the input's shape {tuple(input_shape)}")
    if np.shape(grad_input) != tuple(input_shape):
        raise ValueError(f"{kind}.backward(grad_out) returned an input gradient of shape {np.shape(grad_input)}; "
                         f"it must have the input's shape {tuple(input_shape)}")
    return np.array(grad_input)


def layer_gradient_pairs(layer, x: np.ndarray, grad_out: np.ndarray | None = None, eps: float = 1e-6,
                         max_coords: int | None = 200, rng: np.random.Generator | None = None,
                         order: int = 2) -> LayerCheck:
    """A layer's backward and finite differences of f = sum(forward(x) * grad_out), side by side.

    Covers grad_in and every entry of layer.grads, at up to `max_coords` sampled coordinates per
    array. Without `grad_out`, one is drawn from `rng` (standard normal, float64). A Dropout
    layer's mask is held fixed (through next_mask); the buffers (BatchNorm's running statistics)
    are restored afterwards. The layer is left with the caches and grads of one forward/backward at x.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    saved_buffers = {name: value.copy() for name, value in layer.buffers.items()}
    x = np.array(x)  # a private copy, perturbed in place below
    output = np.array(layer.forward(x))
    grad_out = rng.standard_normal(output.shape) if grad_out is None else grad_out
    mask = getattr(layer, "mask", None) if layer.training else None

    def f() -> np.ndarray:
        if mask is not None:
            layer.next_mask = mask
        return layer.forward(x)

    f()  # replay forward with the held mask, then the analytic gradients
    analytic = {"input": checked_input_gradient(layer, layer.backward(grad_out), x.shape)}
    analytic.update({name: value.copy() for name, value in layer.grads.items()})
    pairs = {}
    for name, array in {"input": x, **layer.params}.items():
        indices = sample_indices(array.size, max_coords, rng)
        numeric = numerical_gradient(f, array, eps, indices, grad_out, order)
        pairs[name] = (analytic[name].reshape(-1)[indices], numeric)
    f()
    layer.backward(grad_out)  # leave the caches and grads of the unperturbed point
    for name, value in saved_buffers.items():
        layer.buffers[name][...] = value
    return LayerCheck(pairs, output, grad_out)


def model_gradient_pairs(model, objective: Callable[[], float], analytic: dict[str, np.ndarray],
                         eps: float = 1e-6, max_coords: int | None = 50, rng: np.random.Generator | None = None,
                         order: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per parameter name, the `analytic` gradient and finite differences of the scalar `objective()`
    (which must read the model's live parameters) at up to `max_coords` sampled coordinates."""
    rng = np.random.default_rng(0) if rng is None else rng
    pairs = {}
    for name, array in model.named_parameters():
        indices = sample_indices(array.size, max_coords, rng)
        numeric = numerical_gradient(objective, array, eps, indices, order=order)
        pairs[name] = (analytic[name].reshape(-1)[indices], numeric)
    return pairs


def check_layer_gradients(layer, x: np.ndarray, grad_out: np.ndarray, eps: float = 1e-6,
                          max_coords: int | None = 200, rng: np.random.Generator | None = None,
                          order: int = 2) -> dict[str, float]:
    """Relative errors of a layer's backward against finite differences: {"input": e, "weight": e, ...}
    (`layer_gradient_pairs`, judged by `relative_error`)."""
    check = layer_gradient_pairs(layer, x, grad_out, eps, max_coords, rng, order)
    return {name: relative_error(analytic, numeric) for name, (analytic, numeric) in check.pairs.items()}


def check_model_gradients(model, loss, x: np.ndarray, targets: np.ndarray, eps: float = 1e-6,
                          max_coords: int | None = 50, rng: np.random.Generator | None = None,
                          order: int = 2) -> dict[str, float]:
    """Relative errors of model.backward(loss.backward()) per parameter name, against finite
    differences of loss.forward(model.forward(x), targets). Dropout masks are held fixed and
    BatchNorm buffers restored; use a float64 model.

    The loss is one scalar, so its rounding noise (~1e-16 |L| / h) limits small gradient entries:
    for a smooth model (no ReLU kink within 2h of a pre-activation) order=4, eps=1e-3 is ~100x more
    accurate than the default. A Linear bias feeding BatchNorm has an exactly zero gradient; its
    relative error is noise over noise, so judge it by its size instead.
    """
    saved_buffers = {name: value.copy() for name, value in model.named_buffers()}
    model.forward(x)
    masks = [(layer, layer.mask) for _, layer in model.named_layers()
             if getattr(layer, "mask", None) is not None and layer.training]

    def f() -> float:
        for layer, mask in masks:
            layer.next_mask = mask
        return float(loss.forward(model.forward(x), targets))

    f()
    model.backward(loss.backward())
    analytic = {name: value.copy() for name, value in model.named_gradients()}
    pairs = model_gradient_pairs(model, f, analytic, eps, max_coords, rng, order)
    f()
    model.backward(loss.backward())  # leave the caches and grads of the unperturbed point
    for name, buffer in model.named_buffers():
        buffer[...] = saved_buffers[name]
    return {name: relative_error(analytic, numeric) for name, (analytic, numeric) in pairs.items()}
