"""The specs of blocks, entries whose own lists hold layers: a residual block, concatenated branches,
and the tree walk every reader of a spec uses (`layer_entries`): one entry per layer, nested names.

    { type = "residual", layers = [ ...a list... ], shortcut = [ ...a list... ] }   # body(x) + shortcut(x)
    { type = "concat", branches = [ [ ...a list... ], [ ...a list... ], ... ] }     # channels concatenated
    { type = "adaptive_avg_pool2d", output_size = 1 }                                # (scratch_nn.spec.image_specs)

Names are torch's: the body of block `layers.3` is `layers.3.body.0`, `layers.3.body.1`, ..., its
shortcut `layers.3.shortcut.0`, ...; branch b of a concat `layers.5` is `layers.5.branches.b.0`, ...
Blocks nest: a block's list may hold blocks. A block needs images (N, C, H, W), as torchvision's
BasicBlock and Inception module do. Its shapes are checked when the spec is read: the body and the
shortcut (the identity when left out) must give the same shape, as they are added; the branches
must agree in every dimension but the channels, as they are concatenated on dimension 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from scratch_nn.spec.layer_spec_base import LayerSpec, shape_text
from scratch_nn.spec.spec_checks import SpecError


def check_layer_list(value: Any, what: str, where: str) -> None:
    """A block's list (`what`: layers, shortcut, branches.i) holds at least one layer spec, each checked."""
    if not isinstance(value, tuple) or not value or not all(isinstance(layer, LayerSpec) for layer in value):
        raise SpecError(f"{where}: {what} must be a list of at least one layer, like [{{ type = \"conv2d\", "
                        f"out_channels = 16, kernel_size = 3, padding = 1 }}], got {list(value or ())!r}")
    name = "body" if what == "layers" else what
    for index, layer in enumerate(value):
        layer.check(f"{where}: {name}.{index} ({layer.type})")


def list_output(layers: tuple[LayerSpec, ...], shape: tuple[int, ...], where: str, prefix: str) -> tuple[int, ...]:
    """The shape a list of layers gives, each layer checked against what flows in (names: prefix.i)."""
    from scratch_nn.spec.layer_specs import propagate_shapes  # here: layer_specs' registry holds these blocks
    return propagate_shapes(layers, shape, where, prefix)[-1]


def shortcut_fix(body: tuple[int, ...], given: tuple[int, ...]) -> str:
    """What shortcut would give the body's shape (torchvision's downsample: 1x1 conv with the stride, then BN)."""
    if len(body) == 3 and len(given) == 3 and given[1] % body[1] == 0 and given[2] % body[2] == 0 \
            and given[1] // body[1] == given[2] // body[2]:
        stride = given[1] // body[1]
        return (f"shortcut = [{{ type = \"conv2d\", out_channels = {body[0]}, kernel_size = 1"
                f"{f', stride = {stride}' if stride > 1 else ''}, bias = false }}, {{ type = \"batch_norm2d\" }}]")
    return "a shortcut that gives the body's shape, or a body that keeps its input's shape"


@dataclass(frozen=True)
class ResidualSpec(LayerSpec):
    """output = body(x) + shortcut(x): `layers` is the body, `shortcut` (None: the identity) a list
    that must give the body's shape (torchvision's downsample: 1x1 conv2d with the stride, batch_norm2d)."""

    layers: tuple[LayerSpec, ...]
    shortcut: tuple[LayerSpec, ...] | None = None

    type = "residual"
    role = "block"
    image_input = True
    nested = ("layers", "shortcut")  # the fields that hold lists of layers (read by layer_from_dict)

    def check(self, where):
        check_layer_list(self.layers, "layers", where)
        if self.shortcut is not None:
            check_layer_list(self.shortcut, "shortcut", where)

    def children(self) -> list[tuple[str, tuple[LayerSpec, ...]]]:
        """(torch's name, list): the body, then the shortcut if there is one."""
        return [("body", self.layers)] + ([("shortcut", self.shortcut)] if self.shortcut is not None else [])

    def output_shape(self, shape, where: str = "model", name: str = "residual"):
        """The body's output shape; a shortcut that does not give it is refused, saying what would."""
        body = list_output(self.layers, shape, where, f"{name}.body")
        given = shape if self.shortcut is None else list_output(self.shortcut, shape, where, f"{name}.shortcut")
        if body != given:
            what = "the identity shortcut passes" if self.shortcut is None else "the shortcut gives"
            raise SpecError(f"{where}: {name} (residual): the body gives {shape_text(body)} but {what} "
                            f"{shape_text(given)}, and the two are added: give {shortcut_fix(body, given)}")
        return body

    def to_dict(self):
        plain = {"type": self.type, "layers": [layer.to_dict() for layer in self.layers]}
        return plain | ({"shortcut": [layer.to_dict() for layer in self.shortcut]} if self.shortcut else {})

    def arguments(self):
        return {key: value for key, value in self.to_dict().items() if key != "type"}


