"""All of a model's parameters as one flat array: SGD's update in a few NumPy calls for the whole net.

`scratch_nn.model.share_storage` makes every parameter (and every gradient) of an MLP a view of
one flat array, in order. An elementwise update rule applied once to the flat array is the same
update of every tensor, in a few NumPy calls instead of a few per tensor (what that saves:
share_storage's docstring). `flat_array` finds that flat array if there is one; `FlatParameters`
holds the whole-array state and hands each parameter its views under torch's state names.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def flat_array(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The 1-D array of which `arrays` are consecutive views, in order, covering it whole; else None."""
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for array in arrays:
        if (array.base is not base or not array.flags.c_contiguous
                or array.__array_interface__["data"][0] != address):
            return None
        address += array.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


class FlatParameters:
    """All parameters as the one flat array they are views of (scratch_nn.model.share_storage).

    An elementwise update of the whole array is the same update of every tensor, in a few NumPy
    calls instead of a few per tensor. `gradient(grads)` is the gradients as one array (the flat
    array they are views of, else a gathered copy); `publish(states)` gives each parameter's state
    views of the whole-array state, under torch's names.
    """

    def __init__(self, params: dict[str, np.ndarray], flat: np.ndarray) -> None:
        self.param, self.state = flat, {}  # the whole-array state: name -> flat array
        self.decayed, self.work = np.empty_like(flat), np.empty_like(flat)  # a step's intermediates
        self._layout = [(name, param.size, param.shape) for name, param in params.items()]
        self._seen: list[np.ndarray] = []  # the gradient arrays of the last step, and their flat array
        self._grad: np.ndarray | None = None
        self._gathered: np.ndarray | None = None  # for gradients that are not views of one array
        self._published: dict[str, np.ndarray] = {}

    def gradient(self, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        arrays = [grads[name] for name, _, _ in self._layout]
        if len(arrays) != len(self._seen) or any(a is not b for a, b in zip(arrays, self._seen)):
            for array, (name, _, shape) in zip(arrays, self._layout):  # checked when the arrays change
                if array.shape != shape:
                    raise ValueError(f"gradient {name!r} has shape {array.shape}, its parameter {shape}")
            self._seen, self._grad = arrays, flat_array(arrays)
        if self._grad is not None:
            return self._grad
        if self._gathered is None:
            self._gathered = np.empty_like(self.param)
        return np.concatenate([array.reshape(-1) for array in arrays], out=self._gathered)

    def publish(self, states: dict[str, dict]) -> None:
        for key, flat in self.state.items():
            if self._published.get(key) is not flat:  # new (first step): hand out its views once
                offset = 0
                for name, size, shape in self._layout:
                    states[name][key] = flat[offset:offset + size].reshape(shape)
                    offset += size
                self._published[key] = flat
