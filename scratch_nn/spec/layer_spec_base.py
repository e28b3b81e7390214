"""The base class of the layer specs (`scratch_nn.spec.layer_specs` for the vector layers and activations,
`scratch_nn.spec.image_specs` for the image layers of a CNN), and how shapes are written in messages."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class LayerSpec:
    """Base of the layer specs. `role` is "weight" (initialised from the model's `init`; L1 applies
    to its weight), "activation" (sets the gain of the weight layer before it) or "other"."""

    type: ClassVar[str]
    role: ClassVar[str] = "other"
    vector_input: ClassVar[bool] = False  # True: needs (N, features), as Linear and BatchNorm1d
    image_input: ClassVar[bool] = False  # True: needs (N, C, H, W), as Conv2d, the pools and BatchNorm2d
    always_shown: ClassVar[tuple[str, ...]] = ()  # settings written out even at their default

    def check(self, where: str) -> None:
        """Raise SpecError if a setting is out of range (the default: nothing to check)."""

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape  # elementwise layers keep the shape

    def arguments(self) -> dict[str, Any]:
        """The settings as keyword arguments (torch's names)."""
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        """The entry as it is written in a spec: `type`, then the settings that are not the default."""
        changed = {field.name: getattr(self, field.name) for field in fields(self)
                   if getattr(self, field.name) != field.default or field.name in self.always_shown}
        return {"type": self.type, **changed}

    def toml(self) -> str:
        """The entry in TOML's inline form, `{ type = "linear", out_features = 256 }`."""
        def value(item: Any) -> str:
            if isinstance(item, (tuple, list)):
                return "[" + ", ".join(value(part) for part in item) + "]"
            if isinstance(item, dict):  # a layer inside a block
                return "{ " + ", ".join(f"{key} = {value(part)}" for key, part in item.items()) + " }"
            return ("true" if item else "false") if isinstance(item, bool) else (
                f'"{item}"' if isinstance(item, str) else repr(item))
        return "{ " + ", ".join(f"{key} = {value(item)}" for key, item in self.to_dict().items()) + " }"


def shape_text(shape: tuple[int, ...]) -> str:
    """(784,) -> "(N, 784)": a shape with its batch dimension, as tables and messages print it."""
    return "(N, " + ", ".join(str(size) for size in shape) + ")"
