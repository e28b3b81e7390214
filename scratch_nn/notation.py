"""The compact form of a network's layers: what `--layers` reads and what every command prints.

    256:relu,128:tanh,10                    two hidden layers, then the output size
    8x128:sigmoid+bn,10                     eight equal hidden layers, each with batch-norm
    512:relu+bn+dropout0.2,256:leaky_relu0.1+dropout0.5,10

Grammar (one notation, read by `parse_layers` and written by `format_layers`, so that anything
`svt specs`, `describe`, `sanity` or a report prints can be given back to `--layers`):

    LIST    = ITEM "," ... "," OUTPUT       the hidden layers in order, then the output size
    ITEM    = [COUNT "x"] UNITS [":" ACTIVATION] ["+bn"] ["+dropout" P]
    OUTPUT  = UNITS                          no activation: the loss applies softmax

- `COUNT x` repeats the item: `3x64:tanh` is `64:tanh,64:tanh,64:tanh`.
- ACTIVATION is one of `scratch_nn.spec.ACTIVATIONS` (default relu); `leaky_relu` may carry its
  negative slope right after the name, `leaky_relu0.2` (default 0.01, as torch).
- `+bn` puts a BatchNorm1d after the Linear; `+dropoutP` a Dropout(p = P) after the activation,
  P in [0, 1). The two may come in either order; they are printed `+bn` first.

Numbers are printed with `repr`, which reads back as the same float, so a spec survives the round
trip `parse_layers(format_layers(spec.model))` exactly.
"""
from __future__ import annotations

from scratch_nn.spec import ACTIVATIONS, LayerSpec, ModelSpec, SpecError, validate_layer

LEAKY = "leaky_relu"
DEFAULT_SLOPE = LayerSpec.negative_slope  # 0.01, torch's default for nn.LeakyReLU
EXAMPLE = "256:relu,128:tanh,10"


def format_layer(layer: LayerSpec) -> str:
    """One hidden layer as `units:activation[slope][+bn][+dropoutP]`."""
    text = f"{layer.units}:{layer.activation}"
    if layer.activation == LEAKY and layer.negative_slope != DEFAULT_SLOPE:
        text += repr(float(layer.negative_slope))
    if layer.batch_norm:
        text += "+bn"
    if layer.dropout:
        text += f"+dropout{float(layer.dropout)!r}"
    return text


def format_layers(model: ModelSpec) -> str:
    """The hidden layers and the output size in the `--layers` form, runs of equal layers as `8x128:sigmoid`."""
    runs: list[list] = []  # [count, text]
    for layer in model.layers:
        text = format_layer(layer)
        if runs and runs[-1][1] == text:
            runs[-1][0] += 1
        else:
            runs.append([1, text])
    hidden = [f"{count}x{text}" if count > 1 else text for count, text in runs]
    return ",".join(hidden + [str(model.output_size)])


def parse_layers(text: str, where: str = "--layers") -> tuple[tuple[LayerSpec, ...], int]:
    """Parse the compact form (see the module docstring) into hidden layers and the output size."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise SpecError(f"{where}: expected a comma-separated list like {EXAMPLE}, got {text!r}")
    layers: list[LayerSpec] = []
    for index, item in enumerate(items[:-1]):
        count, layer = parse_item(item, where)
        validate_layer(layer, f"{where} item {index + 1} {item!r}")
        layers += [layer] * count
    output_text, colon, _ = items[-1].partition(":")
    if colon or "+" in output_text or "x" in output_text:
        raise SpecError(f"{where}: the last item is the output size alone (e.g. 10), got {items[-1]!r}: "
                        "the output layer has no activation, batch-norm or dropout (the loss applies softmax)")
    return tuple(layers), parse_count(output_text, "units", items[-1], where)


def parse_item(item: str, where: str) -> tuple[int, LayerSpec]:
    """`[COUNTx]UNITS[:ACTIVATION][+bn][+dropoutP]` -> (COUNT, the layer)."""
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
    return count, LayerSpec(units=units, activation=activation, negative_slope=slope, batch_norm=batch_norm,
                            dropout=dropout)


def parse_activation(text: str, item: str, where: str) -> tuple[str, float]:
    """An activation name, or `leaky_relu` with its negative slope glued on (`leaky_relu0.2`)."""
    if text in ACTIVATIONS:
        return text, DEFAULT_SLOPE
    if text.startswith(LEAKY):
        return LEAKY, parse_number(text[len(LEAKY):], "the leaky_relu slope", item, where)
    return text, DEFAULT_SLOPE  # validate_layer names it as unknown, with the allowed names


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
