"""The error function and its complement in NumPy, which has neither: GELU's normal CDF needs them.

`erf`/`erfc` are W. J. Cody's rational approximations (ACM TOMS 1969, the CALERF routine), accurate
to float64 precision, computed in the input's dtype.
"""
from __future__ import annotations

import math

import numpy as np

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
