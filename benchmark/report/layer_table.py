"""The table of a spec's layers that `svt describe`, the report and the study page show.

One row per entry of the spec's layer list, named `layers.{i}` as both sides name it: the type and
settings as the spec writes them, the output shape the spec's validation propagated, the parameter
count of the built scratch model and a weight layer's init. Nothing here re-derives the sequence.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.spec import Spec
from scratch_nn.spec.layer_specs import shape_text

COLUMNS = ["layer", "type", "output shape", "settings", "params", "init"]


def layer_rows(spec: Spec) -> list[dict]:
    """One row per entry of `spec.model.layers`; parameter counts from the built scratch model."""
    from scratch_nn.model import Sequential  # the real model, so the table cannot drift from it

    model = Sequential(spec.model, np.random.default_rng(spec.train.seed))
    rows = []
    for index, ((name, layer), layer_spec, shape) in enumerate(zip(model.named_layers(), spec.model.layers,
                                                                   spec.model.shapes)):
        settings = {key: value for key, value in layer_spec.to_dict().items() if key not in ("type", "init")}
        rows.append({
            "layer": name,
            "type": layer_spec.type,
            "output shape": shape_text(shape),
            "settings": " ".join(f"{key}={value}" for key, value in settings.items()),
            "params": sum(value.size for value in layer.params.values()),
            "init": spec.model.weight_init(index)[0] if layer_spec.role == "weight" else "",
        })
    return rows