@dataclass(frozen=True)
class ConcatSpec(LayerSpec):
    """output = cat([branch(x) for branch in branches], dim=1): the branches' channels side by side
    (GoogLeNet's Inception module); every branch must give the same height and width."""

    branches: tuple[tuple[LayerSpec, ...], ...]

    type = "concat"
    role = "block"
    image_input = True
    nested = ("branches",)

    def check(self, where):
        if not isinstance(self.branches, tuple) or not self.branches:
            raise SpecError(f"{where}: branches must be a list of at least one list of layers, like "
                            f"[[{{ type = \"conv2d\", out_channels = 8, kernel_size = 1 }}], [...]], "
                            f"got {self.branches!r}")
        for index, branch in enumerate(self.branches):
            check_layer_list(branch, f"branches.{index}", where)

    def children(self) -> list[tuple[str, tuple[LayerSpec, ...]]]:
        return [(f"branches.{index}", branch) for index, branch in enumerate(self.branches)]

    def output_shape(self, shape, where: str = "model", name: str = "concat"):
        """The branches' channels summed, their common height and width; a branch that differs is refused."""
        shapes = [list_output(branch, shape, where, f"{name}.branches.{index}")
                  for index, branch in enumerate(self.branches)]
        for index, branch_shape in enumerate(shapes[1:], start=1):
            if branch_shape[1:] != shapes[0][1:]:
                raise SpecError(f"{where}: {name} (concat): branches.{index} gives {shape_text(branch_shape)} but "
                                f"branches.0 gives {shape_text(shapes[0])}; concatenated on the channels, they "
                                f"must agree in every other dimension: make branches.{index} give (N, C, "
                                f"{', '.join(map(str, shapes[0][1:]))}) (its stride, padding or kernel_size)")
        return (sum(branch_shape[0] for branch_shape in shapes), *shapes[0][1:])

    def to_dict(self):
        return {"type": self.type, "branches": [[layer.to_dict() for layer in branch] for branch in self.branches]}

    def arguments(self):
        return {"branches": self.to_dict()["branches"]}


BLOCK_SPECS = (ResidualSpec, ConcatSpec)


class LayerEntry(NamedTuple):
    """One layer of the tree, as every reader sees it: its name, spec, shapes and nesting depth."""

    name: str  # torch's: "layers.3.body.0"
    spec: LayerSpec
    input_shape: tuple[int, ...]  # batch left out
    output_shape: tuple[int, ...]
    depth: int  # 0 for an entry of the model's own list
    gain: float  # a weight layer's Kaiming gain: the first activation after it (init_gain); else 1


def layer_entries(layers: tuple[LayerSpec, ...], input_shape: tuple[int, ...], prefix: str = "layers",
                  depth: int = 0, after: tuple[LayerSpec, ...] = ()) -> list[LayerEntry]:
    """Every layer of the (validated) list, a block before its own layers, in the order both sides
    build, run and name them. `after` is what follows the list in its parent (a weight layer at the
    end of a body takes its gain from the activation after the block)."""
    from scratch_nn.spec.layer_specs import init_gain  # here: layer_specs' registry holds these blocks
    entries, shape = [], tuple(input_shape)
    for index, layer in enumerate(layers):
        name, following = f"{prefix}.{index}", (*layers[index + 1:], *after)
        output = layer.output_shape(shape)
        gain = init_gain((layer, *following), 0) if layer.role == "weight" else 1.0
        entries.append(LayerEntry(name, layer, shape, output, depth, gain))
        for child, members in getattr(layer, "children", list)():
            entries += layer_entries(members, shape, f"{name}.{child}", depth + 1, following)
        shape = output
    return entries
