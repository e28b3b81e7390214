"""The spec: TOML loading, the compact --layers form, and every validation message."""
from __future__ import annotations

import math

import pytest

from scratch_nn.layer_specs import LAYER_SPECS, DropoutSpec, LeakyReLUSpec, LinearSpec, TanhSpec
from scratch_nn.notation import parse_layers
from scratch_nn.spec import (
    ACTIVATIONS,
    DEFAULT_SPEC,
    INITS,
    LOSSES,
    OPTIMIZERS,
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
layers = [
  { type = "linear", out_features = 32 },
  { type = "tanh" },
  { type = "linear", out_features = 10 },
]
[train]
lr = 0.01
"""
TABLES_TOML = """
name = "tiny"
[model]
[[model.layers]]
type = "linear"
out_features = 32
[[model.layers]]
type = "tanh"
[[model.layers]]
type = "linear"
out_features = 10
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
    dropout_bn = [layer.type for layer in load_builtin_spec("dropout-bn").model.layers]
    assert "batch_norm1d" in dropout_bn and "dropout" in dropout_bn
    assert load_builtin_spec("adam").train.optimizer == "adam"
    deep = load_builtin_spec("deep-sigmoid").model.layers
    assert len(deep) >= 12 and {layer.type for layer in deep if layer.role == "activation"} == {"sigmoid"}


@pytest.mark.parametrize("text", [MINIMAL_TOML, TABLES_TOML])
def test_toml_file_round_trip(tmp_path, text):
    """`layers = [{...}, ...]` and `[[model.layers]]` tables are the same list."""
    spec = load_spec(str(write(tmp_path, text)))
    assert spec.name == "tiny"
    assert spec.model.layers == (LinearSpec(out_features=32), TanhSpec(), LinearSpec(out_features=10))
    assert spec.model.shapes == ((32,), (32,), (10,)) and spec.model.input_shape == (784,)
    assert spec.train.lr == 0.01 and spec.train.optimizer == "sgd"


def test_the_plain_data_form_reads_back_as_the_same_spec():
    from scratch_nn.spec import spec_from_dict, to_dict

    for name in builtin_spec_names():
        spec = load_builtin_spec(name)
        plain = to_dict(spec)
        assert plain["model"]["layers"][0]["type"] in ("linear", "conv2d")
        assert spec_from_dict(plain, where="summary.json", default_name="x") == spec


def test_settings_have_torchs_names_and_defaults():
    """Each layer type's fields are its torch module's keyword arguments, with torch's defaults."""
    import dataclasses
    import inspect

    import torch

    modules = {"linear": torch.nn.Linear, "batch_norm1d": torch.nn.BatchNorm1d, "dropout": torch.nn.Dropout,
               "flatten": torch.nn.Flatten, "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
               "softplus": torch.nn.Softplus, "conv2d": torch.nn.Conv2d, "max_pool2d": torch.nn.MaxPool2d,
               "avg_pool2d": torch.nn.AvgPool2d, "batch_norm2d": torch.nn.BatchNorm2d, "dropout2d": torch.nn.Dropout2d}
    for kind, module in modules.items():
        torch_defaults = {name: parameter.default for name, parameter in inspect.signature(module).parameters.items()}
        for field in dataclasses.fields(LAYER_SPECS[kind]):
            if field.name == "init":  # not torch's: a layer's own init scheme
                continue
            assert field.name in torch_defaults, (kind, field.name)
            if torch_defaults[field.name] is not inspect.Parameter.empty:
                assert field.default == torch_defaults[field.name], (kind, field.name)


def test_betas_list_becomes_a_tuple(tmp_path):
    spec = load_spec(str(write(tmp_path, MINIMAL_TOML + "optimizer = 'adam'\nbetas = [0.8, 0.9]\n")))
    assert spec.train.betas == (0.8, 0.9)


@pytest.mark.parametrize("text, pattern", [
    (MINIMAL_TOML + "learning_rate = 0.1\n", r"spec\.toml: \[train\]: unknown key 'learning_rate'; allowed keys: .*lr"),
    (MINIMAL_TOML.replace("out_features = 32", "out_features = 32, units = 4"),
     r"layers\.0: unknown key 'units' for a linear layer; allowed keys: type, out_features, bias, init"),
    (MINIMAL_TOML.replace('"tanh" }', '"tanh", alpha = 1 }'),
     r"layers\.1: unknown key 'alpha' for a tanh layer; allowed keys: type \(it has no settings\)"),
    (MINIMAL_TOML.replace('"tanh"', '"swish"'),
     r"layers\.1: unknown layer type 'swish'; allowed: linear, batch_norm1d"),
    (MINIMAL_TOML.replace('{ type = "tanh" }', '{ p = 0.5 }'), r"layers\.1: missing key 'type'; allowed types: linear"),
    (MINIMAL_TOML.replace("out_features = 32", "bias = false"), r"layers\.0: a linear layer needs out_features"),
    (MINIMAL_TOML + "[extra]\n", r"unknown top-level key 'extra'"),
    ("name = 'x'\n", r"missing the \[model\] table"),
    ("[model]\ninit = 'xavier_uniform'\n", r"expected layers = \[\{ type = \.\.\. \}, \.\.\.\], one entry per layer"),
    (MINIMAL_TOML.replace("lr = 0.01", "lr = 0.01\nlr = 0.02"), r"not valid TOML: .*line 11"),
    (MINIMAL_TOML.replace('"tanh"', '"tanh'), r"not valid TOML: .*line 6"),
    (MINIMAL_TOML.replace("[model]", "[model]\ninput_size = 784"), r"input_size is now input_shape.*\[784\]"),
    (MINIMAL_TOML.replace("[model]", "[model]\noutput_size = 10"),
     r"output_size is now the last layer's own: end the layers with \{ type = \"linear\", out_features = 10 \}"),
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


def test_an_old_form_table_is_shown_in_the_new_form(tmp_path):
    old = """
[model]
[[model.layers]]
units = 64
activation = "leaky_relu"
negative_slope = 0.2
batch_norm = true
dropout = 0.5
"""
    with pytest.raises(SpecError) as info:
        load_spec(str(write(tmp_path, old)))
    message = str(info.value)
    assert "layers.0: { units = ... } is the old form of a hidden block; one entry is now one layer" in message
    assert ('{ type = "linear", out_features = 64 }, { type = "batch_norm1d" }, '
            '{ type = "leaky_relu", negative_slope = 0.2 }, { type = "dropout", p = 0.5 }') in message
    assert 'end the list with the output layer, { type = "linear", out_features = 10 }' in message
    assert "\n" not in message


@pytest.mark.parametrize("layers, input_shape, pattern", [
    ('{ type = "linear", out_features = 10 }', [1, 28, 28],
     r"layers\.0 \(linear\) needs an input of shape \(N, features\), got \(N, 1, 28, 28\); "
     r"put \{ type = \"flatten\" \} before it"),
    ('{ type = "flatten" }, { type = "batch_norm1d" }, { type = "linear", out_features = 7 }', [1, 28, 28],
     r"layers\.2 \(linear\) gives \(N, 7\), which does not fit MNIST's 10 classes"),
    ('{ type = "relu" }', [784], r"layers\.0 \(relu\) gives \(N, 784\), which does not fit MNIST's 10 classes"),
    ('{ type = "linear", out_features = 10 }', [100],
     r"input_shape \[100\] does not fit MNIST images, which have 784 pixels \(28x28\); use \[784\] or \[1, 28, 28\]"),
    ('{ type = "flatten", start_dim = 0 }, { type = "linear", out_features = 10 }', [784],
     r"layers\.0 \(flatten\): flatten\(start_dim=0, end_dim=-1\) does not fit .* keep the batch dimension 0"),
    ('{ type = "linear", out_features = 10 }', [1, 28, 28, 0], r"input_shape must be a list of positive integers"),
    ('{ type = "dropout", p = 1.0 }, { type = "linear", out_features = 10 }', [784],
     r"layers\.0: p must be a finite number in \[0, 1\), got 1.0"),
    ('{ type = "linear", out_features = 10, init = "he" }', [784],
     r"layers\.0: unknown init 'he'; allowed: torch_default"),
])
def test_shapes_are_propagated_once_and_a_misfit_names_the_layer(tmp_path, layers, input_shape, pattern):
    text = f"[model]\ninput_shape = {input_shape}\nlayers = [{layers}]\n"
    with pytest.raises(SpecError, match=pattern):
        load_spec(str(write(tmp_path, text)))


def test_image_input_with_flatten_and_per_layer_init(tmp_path):
    text = """
[model]
input_shape = [1, 28, 28]
init = "kaiming_uniform"
layers = [
  { type = "flatten" },
  { type = "linear", out_features = 32, init = "xavier_normal" },
  { type = "leaky_relu", negative_slope = 0.2 },
  { type = "dropout", p = 0.1 },
  { type = "linear", out_features = 10 },
]
"""
    model = load_spec(str(write(tmp_path, text))).model
    assert model.shapes == ((784,), (32,), (32,), (32,), (10,))
    assert model.layers[2] == LeakyReLUSpec(negative_slope=0.2) and model.layers[3] == DropoutSpec(p=0.1)
    assert model.weight_layers() == [1, 4]
    assert model.weight_init(1)[0] == "xavier_normal" and model.weight_init(4) == ("kaiming_uniform", 1.0)
    assert model.weight_init(1)[1] == pytest.approx(math.sqrt(2 / (1 + 0.2**2)), rel=1e-15)


def test_parse_layers_compact_form():
    layers = parse_layers("256:relu,128:tanh,64,10")
    assert [layer.type for layer in layers] == ["linear", "relu", "linear", "tanh", "linear", "relu", "linear"]
    assert [layer.out_features for layer in layers if layer.type == "linear"] == [256, 128, 64, 10]


@pytest.mark.parametrize("text, pattern", [
    ("256:foo,10", r"unknown activation 'foo'; allowed: " + ", ".join(ACTIVATIONS)),
    ("0:relu,10", r"units must be an integer >= 1, got 0|units must be a positive integer, got 0"),
    ("-3:relu,10", r"units must be a positive integer, got -3"),
    ("2.5:relu,10", r"units must be a positive integer, got '2.5'"),
    ("256:relu,", r"expected a comma-separated list"),
    ("256:relu,10:relu+bn", r"the last item is the output size alone"),
])
def test_parse_layers_errors(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_layers(text)


def test_output_size_must_fit_mnist():
    spec = load_spec(DEFAULT_SPEC)
    with pytest.raises(SpecError, match=r"layers\.2 \(linear\) gives \(N, 7\), which does not fit MNIST's 10 classes"):
        with_overrides(spec, layers="256:relu,7")


def test_input_size_must_fit_mnist():
    spec = load_spec(DEFAULT_SPEC)
    bad = Spec(name="x", model=ModelSpec(layers=spec.model.layers, input_shape=(100,)), train=spec.train)
    with pytest.raises(SpecError, match=r"input_shape \[100\] does not fit MNIST images, which have 784 pixels"):
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
    text = MINIMAL_TOML.replace('{ type = "tanh" }', f'{{ type = "tanh" }}, {{ type = "dropout", p = {p} }}')
    with pytest.raises(SpecError, match=rf"layers\.2: p must be a finite number in \[0, 1\), got {p}"):
        load_spec(str(write(tmp_path, text)))


def test_out_features_not_an_integer_in_toml(tmp_path):
    with pytest.raises(SpecError, match=r"layers\.0: out_features must be an integer >= 1, got 32.5"):
        load_spec(str(write(tmp_path, MINIMAL_TOML.replace("out_features = 32", "out_features = 32.5"))))


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
