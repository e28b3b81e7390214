"""Initialisers: each scheme's distribution against torch.nn.init's on the same shape, bias rules, determinism."""
import math

import numpy as np
import pytest
import torch

from scratch_nn.init import SCHEMES, calculate_gain, fan_in_and_fan_out, init_weight_layer
from scratch_nn.layers import Linear
from scratch_nn.model import MLP
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.notation import parse_layers

FAN_OUT, FAN_IN = 400, 500  # 200,000 weights: the sample std is within ~0.3% of the true one
# Our activations without a torch gain use relu's (documented in scratch_nn.init).
TORCH_NONLINEARITY = {"identity": "linear", "linear": "linear", "relu": "relu", "leaky_relu": "leaky_relu",
                      "sigmoid": "sigmoid", "tanh": "tanh", "elu": "relu", "gelu": "relu", "softplus": "relu"}


@pytest.fixture
def seed():
    return 1234


def torch_weight(scheme, nonlinearity, slope, dtype=torch.float64):
    """The same weight shape initialised by torch itself."""
    torch.manual_seed(0)
    if scheme == "torch_default":
        return torch.nn.Linear(FAN_IN, FAN_OUT, dtype=dtype).weight.detach()
    weight = torch.empty(FAN_OUT, FAN_IN, dtype=dtype)
    kaiming = {"a": slope, "nonlinearity": TORCH_NONLINEARITY[nonlinearity]}
    {"xavier_uniform": lambda: torch.nn.init.xavier_uniform_(weight),
     "xavier_normal": lambda: torch.nn.init.xavier_normal_(weight),
     "kaiming_uniform": lambda: torch.nn.init.kaiming_uniform_(weight, **kaiming),
     "kaiming_normal": lambda: torch.nn.init.kaiming_normal_(weight, **kaiming)}[scheme]()
    return weight


def our_linear(scheme, seed, nonlinearity="linear", slope=0.01, dtype=np.float64, value=0.0):
    layer = Linear(FAN_IN, FAN_OUT, dtype=dtype)
    init_weight_layer(layer, scheme, np.random.default_rng(seed), calculate_gain(nonlinearity, slope), value)
    return layer


CASES = [("torch_default", "relu", 0.01), ("xavier_uniform", "tanh", 0.01), ("xavier_normal", "relu", 0.01),
         *[("kaiming_uniform", name, 0.2) for name in TORCH_NONLINEARITY],
         *[("kaiming_normal", name, 0.2) for name in TORCH_NONLINEARITY]]


@pytest.mark.parametrize("scheme, nonlinearity, slope", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_distribution_matches_torch(scheme, nonlinearity, slope, dtype, seed):
    ours = our_linear(scheme, seed, nonlinearity, slope, dtype).params["weight"]
    theirs = torch_weight(scheme, nonlinearity, slope).numpy()
    assert ours.dtype == dtype
    assert ours.std() == pytest.approx(theirs.std(), rel=0.01)
    assert abs(ours.mean()) < 4 * theirs.std() / math.sqrt(ours.size)
    if "uniform" in scheme or scheme == "torch_default":
        # 200,000 uniform draws come within ~1e-5 of the bound, from inside
        assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=2e-4)
        assert np.abs(ours).max() <= np.abs(theirs).max() * (1 + 2e-4)
    else:
        assert np.mean(np.abs(ours) > 2 * theirs.std()) == pytest.approx(0.0455, abs=0.003)  # 2-sigma tails


