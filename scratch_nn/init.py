"""Weight initialisers with torch.nn.init's formulas, drawing from a numpy.random.Generator.

For a weight of shape (out_features, in_features), fan_in = in_features, fan_out = out_features
(for any weight, torch's rule: `fan_in_and_fan_out`):

    torch_default    W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))   (nn.Linear.reset_parameters:
                     kaiming_uniform_(a=sqrt 5), whose gain sqrt(1/3) makes the bound 1/sqrt(fan_in))
    xavier_uniform   W ~ U(-a, a),  a = gain * sqrt(6 / (fan_in + fan_out)),  gain 1 (torch's default)
    xavier_normal    W ~ N(0, std^2),  std = gain * sqrt(2 / (fan_in + fan_out)),  gain 1
    kaiming_uniform  W ~ U(-bound, bound),  bound = gain * sqrt(3 / fan_in)   (mode fan_in)
    kaiming_normal   W ~ N(0, std^2),  std = gain / sqrt(fan_in)
    zeros, constant  W = 0, W = value: every unit computes the same thing and gets the same gradient,
                     so they never differ; kept to show why symmetric initialisation fails.

Every scheme but torch_default sets biases to zero. Kaiming's gain is `calculate_gain` of the
activation that follows the layer (1 for the output layer, which has none): the model works it
out from its layer list (`scratch_nn.spec.layer_specs.init_gain`) and passes it to `init_weight_layer`.

Draws are made directly in the parameter's dtype (`rng.random(dtype=...)`,
`rng.standard_normal(dtype=...)`), weight first, then bias, so a seed fixes the weights of each
dtype; a float32 model's weights are therefore not the float64 model's weights rounded.
"""
from __future__ import annotations

import math

import numpy as np

SCHEMES = ("torch_default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
           "zeros", "constant")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain, extended to this library's activations.

    linear / identity / sigmoid: 1;  tanh: 5/3;  relu: sqrt 2;  leaky_relu: sqrt(2 / (1 + slope^2))
    (slope = `param`, default 0.01). torch defines no gain for elu, gelu and softplus: they get
    relu's sqrt 2, as they are rectifier-like (zero or near-zero for x << 0, identity for x >> 0).
    """
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity in ("relu", "elu", "gelu", "softplus"):
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}; allowed: linear, identity, sigmoid, "
                     "tanh, relu, leaky_relu, elu, gelu, softplus")


def fan_in_and_fan_out(weight: np.ndarray) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as torch's
    `torch.nn.init._calculate_fan_in_and_fan_out` (torch/nn/init.py): fan_in = in * prod(kernel),
    fan_out = out * prod(kernel). A Linear weight (out_features, in_features) has no kernel: (in, out);
    a conv weight (out_channels, in_channels / groups, kH, kW) gives (in / groups * kH * kW, out * kH * kW).
    """
    if weight.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a weight with fewer than 2 dimensions, "
                         f"got shape {weight.shape}")
    receptive_field = math.prod(weight.shape[2:])  # 1 for a Linear weight
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def uniform_(array: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Fill `array` in place with U(low, high) drawn in its dtype; return it."""
    draw = rng.random(array.shape, dtype=array.dtype)  # [0, 1)
    draw *= high - low
    draw += low
    array[...] = draw
    return array


def normal_(array: np.ndarray, mean: float, std: float, rng: np.random.Generator) -> np.ndarray:
    """Fill `array` in place with N(mean, std^2) drawn in its dtype; return it."""
    draw = rng.standard_normal(array.shape, dtype=array.dtype)
    draw *= std
    draw += mean
    array[...] = draw
    return array


def zeros_(array: np.ndarray) -> np.ndarray:
    array[...] = 0
    return array


def constant_(array: np.ndarray, value: float) -> np.ndarray:
    array[...] = value
    return array


def xavier_uniform_(weight: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    fan_in, fan_out = fan_in_and_fan_out(weight)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(weight, -bound, bound, rng)


def xavier_normal_(weight: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    fan_in, fan_out = fan_in_and_fan_out(weight)
    return normal_(weight, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def kaiming_uniform_(weight: np.ndarray, rng: np.random.Generator, a: float = 0.0,
                     nonlinearity: str = "leaky_relu", gain: float | None = None) -> np.ndarray:
    """U(-bound, bound), bound = gain * sqrt(3 / fan_in) (torch's mode fan_in), the gain being
    calculate_gain(nonlinearity, a) unless given."""
    fan_in, _ = fan_in_and_fan_out(weight)
    bound = (calculate_gain(nonlinearity, a) if gain is None else gain) * math.sqrt(3.0 / fan_in)
    return uniform_(weight, -bound, bound, rng)


def kaiming_normal_(weight: np.ndarray, rng: np.random.Generator, a: float = 0.0,
                    nonlinearity: str = "leaky_relu", gain: float | None = None) -> np.ndarray:
    """N(0, std^2), std = gain / sqrt(fan_in) (torch's mode fan_in), the gain being
    calculate_gain(nonlinearity, a) unless given."""
    fan_in, _ = fan_in_and_fan_out(weight)
    return normal_(weight, 0.0, (calculate_gain(nonlinearity, a) if gain is None else gain) / math.sqrt(fan_in), rng)


def init_weight_layer(layer, scheme: str, rng: np.random.Generator, gain: float = 1.0, value: float = 0.0) -> None:
    """Initialise a weight layer's weight, then its bias, in place, by `scheme` (see SCHEMES).

    `gain` is Kaiming's (that of the activation after the layer; 1 for the output layer); xavier
    keeps torch's default gain 1. `value` is for scheme "constant". Any weight shape works: fan_in
    and fan_out are torch's (`fan_in_and_fan_out`).
    """
    weight, bias = layer.params["weight"], layer.params.get("bias")
    if scheme == "torch_default":
        bound = 1.0 / math.sqrt(fan_in_and_fan_out(weight)[0])
        uniform_(weight, -bound, bound, rng)
        if bias is not None:
            uniform_(bias, -bound, bound, rng)
        return
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        draw = kaiming_uniform_ if scheme == "kaiming_uniform" else kaiming_normal_
        draw(weight, rng, gain=gain)
    elif scheme == "xavier_uniform":
        xavier_uniform_(weight, rng)
    elif scheme == "xavier_normal":
        xavier_normal_(weight, rng)
    elif scheme == "zeros":
        zeros_(weight)
    elif scheme == "constant":
        constant_(weight, value)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
    if bias is not None:
        zeros_(bias)
