"""The compact form of a network's layers: what `--layers` reads and what every command prints.

    256:relu,128:tanh,10                    two hidden blocks, then the output size
    8x128:sigmoid+bn,10                     eight equal hidden blocks, each with batch-norm
    512:relu+bn+dropout0.2,256:leaky_relu0.1+dropout0.5,10

Grammar (one notation, read by `parse_layers` and written by `format_layers`, so that anything
`svt specs`, `describe`, `sanity` or a report prints can be given back to `--layers`):

    LIST    = ITEM "," ... "," OUTPUT       the hidden blocks in order, then the output size
    ITEM    = [COUNT "x"] UNITS [":" ACTIVATION] ["+bn"] ["+dropout" P]
    OUTPUT  = UNITS [":" ACTIVATION]         usually none (cross-entropy applies softmax); `10:sigmoid`
                                            for a squared-error or binary cross-entropy output

An ITEM is a block of layers of the spec's list: `linear(UNITS)`, then `batch_norm1d` if `+bn`,
then the activation, then `dropout(P)` if `+dropoutP`; the OUTPUT is one `linear`, followed by its
activation when it names one. So `256:relu,10` is the list [linear 256, relu, linear 10] and names
its layers layers.0 to layers.2; `30:sigmoid,10:sigmoid` is [linear 30, sigmoid, linear 10, sigmoid].

- `COUNT x` repeats the item: `3x64:tanh` is `64:tanh,64:tanh,64:tanh`.
- ACTIVATION is one of `scratch_nn.spec.layer_specs.ACTIVATIONS` with its default settings (default
  relu); `leaky_relu` may carry its negative slope right after the name, `leaky_relu0.2`.
- `+bn` and `+dropoutP` (P in [0, 1); P = 0 adds no layer) may come in either order; they are
  printed `+bn` first.

A list that is not such blocks (a flatten, a layer's own init, batch-norm's eps, ...) has no
compact form: `format_layers` returns None and `layers_text` says so.

Numbers are printed with `repr`, which reads back as the same float, so a list survives the round
trip `parse_layers(format_layers(model))` exactly.
"""
from __future__ import annotations

from scratch_nn.spec.layer_specs import (
    ACTIVATIONS,
    LAYER_SPECS,
    BatchNorm1dSpec,
    DropoutSpec,
    LayerSpec,
    LeakyReLUSpec,
    LinearSpec,
    SpecError,
    check_choice,
)

LEAKY = "leaky_relu"
DEFAULT_SLOPE = LeakyReLUSpec.negative_slope  # 0.01, torch's default for nn.LeakyReLU
EXAMPLE = "256:relu,128:tanh,10"


def block_layers(units: int, activation: str = "relu", negative_slope: float = DEFAULT_SLOPE,
                 batch_norm: bool = False, dropout: float = 0.0, where: str = "--layers") -> list[LayerSpec]:
    """One hidden block as its layers: linear(units), [batch_norm1d], the activation, [dropout(p)]."""
    check_choice(activation, ACTIVATIONS, "activation", where)
    layers: list[LayerSpec] = [LinearSpec(out_features=units)]
    if batch_norm:
        layers.append(BatchNorm1dSpec())
    layers.append(LeakyReLUSpec(negative_slope) if activation == LEAKY else LAYER_SPECS[activation]())
    if dropout:
        layers.append(DropoutSpec(p=dropout))
    for layer in layers:
        layer.check(where)
    return layers


def format_block(block: tuple[LayerSpec, ...]) -> str | None:
    """A hidden block's `units:activation[slope][+bn][+dropoutP]`, or None if these layers are not one."""
    dropout = block[-1] if block[-1].type == "dropout" else None
    core = block[:-1] if dropout is not None else block
    if len(core) not in (2, 3) or (len(core) == 3 and core[1] != BatchNorm1dSpec()):
        return None
    linear, activation = core[0], core[-1]
    if linear != LinearSpec(linear.out_features) or activation.role != "activation":
        return None
    activation_text = format_activation(activation)
    if activation_text is None:
        return None  # an activation with settings other than its defaults (elu's alpha, ...)
    if dropout is not None and not dropout.p:
        return None  # +dropout0 adds no layer when read back
    text = f"{linear.out_features}:{activation_text}"
    if len(core) == 3:
        text += "+bn"
    if dropout is not None:
        text += f"+dropout{float(dropout.p)!r}"
    return text


def format_layers(model) -> str | None:
    """The `--layers` form of a ModelSpec's list (runs of equal blocks as `8x128:sigmoid`), or None
    when the list is not hidden blocks and an output linear (see the module docstring)."""
    layers = model.layers
    output_activation = ""
    if len(layers) > 1 and layers[-1].role == "activation" and layers[-2].type == "linear":
        output_activation = format_activation(layers[-1])  # `10:sigmoid`
        if output_activation is None:
            return None
        layers = layers[:-1]
    starts = [index for index, layer in enumerate(layers) if layer.type == "linear"]
    if not starts or starts[0] != 0 or starts[-1] != len(layers) - 1:
        return None
    output = layers[-1]
    if output != LinearSpec(output.out_features):
        return None
    runs: list[list] = []  # [count, text]
    for start, end in zip(starts, starts[1:]):
        text = format_block(layers[start:end])
        if text is None:
            return None
        if runs and runs[-1][1] == text:
            runs[-1][0] += 1
        else:
            runs.append([1, text])
    hidden = [f"{count}x{text}" if count > 1 else text for count, text in runs]
    return ",".join(hidden + [f"{output.out_features}{':' if output_activation else ''}{output_activation}"])