@pytest.mark.parametrize("nonlinearity", ["linear", "sigmoid", "tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("slope", [None, 0.0, 0.2])
def test_calculate_gain_matches_torch(nonlinearity, slope):
    expected = torch.nn.init.calculate_gain(nonlinearity, slope)
    assert calculate_gain(nonlinearity, slope) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_of_activations_torch_lacks_is_relus():
    assert calculate_gain("identity") == 1.0
    for name in ("elu", "gelu", "softplus"):
        assert calculate_gain(name) == math.sqrt(2.0)
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        calculate_gain("swish")


@pytest.mark.parametrize("shape", [(7, 5), (6, 3, 5), (8, 2, 3, 3), (4, 1, 5, 5)])
def test_fan_in_and_fan_out_of_any_weight_shape_are_torchs(shape):
    """Linear (out, in) and conv (out, in / groups, kH, kW) weights: torch's _calculate_fan_in_and_fan_out."""
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert fan_in_and_fan_out(np.empty(shape)) == expected


def test_fan_in_needs_two_dimensions():
    with pytest.raises(ValueError, match="fewer than 2 dimensions, got shape \\(5,\\)"):
        fan_in_and_fan_out(np.empty(5))


def test_torch_default_bias_is_uniform_within_one_over_sqrt_fan_in(seed):
    bias = our_linear("torch_default", seed).params["bias"]
    torch_bias = torch.nn.Linear(FAN_IN, FAN_OUT, dtype=torch.float64).bias.detach().numpy()
    bound = 1 / math.sqrt(FAN_IN)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.98 * bound
    assert np.abs(torch_bias).max() <= bound  # the formula is torch's
    assert bias.std() == pytest.approx(bound / math.sqrt(3), rel=0.06)  # 400 draws


@pytest.mark.parametrize("scheme", [scheme for scheme in SCHEMES if scheme != "torch_default"])
def test_other_schemes_zero_the_bias(scheme, seed):
    assert not our_linear(scheme, seed, "relu").params["bias"].any()


def test_zeros_and_constant_fill_the_weight(seed):
    assert not our_linear("zeros", seed).params["weight"].any()
    constant = our_linear("constant", seed, value=0.25, dtype=np.float32).params["weight"]
    assert constant.dtype == np.float32 and np.all(constant == np.float32(0.25))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_weights_other_seed_other_weights(scheme, seed):
    first, again = our_linear(scheme, seed, "relu"), our_linear(scheme, seed, "relu")
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(first.params[name], again.params[name])
    if scheme not in ("zeros", "constant"):
        assert not np.array_equal(first.params["weight"], our_linear(scheme, seed + 1, "relu").params["weight"])


def test_unknown_scheme_is_refused(seed):
    with pytest.raises(ValueError, match="unknown init scheme 'orthogonal'; allowed: torch_default"):
        our_linear("orthogonal", seed)


def test_mlp_initialises_linear_layers_in_order_weight_then_bias(seed):
    spec = ModelSpec(parse_layers("30:relu+bn+dropout0.5,20:tanh,10"), input_shape=(40,), init="torch_default",
                     dtype="float64")
    model = MLP(spec, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    expected = [Linear(40, 30, dtype=np.float64, rng=rng), Linear(30, 20, dtype=np.float64, rng=rng),
                Linear(20, 10, dtype=np.float64, rng=rng)]
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    for ours, reference in zip(linears, expected):
        for name in ("weight", "bias"):
            np.testing.assert_array_equal(ours.params[name], reference.params[name])


def test_mlp_gives_hidden_layers_their_activation_gain_and_the_output_layer_gain_1(seed):
    spec = ModelSpec(parse_layers("1000:tanh,1000:leaky_relu0.3,1000"), input_shape=(500,), init="kaiming_normal",
                     dtype="float32")
    model = MLP(spec, np.random.default_rng(seed))
    stds = [model.layers[index].params["weight"].std() for index in (0, 2, 4)]
    expected = [5 / 3 / math.sqrt(500), math.sqrt(2 / (1 + 0.3**2)) / math.sqrt(1000), 1 / math.sqrt(1000)]
    np.testing.assert_allclose(stds, expected, rtol=0.01)


@pytest.mark.parametrize("layers, gains", [
    # linear -> batch-norm -> dropout -> leaky_relu: the activation's gain, what lies between passed over
    ("linear bn dropout leaky linear", {0: math.sqrt(2 / (1 + 0.3**2)), 4: 1.0}),
    # a linear followed by a linear: no activation before the next weight layer, gain 1
    ("linear linear tanh linear", {0: 1.0, 1: 5 / 3, 3: 1.0}),
    ("flatten linear silu linear", {1: math.sqrt(2.0), 3: 1.0}),  # torch has no SiLU gain: relu's
])
def test_the_gain_is_the_first_activation_after_a_weight_layer(layers, gains):
    from scratch_nn.spec.layer_specs import (
        BatchNorm1dSpec,
        DropoutSpec,
        FlattenSpec,
        LeakyReLUSpec,
        LinearSpec,
        SiLUSpec,
        TanhSpec,
        init_gain,
    )

    kinds = {"linear": LinearSpec(4), "bn": BatchNorm1dSpec(), "dropout": DropoutSpec(0.1), "tanh": TanhSpec(),
             "leaky": LeakyReLUSpec(0.3), "flatten": FlattenSpec(), "silu": SiLUSpec()}
    specs = tuple(kinds[name] for name in layers.split())
    assert {index: init_gain(specs, index) for index, layer in enumerate(specs) if layer.role == "weight"} == gains
