"""The fit's default spec, and the variations `--vary KEY=V1,V2` and the tour make of a spec.

    spec = default_fit_spec()                      # sin on [-3, 3], 20:tanh,1, SGD with momentum, 2000 steps
    spec = varied(spec, "width", "50")             # the same spec with 50 units per hidden layer
    for title, spec in combinations(spec, [("activation", ["relu", "tanh"]), ("lr", ["0.01", "0.1"])]): ...

A network's hidden layers are read as (width, depth, activation): `width` units in each of `depth`
hidden layers, each followed by `activation` ("none": no activation, a linear network).
"""
from __future__ import annotations

import itertools
from dataclasses import replace

from benchmark.core.errors import UserError
from scratch_nn.spec import ACTIVATIONS, INITS, LOSSES, OPTIMIZERS, ModelSpec, Spec, TrainSpec, validate
from scratch_nn.spec.data_spec import DataSpec
from scratch_nn.spec.layer_specs import LAYER_SPECS, LinearSpec

VARY_KEYS = ("activation", "init", "optimizer", "lr", "width", "depth", "loss")
NO_ACTIVATION = "none"


def default_fit_spec(source: str = "sin") -> Spec:
    """What `svt fit` trains without --spec: 20 tanh units, MSE, full batch, SGD with momentum."""
    model = ModelSpec(layers=hidden_layers(20, 1, "tanh"), input_shape=(1,), loss="mse")
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=0, epochs=2000, seed=0)
    return validate(Spec(name="fit", model=model, train=train, data=DataSpec(source=source),
                         description="a small tanh network fits a function of one variable"), "fit")


def hidden_layers(width: int, depth: int, activation: str) -> tuple:
    """`depth` hidden layers of `width` units, each with `activation` (or none), then Linear(1)."""
    block = [LinearSpec(out_features=width)] + ([] if activation == NO_ACTIVATION else [LAYER_SPECS[activation]()])
    return tuple(block * depth) + (LinearSpec(out_features=1),)


def shape_of(model: ModelSpec) -> tuple[int, int, str]:
    """(width, depth, activation) of a network of equal hidden blocks (the first block's, else)."""
    layers = model.layers
    linear = [index for index, layer in enumerate(layers) if layer.type == "linear"]
    if len(linear) == 1:
        return 1, 0, NO_ACTIVATION
    after = layers[linear[0] + 1]
    return layers[0].out_features, len(linear) - 1, after.type if after.type in ACTIVATIONS else NO_ACTIVATION


def parse_vary(text: str) -> tuple[str, list[str]]:
    """`KEY=V1,V2,...` -> (KEY, [V1, V2, ...])."""
    key, equals, values = text.partition("=")
    if not equals or key not in VARY_KEYS or not values or not all(values.split(",")):
        raise UserError(f"--vary {text!r}: expected KEY=V1,V2,... with KEY one of {', '.join(VARY_KEYS)}, "
                        "e.g. --vary activation=relu,tanh")
    return key, values.split(",")


ALLOWED = {"activation": ", ".join((*ACTIVATIONS, NO_ACTIVATION)), "init": ", ".join(INITS),
           "loss": ", ".join(LOSSES), "optimizer": ", ".join(OPTIMIZERS), "lr": "a number > 0",
           "width": "an integer >= 1", "depth": "an integer >= 0"}


def refuse(key: str, value: str) -> UserError:
    return UserError(f"--vary {key}={value}: {value!r} is not allowed; {key} takes {ALLOWED[key]}")


def number(key: str, value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise refuse(key, value) from None


def varied(spec: Spec, key: str, value: str) -> Spec:
    """`spec` with one setting changed (a value of `--vary`), validated."""
    where = f"--vary {key}={value}"
    if key in ("width", "depth", "activation"):
        shape = dict(zip(("width", "depth", "activation"), shape_of(spec.model)))
        shape[key] = value if key == "activation" else number(key, value, int)
        if shape["activation"] not in (*ACTIVATIONS, NO_ACTIVATION) or shape["width"] < 1 or shape["depth"] < 0:
            raise refuse(key, value)
        return validate(replace(spec, model=replace(spec.model, layers=hidden_layers(**shape))), where)
    if key in ("init", "loss"):
        if value not in (INITS if key == "init" else LOSSES):
            raise refuse(key, value)
        return validate(replace(spec, model=replace(spec.model, **{key: value})), where)
    if key == "optimizer" and value not in OPTIMIZERS:
        raise refuse(key, value)
    train = replace(spec.train, **{key: number(key, value, float) if key == "lr" else value})
    return validate(replace(spec, train=train), where)


def combinations(spec: Spec, varies: list[tuple[str, list[str]]]) -> list[tuple[str, Spec]]:
    """Every combination of the varied values, in order: (title "activation=relu lr=0.1", spec)."""
    found = []
    for values in itertools.product(*[[(key, value) for value in choices] for key, choices in varies]):
        changed = spec
        for key, value in values:
            changed = varied(changed, key, value)
        found.append((" ".join(f"{key}={value}" for key, value in values), changed))
    return found
