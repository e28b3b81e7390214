"""Activation functions: pure NumPy forward/backward pairs, and thin layers named as in torch.nn.

Each `name(x)` computes the activation and each `name_backward(grad_out, ...)` applies its local
derivative: grad_in = grad_out * f'(x). The classes (`ReLU`, `GELU`, ...) follow the layer protocol
of `scratch_nn.layers` with no parameters: `forward` caches what `backward` needs, `backward`
without a forward raises RuntimeError. Every function keeps the input's dtype (float32 or float64).

GELU needs the error function, which NumPy lacks; `erf`/`erfc` here are W. J. Cody's rational
approximations (ACM TOMS 1969, the CALERF routine), accurate to float64 precision.
"""
from __future__ import annotations

import math

import numpy as np

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
INV_SQRT_PI = 1.0 / math.sqrt(math.pi)

# Cody's coefficients: erf on |x| <= 0.46875 (A/B), erfc on 0.46875 < |x| <= 4 (C/D), erfc beyond (P/Q).
_ERF_SMALL = 0.46875
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
      8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
      2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
      3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
      6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
      2.33520497626869185e-3)


def _erf_small(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| <= 0.46875: x * A(x^2) / B(x^2)."""
    z = x * x
    numerator, denominator = _A[4] * z, z
    for a, b in zip(_A[:3], _B[:3]):
        numerator, denominator = (numerator + a) * z, (denominator + b) * z
    return x * (numerator + _A[3]) / (denominator + _B[3])


def _erfc_large(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875: exp(-y^2) times a rational function of y (y <= 4) or of 1/y^2."""
    y = np.minimum(y, 27.0)  # erfc(27) underflows to 0 anyway; keeps 1/y^2 and y^2 finite
    middle = y <= 4.0
    ratio = np.empty_like(y)
    t = y[middle]
    numerator, denominator = _C[8] * t, t
    for c, d in zip(_C[:7], _D[:7]):
        numerator, denominator = (numerator + c) * t, (denominator + d) * t
    ratio[middle] = (numerator + _C[7]) / (denominator + _D[7])
    t = y[~middle]
    z = 1.0 / (t * t)
    numerator, denominator = _P[5] * z, z
    for p, q in zip(_P[:4], _Q[:4]):
        numerator, denominator = (numerator + p) * z, (denominator + q) * z
    ratio[~middle] = (INV_SQRT_PI - z * (numerator + _P[4]) / (denominator + _Q[4])) / t
    # exp(-y^2) as exp(-r^2) * exp(-(y-r)(y+r)) with r = y rounded down to 1/16: r^2 is exact.
    rounded = np.trunc(y * 16.0) / 16.0
    return np.exp(-rounded * rounded) * np.exp(-(y - rounded) * (y + rounded)) * ratio


def erf(x: np.ndarray) -> np.ndarray:
    """The error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise."""
    x = np.asarray(x)
    out = np.empty_like(x)
    small = np.abs(x) <= _ERF_SMALL
    out[small] = _erf_small(x[small])
    large = x[~small]
    out[~small] = np.copysign((0.5 - _erfc_large(np.abs(large))) + 0.5, large)
    return out


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function erfc(x) = 1 - erf(x), without cancellation for large x."""
    x = np.asarray(x)
    out = np.empty_like(x)
    small = np.abs(x) <= _ERF_SMALL
    out[small] = 1.0 - _erf_small(x[small])
    large = x[~small]
    tail = _erfc_large(np.abs(large))
    out[~small] = np.where(large > 0, tail, 2.0 - tail)
    return out


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


# ---------------------------------------------------------------------------------------------
# The layers: no parameters, a cache for backward.


class Activation:
    """Base of the activation layers: `_forward` returns (output, cache), `_backward` uses the cache."""

    _settings: tuple[str, ...] = ()  # attributes shown by repr, as torch shows them

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = self._forward(x)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward: call forward(x) "
                               "first, backward uses what forward cached")
        return self._backward(grad_out, self._cache)

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)}" for name in self._settings)
        return f"{type(self).__name__}({settings})"


class Identity(Activation):
    """y = x;  dL/dx = dL/dy."""

    def _forward(self, x):
        return x, True

    def _backward(self, grad_out, cache):
        return grad_out


class ReLU(Activation):
    """y = max(x, 0);  dL/dx = dL/dy * [x > 0]."""

    def __init__(self) -> None:
        super().__init__()
        self._zeros = np.zeros(0)  # zeros like the last input: see relu(); remade when the shape changes

    def _forward(self, x):
        if self._zeros.shape != x.shape or self._zeros.dtype != x.dtype or self._zeros.strides != x.strides:
            self._zeros = np.zeros_like(x)  # same memory layout as x: maximum runs its fast loop
        return relu(x, self._zeros), x

    def _backward(self, grad_out, x):
        return relu_backward(grad_out, x)


class LeakyReLU(Activation):
    """y = x if x > 0 else slope * x;  dL/dx = dL/dy * (1 if x > 0 else slope)."""

    _settings = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def _forward(self, x):
        return leaky_relu(x, self.negative_slope), x

    def _backward(self, grad_out, x):
        return leaky_relu_backward(grad_out, x, self.negative_slope)


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x));  dL/dx = dL/dy * y * (1 - y)."""

    def _forward(self, x):
        y = sigmoid(x)
        return y, y

    def _backward(self, grad_out, y):
        return sigmoid_backward(grad_out, y)


class Tanh(Activation):
    """y = tanh(x);  dL/dx = dL/dy * (1 - y^2)."""

    def _forward(self, x):
        y = np.tanh(x)
        return y, y

    def _backward(self, grad_out, y):
        return tanh_backward(grad_out, y)


class ELU(Activation):
    """y = x if x > 0 else alpha * (exp(x) - 1);  dL/dx = dL/dy * (1 if x > 0 else alpha * exp(x))."""

    _settings = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def _forward(self, x):
        return elu(x, self.alpha), x

    def _backward(self, grad_out, x):
        return elu_backward(grad_out, x, self.alpha)


class GELU(Activation):
    """y = x * Phi(x) (exact, torch's approximate='none');  dL/dx = dL/dy * (Phi(x) + x * phi(x)).

    Phi is the standard normal CDF, phi = exp(-x^2 / 2) / sqrt(2 pi) its density.
    """

    def _forward(self, x):
        cdf = normal_cdf(x)
        return x * cdf, (x, cdf)

    def _backward(self, grad_out, cache):
        return gelu_backward(grad_out, *cache)


class Softplus(Activation):
    """y = log(1 + exp(beta x)) / beta (y = x where beta x > threshold);  dL/dx = dL/dy * sigmoid(beta x)."""

    _settings = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def _forward(self, x):
        return softplus(x, self.beta, self.threshold), x

    def _backward(self, grad_out, x):
        return softplus_backward(grad_out, x, self.beta, self.threshold)


ACTIVATION_CLASSES = {"identity": Identity, "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid,
                      "tanh": Tanh, "elu": ELU, "gelu": GELU, "softplus": Softplus}


def build_activation(name: str, negative_slope: float = 0.01) -> Activation:
    """The activation layer for a spec name ("relu", "leaky_relu", ...), with torch's defaults."""
    if name not in ACTIVATION_CLASSES:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATION_CLASSES)}")
    if name == "leaky_relu":
        return LeakyReLU(negative_slope)
    return ACTIVATION_CLASSES[name]()
