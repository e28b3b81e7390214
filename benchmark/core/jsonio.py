"""JSON for people and machines: NumPy values unwrapped, and strict JSON (no NaN literals)."""
from __future__ import annotations

import math

import numpy as np


def json_ready(value):
    """`value` as plain JSON data: NumPy scalars and arrays unwrapped, nan/inf as null."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
