"""The table of a spec's layers that `svt describe`, the report and the study page show.

One row per layer, named as both sides name it (`layers.{i}`, and inside a block `layers.{i}.body.{j}`,
indented under it): the type and
settings as the spec writes them, the output shape the spec's validation propagated, the parameter
count of the built scratch model and a weight layer's init. Nothing here re-derives the sequence.
"""
from __future__ import annotations

import numpy as np

from scratch_nn.spec import Spec
from scratch_nn.spec.layer_specs import shape_text

COLUMNS = ["layer", "type", "output shape", "settings", "params", "init"]


def layer_rows(spec: Spec) -> list[dict]:
    """One row per layer of `spec.model.entries`: the model's own list and, indented under a block,
    the block's layers by their nested names (`layers.4.body.0`); parameter counts from the built
    scratch model (a block's row counts every parameter inside it)."""
    from scratch_nn.model import Sequential  # the real model, so the table cannot drift from it

    model = Sequential(spec.model, np.random.default_rng(spec.train.seed))
    counts = {f"{name}.{key}": value.size for name, layer in model.named_layers()
              for key, value in layer.params.items()}
    rows = []
    for entry in spec.model.entries:
        layer_spec = entry.spec
        rows.append({
            "layer": "  " * entry.depth + entry.name,
            "type": layer_spec.type,
            "output shape": shape_text(entry.output_shape),
            "settings": settings_text(layer_spec),
            "params": sum(size for key, size in counts.items() if key.startswith(f"{entry.name}.")
                          and (layer_spec.role == "block" or key.count(".") == entry.name.count(".") + 1)),
            "init": spec.model.layer_init(entry)[0] if layer_spec.role == "weight" else "",
        })
    return rows


def settings_text(layer_spec) -> str:
    """`out_channels=16 kernel_size=3`; for a block what its lists hold (their layers have rows of their own)."""
    if layer_spec.type == "concat":
        sizes = ", ".join(str(len(branch)) for branch in layer_spec.branches)
        return f"{len(layer_spec.branches)} branches of {sizes} layers"
    if layer_spec.role == "block":
        return ", ".join(f"{name}: {len(members)} layer{'s' if len(members) > 1 else ''}"
                         for name, members in layer_spec.children())
    settings = {key: value for key, value in layer_spec.to_dict().items() if key not in ("type", "init")}
    return " ".join(f"{key}={value}" for key, value in settings.items())