def format_activation(activation: LayerSpec) -> str | None:
    """`relu`, `leaky_relu0.2` (a slope other than the default), or None for other settings than the defaults."""
    if activation.type == LEAKY:
        slope = activation.negative_slope
        return LEAKY + ("" if slope == DEFAULT_SLOPE else repr(float(slope)))
    return activation.type if activation == LAYER_SPECS[activation.type]() else None


def layers_text(model) -> str:
    """What the commands print for a model's layers: the `--layers` form, or why there is none."""
    text = format_layers(model)
    if text is not None:
        return text
    blocks = any(layer.role == "block" for layer in model.layers)
    why = "; blocks have none: write them in a TOML spec" if blocks else ""
    return f"{len(model.layers)} layers ({', '.join(layer.type for layer in model.layers)}; no --layers form{why})"


def parse_layers(text: str, where: str = "--layers") -> tuple[LayerSpec, ...]:
    """Parse the compact form (see the module docstring) into the spec's list of layers."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise SpecError(f"{where}: expected a comma-separated list like {EXAMPLE}, got {text!r}")
    layers: list[LayerSpec] = []
    for index, item in enumerate(items[:-1]):
        count, block = parse_item(item, f"{where} item {index + 1} {item!r}")
        layers += block * count
    return (*layers, *parse_output(items[-1], where))


def parse_output(item: str, where: str) -> tuple[LayerSpec, ...]:
    """`UNITS` -> (linear,); `UNITS:ACTIVATION` -> (linear, the activation): e.g. `10:sigmoid`."""
    output_text, colon, activation_text = item.partition(":")
    if "+" in item or "x" in output_text or (colon and not activation_text):
        raise SpecError(f"{where}: the last item is the output size alone (e.g. 10) or with an output "
                        f"activation (e.g. 10:sigmoid), got {item!r}: the output layer has no batch-norm, "
                        "dropout or repeat count")
    linear = LinearSpec(out_features=parse_count(output_text, "units", item, where))
    if not colon:
        return (linear,)
    name, slope = parse_activation(activation_text, item, where)
    check_choice(name, ACTIVATIONS, "activation", f"{where} output item {item!r}")
    activation = LeakyReLUSpec(slope) if name == LEAKY else LAYER_SPECS[name]()
    activation.check(where)
    return (linear, activation)


def parse_item(item: str, where: str) -> tuple[int, list[LayerSpec]]:
    """`[COUNTx]UNITS[:ACTIVATION][+bn][+dropoutP]` -> (COUNT, the block's layers)."""
    head, *options = item.split("+")
    size_text, _, activation_text = head.partition(":")
    count_text, times, units_text = size_text.rpartition("x")
    count = parse_count(count_text, "the repeat count (COUNT in COUNTxUNITS)", item, where) if times else 1
    units = parse_count(units_text, "units", item, where)
    activation, slope = parse_activation(activation_text or "relu", item, where)
    batch_norm, dropout, seen = False, 0.0, set()
    for option in options:
        kind = "dropout" if option.startswith("dropout") else option
        if kind == "bn" and kind not in seen:
            batch_norm = True
        elif kind == "dropout" and kind not in seen:
            dropout = parse_number(option[len("dropout"):], "dropout p", item, where)
        else:
            raise SpecError(f"{where}: unknown or repeated layer option '+{option}' in {item!r}; allowed, "
                            "once each: +bn (batch-norm), +dropoutP (dropout with p = P, e.g. +dropout0.2)")
        seen.add(kind)
    return count, block_layers(units, activation, slope, batch_norm, dropout, where)


def parse_activation(text: str, item: str, where: str) -> tuple[str, float]:
    """An activation name, or `leaky_relu` with its negative slope glued on (`leaky_relu0.2`)."""
    if text in ACTIVATIONS:
        return text, DEFAULT_SLOPE
    if text.startswith(LEAKY):
        return LEAKY, parse_number(text[len(LEAKY):], "the leaky_relu slope", item, where)
    return text, DEFAULT_SLOPE  # block_layers names it as unknown, with the allowed names


def parse_count(text: str, what: str, item: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError(f"{where}: {what} must be a positive integer, got {text!r} in {item!r}") from None
    if value <= 0:
        raise SpecError(f"{where}: {what} must be a positive integer, got {value} in {item!r}")
    return value


def parse_number(text: str, what: str, item: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{where}: {what} must be a number in [0, 1) right after its name (e.g. "
                        f"+dropout0.2, leaky_relu0.1), got {text!r} in {item!r}") from None
