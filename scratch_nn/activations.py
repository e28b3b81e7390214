"""Activation functions: pure NumPy forward/backward pairs, and thin layers named as in torch.nn.

Each `name(x)` computes the activation and each `name_backward(grad_out, ...)` applies its local
derivative: grad_in = grad_out * f'(x). The classes (`ReLU`, `GELU`, ...) are `scratch_nn.layer.Layer`s
with no parameters: `forward` caches what `backward` needs, `backward` without a forward raises
RuntimeError. Every function keeps the input's dtype (float32 or float64). GELU's error function
is `scratch_nn.erf`.
"""
from __future__ import annotations

import math

import numpy as np

from scratch_nn.erf import erf, erfc  # noqa: F401  (erf is part of this module's interface)
from scratch_nn.layer import Layer

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# ---------------------------------------------------------------------------------------------
# The maths: forward and local gradient side by side.


def relu(x, zeros=None):
    """max(x, 0). Given `zeros`, an array of zeros of x's shape and dtype, the same values ~2x faster:
    NumPy's maximum runs its SIMD loop for two arrays, a slower one against the scalar 0."""
    return np.maximum(x, 0 if zeros is None else zeros)


def relu_backward(grad_out, x):
    return grad_out * (x > 0)  # torch: zero gradient at x == 0


def leaky_relu(x, negative_slope=0.01):
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return np.where(x > 0, grad_out, grad_out * negative_slope)


def sigmoid(x):
    """1 / (1 + exp(-x)), computed from exp(-|x|) so that no exp overflows."""
    e = np.exp(-np.abs(x))
    r = 1.0 / (1.0 + e)
    return np.where(x >= 0, r, e * r)


def sigmoid_backward(grad_out, y):
    return grad_out * y * (1.0 - y)  # y = sigmoid(x)


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad_out, y):
    return grad_out * (1.0 - y * y)  # y = tanh(x)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(grad_out, x, alpha=1.0):
    return np.where(x > 0, grad_out, grad_out * (alpha * np.exp(np.minimum(x, 0))))


def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, written as erfc(-x / sqrt 2) / 2 to stay exact for x << 0."""
    return 0.5 * erfc(x * -SQRT_HALF)


def gelu(x):
    return x * normal_cdf(x)


def gelu_backward(grad_out, x, cdf):
    return grad_out * (cdf + x * (INV_SQRT_2PI * np.exp(-0.5 * x * x)))  # cdf = Phi(x)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, as max(z, 0) + log1p(exp(-|z|)) with z = beta x; x where z > threshold."""
    z = x * beta
    stable = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta
    return np.where(z > threshold, x, stable)


def softplus_backward(grad_out, x, beta=1.0, threshold=20.0):
    z = x * beta
    return np.where(z > threshold, grad_out, grad_out * sigmoid(z))


def silu(x):
    """x * sigmoid(x)."""
    return x * sigmoid(x)


def silu_backward(grad_out, x, s):
    return grad_out * (s * (1.0 + x * (1.0 - s)))  # s = sigmoid(x): d/dx x s(x) = s + x s (1 - s)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return np.clip(x, min_val, max_val)


def hardtanh_backward(grad_out, x, min_val=-1.0, max_val=1.0):
    return grad_out * ((x > min_val) & (x < max_val))  # torch: zero gradient at the clips themselves


# ---------------------------------------------------------------------------------------------
# The layers: no parameters, a cache for backward.


class Activation(Layer):
    """Base of the activation layers: `_forward` returns (output, cache), `_gradient` applies the
    local derivative from the cache."""

    def _backward(self, grad_out, cache, input_grad):
        return self._gradient(grad_out, cache) if input_grad else None

    def _gradient(self, grad_out: np.ndarray, cache: object) -> np.ndarray:
        raise NotImplementedError


class Identity(Activation):
    """y = x;  dL/dx = dL/dy."""

    def _forward(self, x):
        return x, True

    def _gradient(self, grad_out, cache):
        return grad_out


