"""The spec: TOML loading, the compact --layers form, and every validation message."""
from __future__ import annotations

import math

import pytest

from scratch_nn.notation import parse_layers
from scratch_nn.spec import (
    ACTIVATIONS,
    DEFAULT_SPEC,
    INITS,
    LOSSES,
    OPTIMIZERS,
    LayerSpec,
    ModelSpec,
    Spec,
    SpecError,
    TrainSpec,
    builtin_spec_names,
    load_builtin_spec,
    load_spec,
    validate,
    with_overrides,
)

MINIMAL_TOML = """
name = "tiny"
[model]
[[model.layers]]
units = 32
activation = "tanh"
[train]
lr = 0.01
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_specs_cover_the_demonstrations():
    names = builtin_spec_names()
    for required in (DEFAULT_SPEC, "deep-sigmoid", "deep-relu-he", "dropout-bn", "adam"):
        assert required in names
    dropout_bn = load_builtin_spec("dropout-bn").model.layers
    assert any(layer.batch_norm for layer in dropout_bn) and any(layer.dropout > 0 for layer in dropout_bn)
    assert load_builtin_spec("adam").train.optimizer == "adam"
    deep = load_builtin_spec("deep-sigmoid").model.layers
    assert len(deep) >= 6 and {layer.activation for layer in deep} == {"sigmoid"}


def test_toml_file_round_trip(tmp_path):
    spec = load_spec(str(write(tmp_path, MINIMAL_TOML)))
    assert spec.name == "tiny"
    assert spec.model.layers == (LayerSpec(units=32, activation="tanh"),)
    assert spec.model.output_size == 10 and spec.model.input_size == 784
    assert spec.train.lr == 0.01 and spec.train.optimizer == "sgd"


def test_betas_list_becomes_a_tuple(tmp_path):
    spec = load_spec(str(write(tmp_path, MINIMAL_TOML + "optimizer = 'adam'\nbetas = [0.8, 0.9]\n")))
    assert spec.train.betas == (0.8, 0.9)


@pytest.mark.parametrize("text, pattern", [
    (MINIMAL_TOML + "learning_rate = 0.1\n", r"spec\.toml: \[train\]: unknown key 'learning_rate'; allowed keys: .*lr"),
    (MINIMAL_TOML.replace("units = 32", "units = 32\nunit = 4"), r"layers\[0\]: unknown key 'unit'"),
    (MINIMAL_TOML + "[extra]\n", r"unknown top-level key 'extra'"),
    ("name = 'x'\n", r"missing the \[model\] table"),
    ("[model]\ninit = 'xavier_uniform'\n", r"expected at least one \[\[model.layers\]\]"),
    (MINIMAL_TOML.replace("lr = 0.01", "lr = 0.01\nlr = 0.02"), r"not valid TOML: .*line 9"),
    (MINIMAL_TOML.replace('"tanh"', '"tanh'), r"not valid TOML: .*line 6"),
])
def test_bad_toml_names_file_key_and_line(tmp_path, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=pattern) as info:
        load_spec(str(path))
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_builtin():
    with pytest.raises(SpecError, match=r"'nope/missing.toml' does not exist.*mnist-mlp"):
        load_spec("nope/missing.toml")
    with pytest.raises(SpecError, match=r"unknown built-in spec 'no-such-spec'; built-in specs: .*mnist-mlp"):
        load_spec("no-such-spec")


def test_parse_layers_compact_form():
    layers, output_size = parse_layers("256:relu,128:tanh,64,10")
    assert [(layer.units, layer.activation) for layer in layers] == [(256, "relu"), (128, "tanh"), (64, "relu")]
    assert output_size == 10


@pytest.mark.parametrize("text, pattern", [
    ("256:foo,10", r"unknown activation 'foo'; allowed: " + ", ".join(ACTIVATIONS)),
    ("0:relu,10", r"units must be an integer >= 1, got 0|units must be a positive integer, got 0"),
    ("-3:relu,10", r"units must be a positive integer, got -3"),
    ("2.5:relu,10", r"units must be a positive integer, got '2.5'"),
    ("256:relu,", r"expected a comma-separated list"),
    ("256:relu,10:relu", r"the last item is the output size alone"),
])
def test_parse_layers_errors(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_layers(text)


def test_output_size_must_fit_mnist():
    spec = load_spec(DEFAULT_SPEC)
    with pytest.raises(SpecError, match=r"output size 7 does not fit MNIST, which has 10 classes"):
        with_overrides(spec, layers="256:relu,7")


def test_input_size_must_fit_mnist():
    spec = load_spec(DEFAULT_SPEC)
    bad = Spec(name="x", model=ModelSpec(layers=spec.model.layers, input_size=100), train=spec.train)
    with pytest.raises(SpecError, match=r"input_size 100 does not fit MNIST images, which have 784 pixels"):
        validate(bad)


@pytest.mark.parametrize("train_changes, pattern", [
    ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ({"lr": 0.0}, r"lr must be a finite number in \(0, inf\), got 0"),
    ({"lr": -1.0}, r"lr must be a finite number"),
    ({"lr": math.nan}, r"lr must be a finite number"),
    ({"lr": math.inf}, r"lr must be a finite number"),
    ({"optimizer": "adagrad"}, r"unknown optimizer 'adagrad'; allowed: " + ", ".join(OPTIMIZERS)),
    ({"epochs": 0}, r"epochs must be an integer >= 1"),
    ({"nesterov": True, "momentum": 0.0}, r"nesterov needs momentum > 0"),
])
def test_train_validation(train_changes, pattern):
    with pytest.raises(SpecError, match=pattern):
        with_overrides(load_spec(DEFAULT_SPEC), train=train_changes)


@pytest.mark.parametrize("model_changes, pattern", [
    ({"init": "he"}, r"unknown init 'he'; allowed: " + ", ".join(INITS)),
    ({"loss": "hinge"}, r"unknown loss 'hinge'; allowed: " + ", ".join(LOSSES)),
    ({"dtype": "float16"}, r"unknown dtype 'float16'; allowed: float32, float64"),
])
def test_model_validation(model_changes, pattern):
    with pytest.raises(SpecError, match=pattern):
        with_overrides(load_spec(DEFAULT_SPEC), model=model_changes)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_outside_zero_one(tmp_path, p):
    text = MINIMAL_TOML.replace("units = 32", f"units = 32\ndropout = {p}")
    with pytest.raises(SpecError, match=rf"layers\[0\]: dropout must be a finite number in \[0, 1\), got {p}"):
        load_spec(str(write(tmp_path, text)))


def test_units_not_an_integer_in_toml(tmp_path):
    with pytest.raises(SpecError, match=r"units must be an integer >= 1, got 32.5"):
        load_spec(str(write(tmp_path, MINIMAL_TOML.replace("units = 32", "units = 32.5"))))


def test_overrides_ignore_none_and_keep_the_rest():
    spec = load_spec(DEFAULT_SPEC)
    new = with_overrides(spec, model={"dtype": "float64", "init": None}, train={"lr": 0.2, "seed": None})
    assert new.model.dtype == "float64" and new.model.init == spec.model.init
    assert new.train.lr == 0.2 and new.train.seed == spec.train.seed
    assert isinstance(new.train, TrainSpec)


def test_settings_in_use_leave_out_what_another_choice_reads():
    from scratch_nn.spec import settings_in_use

    default = settings_in_use(with_overrides(load_spec("mnist-mlp"), train={"schedule": "constant"}))
    assert "init_value" not in default  # "constant" names a schedule and an init: the schedule's does not count
    sgd = settings_in_use(load_spec("mnist-mlp"))
    assert {"momentum", "dampening", "nesterov", "lr", "weight_decay", "batch_size", "seed", "dtype"} <= set(sgd)
    assert not {"betas", "eps", "alpha", "step_size", "gamma", "init_value", "layers"} & set(sgd)
    assert sgd["label_smoothing"] == 0.0  # cross-entropy reads it

    adam = settings_in_use(with_overrides(load_spec("mnist-mlp"), train={"optimizer": "adam", "schedule": "step"},
                                          model={"init": "constant", "loss": "mse"}))
    assert {"betas", "eps", "step_size", "gamma", "init_value"} <= set(adam)
    assert not {"momentum", "dampening", "nesterov", "alpha", "label_smoothing"} & set(adam)
    rmsprop = settings_in_use(with_overrides(load_spec("mnist-mlp"), train={"optimizer": "rmsprop"}))
    assert {"alpha", "eps", "momentum"} <= set(rmsprop) and "nesterov" not in rmsprop