class ReLU(Activation):
    """y = max(x, 0);  dL/dx = dL/dy * [x > 0]."""

    def __init__(self) -> None:
        super().__init__()
        self._zeros, self._zeros_for = np.zeros(0), None  # zeros like the last input: see relu()

    def _forward(self, x):
        # remade when the input's shape, dtype or memory layout changes (a strided view, such as a
        # conv's output, gets compact zeros of its axis order: compared with x's own strides, they
        # would be remade at every call)
        if self._zeros_for != (x.shape, x.dtype, x.strides):
            self._zeros, self._zeros_for = np.zeros_like(x), (x.shape, x.dtype, x.strides)
        return relu(x, self._zeros), x

    def _gradient(self, grad_out, x):
        return relu_backward(grad_out, x)


class LeakyReLU(Activation):
    """y = x if x > 0 else slope * x;  dL/dx = dL/dy * (1 if x > 0 else slope)."""

    _settings = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def _forward(self, x):
        return leaky_relu(x, self.negative_slope), x

    def _gradient(self, grad_out, x):
        return leaky_relu_backward(grad_out, x, self.negative_slope)


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x));  dL/dx = dL/dy * y * (1 - y)."""

    def _forward(self, x):
        y = sigmoid(x)
        return y, y

    def _gradient(self, grad_out, y):
        return sigmoid_backward(grad_out, y)


class Tanh(Activation):
    """y = tanh(x);  dL/dx = dL/dy * (1 - y^2)."""

    def _forward(self, x):
        y = np.tanh(x)
        return y, y

    def _gradient(self, grad_out, y):
        return tanh_backward(grad_out, y)


class ELU(Activation):
    """y = x if x > 0 else alpha * (exp(x) - 1);  dL/dx = dL/dy * (1 if x > 0 else alpha * exp(x))."""

    _settings = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def _forward(self, x):
        return elu(x, self.alpha), x

    def _gradient(self, grad_out, x):
        return elu_backward(grad_out, x, self.alpha)


class GELU(Activation):
    """y = x * Phi(x) (exact, torch's approximate='none');  dL/dx = dL/dy * (Phi(x) + x * phi(x)).

    Phi is the standard normal CDF, phi = exp(-x^2 / 2) / sqrt(2 pi) its density.
    """

    def _forward(self, x):
        cdf = normal_cdf(x)
        return x * cdf, (x, cdf)

    def _gradient(self, grad_out, cache):
        return gelu_backward(grad_out, *cache)


class Softplus(Activation):
    """y = log(1 + exp(beta x)) / beta (y = x where beta x > threshold);  dL/dx = dL/dy * sigmoid(beta x)."""

    _settings = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def _forward(self, x):
        return softplus(x, self.beta, self.threshold), x

    def _gradient(self, grad_out, x):
        return softplus_backward(grad_out, x, self.beta, self.threshold)


class SiLU(Activation):
    """y = x * sigmoid(x);  dL/dx = dL/dy * s * (1 + x * (1 - s)), s = sigmoid(x)."""

    def _forward(self, x):
        s = sigmoid(x)
        return x * s, (x, s)

    def _gradient(self, grad_out, cache):
        return silu_backward(grad_out, *cache)


class Hardtanh(Activation):
    """y = clip(x, min_val, max_val);  dL/dx = dL/dy where min_val < x < max_val, else 0."""

    _settings = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def _forward(self, x):
        return hardtanh(x, self.min_val, self.max_val), x

    def _gradient(self, grad_out, x):
        return hardtanh_backward(grad_out, x, self.min_val, self.max_val)


# type (as in scratch_nn.spec.layer_specs) -> class; each class takes its spec's settings as keyword arguments
ACTIVATION_CLASSES = {"identity": Identity, "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid,
                      "tanh": Tanh, "elu": ELU, "gelu": GELU, "softplus": Softplus, "silu": SiLU,
                      "hardtanh": Hardtanh}
