"""scratch_nn.optim: hand-computed updates, step-by-step parity with torch.optim, schedulers, errors.

The hand-computed tests use one parameter theta0 = [1, -2] and two gradients g1 = [0.5, 1],
g2 = [-1, 2]; the expected numbers are written out from each update rule, never taken from torch.
"""
import math
import re
import tracemalloc

import numpy as np
import pytest
import torch

from scratch_nn import optim, schedulers
from scratch_nn.spec import TrainSpec

THETA0 = [1.0, -2.0]
GRAD1 = [0.5, 1.0]
GRAD2 = [-1.0, 2.0]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def two_steps(optimizer_class, **kwargs):
    """Run two steps on theta0 with g1 then g2; return theta after each step and the optimiser."""
    params = {"weight": np.array(THETA0)}
    optimizer = optimizer_class(params, **kwargs)
    optimizer.step({"weight": np.array(GRAD1)})
    theta1 = params["weight"].copy()
    optimizer.step({"weight": np.array(GRAD2)})
    return theta1, params["weight"], optimizer


# ---------------------------------------------------------------------------------------------
# Hand-computed updates


@pytest.mark.parametrize("kwargs, theta1, theta2, buffer2", [
    # plain: theta -= 0.1 g
    ({}, [0.95, -2.1], [0.95 + 0.1, -2.1 - 0.2], None),
    # momentum 0.9: b1 = g1 = [0.5, 1]; b2 = 0.9 b1 + g2 = [-0.55, 2.9]
    ({"momentum": 0.9}, [0.95, -2.1], [0.95 + 0.055, -2.1 - 0.29], [-0.55, 2.9]),
    # dampening 0.5: b1 = g1, NOT 0.5 g1; b2 = 0.9 b1 + 0.5 g2 = [-0.05, 1.9]
    ({"momentum": 0.9, "dampening": 0.5}, [0.95, -2.1], [0.95 + 0.005, -2.1 - 0.19], [-0.05, 1.9]),
    # weight decay 0.1 before momentum: d1 = g1 + 0.1 theta0 = [0.6, 0.8] = b1; theta1 = [0.94, -2.08];
    # d2 = g2 + 0.1 theta1 = [-0.906, 1.792]; b2 = 0.9 b1 + 0.5 d2 = [0.087, 1.616]
    ({"momentum": 0.9, "dampening": 0.5, "weight_decay": 0.1}, [0.94, -2.08], [0.94 - 0.0087, -2.08 - 0.1616],
     [0.087, 1.616]),
    # nesterov: b1 = g1; direction g1 + 0.9 b1 = [0.95, 1.9]; b2 = [-0.55, 2.9];
    # direction g2 + 0.9 b2 = [-1.495, 4.61]
    ({"momentum": 0.9, "nesterov": True}, [0.905, -2.19], [0.905 + 0.1495, -2.19 - 0.461], [-0.55, 2.9]),
])
def test_sgd_by_hand(kwargs, theta1, theta2, buffer2):
    got1, got2, optimizer = two_steps(optim.SGD, lr=0.1, **kwargs)
    np.testing.assert_allclose(got1, theta1, rtol=1e-14)
    np.testing.assert_allclose(got2, theta2, rtol=1e-14)
    if buffer2 is None:
        assert optimizer.state["weight"] == {}
    else:
        np.testing.assert_allclose(optimizer.state["weight"]["momentum_buffer"], buffer2, rtol=1e-14)


def test_sgd_momentum_buffer_is_a_copy_of_the_first_gradient():
    params = {"weight": np.array(THETA0)}
    grads = {"weight": np.array(GRAD1)}
    optimizer = optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.5)
    optimizer.step(grads)
    buffer = optimizer.state["weight"]["momentum_buffer"]
    np.testing.assert_array_equal(buffer, GRAD1)  # undamped
    grads["weight"][:] = 7.0  # the layer overwrites its gradient: the buffer must not follow
    np.testing.assert_array_equal(buffer, GRAD1)


def test_adam_places_eps_after_the_bias_corrected_square_root():
    # betas (0.5, 0.75), eps 0.1 (large, so that where it goes matters), lr 0.1.
    # step 1: m = 0.5 g1 = [0.25, 0.5], v = 0.25 g1^2 = [0.0625, 0.25]; m_hat = m / 0.5 = [0.5, 1];
    #   sqrt(v) / sqrt(0.25) = [0.5, 1]; denom = [0.6, 1.1]  (eps before the correction: [0.7, 1.2])
    theta1 = [1 - 0.1 * 0.5 / 0.6, -2 - 0.1 * 1 / 1.1]
    # step 2: m = 0.5 m + 0.5 g2 = [-0.375, 1.25]; v = 0.75 v + 0.25 g2^2 = [0.296875, 1.1875];
    #   m_hat = m / (1 - 0.25) = [-0.5, 5/3]; v / (1 - 0.5625) = [19/28, 19/7]
    theta2 = [theta1[0] + 0.1 * 0.5 / (math.sqrt(19 / 28) + 0.1),
              theta1[1] - 0.1 * (5 / 3) / (math.sqrt(19 / 7) + 0.1)]
    got1, got2, optimizer = two_steps(optim.Adam, lr=0.1, betas=(0.5, 0.75), eps=0.1)
    np.testing.assert_allclose(got1, theta1, rtol=1e-14)
    np.testing.assert_allclose(got2, theta2, rtol=1e-14)
    state = optimizer.state["weight"]
    assert state["step"] == 2
    np.testing.assert_allclose(state["exp_avg"], [-0.375, 1.25], rtol=1e-14)
    np.testing.assert_allclose(state["exp_avg_sq"], [0.296875, 1.1875], rtol=1e-14)


def test_adam_adds_weight_decay_to_the_gradient():
    # g = g1 + 0.5 theta0 = [1, 0]: m_hat = [1, 0], sqrt(v_hat) = [1, 0], denom = [1.1, 0.1]
    params = {"weight": np.array(THETA0)}
    optimizer = optim.Adam(params, lr=0.1, betas=(0.5, 0.75), eps=0.1, weight_decay=0.5)
    optimizer.step({"weight": np.array(GRAD1)})
    np.testing.assert_allclose(params["weight"], [1 - 0.1 / 1.1, -2.0], rtol=1e-14)
    np.testing.assert_allclose(optimizer.state["weight"]["exp_avg"], [0.5, 0.0], atol=1e-16)


def test_adamw_decays_the_parameter_not_the_gradient():
    # theta0 * (1 - 0.1 * 0.5) = [0.95, -1.9]; then Adam's step on g1 alone: denom = [0.6, 1.1]
    params = {"weight": np.array(THETA0)}
    optimizer = optim.AdamW(params, lr=0.1, betas=(0.5, 0.75), eps=0.1, weight_decay=0.5)
    optimizer.step({"weight": np.array(GRAD1)})
    np.testing.assert_allclose(params["weight"], [0.95 - 0.1 * 0.5 / 0.6, -1.9 - 0.1 / 1.1], rtol=1e-14)
    np.testing.assert_allclose(optimizer.state["weight"]["exp_avg"], [0.25, 0.5], rtol=1e-14)


# RMSprop with alpha 0.5, eps 0.1, lr 0.1: square_avg v1 = 0.5 g1^2 = [0.125, 0.5], v2 = 0.5 v1 + 0.5 g2^2
# = [0.5625, 2.25], so sqrt(v2) + eps = [0.85, 1.6].
AVG1 = [math.sqrt(0.125) + 0.1, math.sqrt(0.5) + 0.1]
PLAIN1 = [1 - 0.1 * 0.5 / AVG1[0], -2 - 0.1 * 1 / AVG1[1]]
BUFFER1 = [0.5 / AVG1[0], 1 / AVG1[1]]  # momentum: b1 = 0 * 0.5 + g1 / avg1
BUFFER2 = [0.5 * BUFFER1[0] - 1 / 0.85, 0.5 * BUFFER1[1] + 2 / 1.6]
# centered: grad_avg1 = 0.5 g1 = [0.25, 0.5], v1 - grad_avg1^2 = [0.0625, 0.25] -> avg1 = [0.35, 0.6];
# grad_avg2 = 0.5 grad_avg1 + 0.5 g2 = [-0.375, 1.25], v2 - grad_avg2^2 = [0.421875, 0.6875]
CENTERED1 = [1 - 0.1 * 0.5 / 0.35, -2 - 0.1 * 1 / 0.6]
CENTERED_AVG2 = [math.sqrt(0.421875) + 0.1, math.sqrt(0.6875) + 0.1]


@pytest.mark.parametrize("kwargs, theta1, theta2", [
    ({}, PLAIN1, [PLAIN1[0] + 0.1 / 0.85, PLAIN1[1] - 0.1 * 2 / 1.6]),
    ({"momentum": 0.5}, PLAIN1, [PLAIN1[0] - 0.1 * BUFFER2[0], PLAIN1[1] - 0.1 * BUFFER2[1]]),
    ({"centered": True}, CENTERED1,
     [CENTERED1[0] + 0.1 * 1 / CENTERED_AVG2[0], CENTERED1[1] - 0.1 * 2 / CENTERED_AVG2[1]]),
], ids=["plain", "momentum", "centered"])
def test_rmsprop_by_hand(kwargs, theta1, theta2):
    got1, got2, optimizer = two_steps(optim.RMSprop, lr=0.1, alpha=0.5, eps=0.1, **kwargs)
    np.testing.assert_allclose(got1, theta1, rtol=1e-14)
    np.testing.assert_allclose(got2, theta2, rtol=1e-14)
    np.testing.assert_allclose(optimizer.state["weight"]["square_avg"], [0.5625, 2.25], rtol=1e-14)
    if kwargs.get("centered"):
        np.testing.assert_allclose(optimizer.state["weight"]["grad_avg"], [-0.375, 1.25], rtol=1e-14)


def test_adam_with_beta1_zero_keeps_exactly_the_gradient(rng):
    # exp_avg.lerp_(g, 1) is exactly g in torch (its second lerp branch, g - 0 * (g - m), for weights
    # >= 0.5); the first branch's m + 1 * (g - m) would be off in the last bit for many elements.
    params = {"weight": rng.standard_normal(1000)}
    optimizer = optim.Adam(params, betas=(0.0, 0.999))
    for _ in range(3):
        grads = {"weight": rng.standard_normal(1000) * 10.0 ** rng.integers(-3, 3, 1000)}
        optimizer.step(grads)
        np.testing.assert_array_equal(optimizer.state["weight"]["exp_avg"], grads["weight"])


def test_lr_is_read_at_every_step_and_params_are_updated_in_place():
    weight = np.array(THETA0)
    optimizer = optim.SGD([("weight", weight)], lr=0.1)  # the (name, array) pairs of named_parameters()
    optimizer.lr = 1.0
    optimizer.step({"weight": np.array(GRAD1)})
    assert optimizer.params["weight"] is weight
    np.testing.assert_array_equal(weight, [0.5, -3.0])


# ---------------------------------------------------------------------------------------------
# Step by step against torch.optim

SCRATCH = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop}
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
         "rmsprop": torch.optim.RMSprop}
CONFIGS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "eps": 1e-3, "weight_decay": 0.1}),
    ("adam", {"lr": 0.01, "betas": (0.3, 0.5)}),  # lerp weight 0.7: torch's other lerp branch
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("rmsprop", {"lr": 0.001, "centered": True, "alpha": 0.3}),
]
# 1,200 elements run torch's vectorised kernels, 3 elements their scalar tails.
SHAPES = {"layers.0.weight": (40, 30), "layers.0.bias": (40,), "layers.2.weight": (1, 3)}


def assert_close_to_scale(actual, desired, rtol, err_msg):
    """|actual - desired| <= rtol * max|desired|, elementwise.

    Not elementwise-relative: torch's CPU kernels fuse multiply-adds (one rounding where NumPy has
    two) and its vectorised sqrt can be 1 ulp off, so results differ by an ulp or two of the
    array's scale; where a value cancels to near zero that ulp is large relative to the value.
    """
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max(), err_msg=err_msg)


def config_id(config):
    name, kwargs = config
    return name + "-" + "-".join(f"{key}={value}" for key, value in kwargs.items())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)], ids=["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS, ids=[config_id(config) for config in CONFIGS])
def test_matches_torch_for_ten_steps(rng, config, dtype, rtol):
    name, kwargs = config
    params = {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}
    torch_params = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}
    ours = SCRATCH[name](params, **kwargs)
    theirs = TORCH[name](torch_params.values(), **kwargs)
    for step in range(1, 11):
        grads = {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}
        grads_before = {key: grad.copy() for key, grad in grads.items()}
        ours.step(grads)
        for key, torch_param in torch_params.items():
            torch_param.grad = torch.tensor(grads[key])
        theirs.step()
        for key, torch_param in torch_params.items():
            np.testing.assert_array_equal(grads[key], grads_before[key])  # grads are only read
            assert_close_to_scale(params[key], torch_param.detach().numpy(), rtol, f"{key} after step {step}")
            torch_state = theirs.state[torch_param]
            assert set(ours.state[key]) == set(torch_state)
            for state_name, torch_value in torch_state.items():
                if state_name == "step":
                    assert ours.state[key]["step"] == step == int(torch_value)
                else:
                    assert_close_to_scale(ours.state[key][state_name], torch_value.numpy(), rtol,
                                          f"{key} {state_name} after step {step}")


@pytest.mark.parametrize("config", CONFIGS, ids=[config_id(config) for config in CONFIGS])
def test_float32_stays_float32(rng, config):
    name, kwargs = config
    params = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in SHAPES.items()}
    originals = dict(params)
    optimizer = SCRATCH[name](params, **kwargs)
    for _ in range(3):
        optimizer.step({key: rng.standard_normal(shape).astype(np.float32) for key, shape in SHAPES.items()})
    for key, param in params.items():
        assert param is originals[key] and optimizer.params[key] is originals[key]
        assert param.dtype == np.float32
        for state_name, value in optimizer.state[key].items():
            if state_name != "step":
                assert value.dtype == np.float32, f"{key} {state_name} is {value.dtype}"


@pytest.mark.parametrize("config", CONFIGS, ids=[config_id(config) for config in CONFIGS])
def test_step_allocates_no_parameter_sized_temporaries(rng, config):
    name, kwargs = config
    params = {"weight": rng.standard_normal((500, 100)).astype(np.float32)}  # 200 kB
    grads = {"weight": rng.standard_normal((500, 100)).astype(np.float32)}
    optimizer = SCRATCH[name](params, **kwargs)
    optimizer.step(grads)  # SGD allocates its momentum buffer here, once
    tracemalloc.start()
    try:
        optimizer.step(grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < params["weight"].nbytes / 10, f"a step allocated {peak} bytes at its peak"


# ---------------------------------------------------------------------------------------------
# Schedulers


def test_step_lr_by_hand():
    optimizer = optim.SGD({"weight": np.zeros(2)}, lr=1.0)
    scheduler = schedulers.StepLR(optimizer, step_size=2, gamma=0.5)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(5):
        scheduler.step()
        lrs.append(optimizer.lr)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_by_hand():
    # T_max 2 from lr 1: epoch 1 -> (1 + cos(pi/2)) / 2 = 0.5, epoch 2 -> (1 + cos(pi)) / 2 = 0
    optimizer = optim.SGD({"weight": np.zeros(2)}, lr=1.0)
    scheduler = schedulers.CosineAnnealingLR(optimizer, T_max=2)
    scheduler.step()
    assert optimizer.lr == pytest.approx(0.5, abs=1e-15)
    scheduler.step()
    assert optimizer.lr == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("StepLR", {"step_size": 1}),
    ("CosineAnnealingLR", {"T_max": 20}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 1e-3}),  # past T_max it rises, through torch's special case
    ("CosineAnnealingLR", {"T_max": 1}),
])
def test_scheduler_matches_torch_for_twenty_epochs(name, kwargs):
    optimizer = optim.SGD({"weight": np.zeros(2)}, lr=0.1)
    ours = getattr(schedulers, name)(optimizer, **kwargs)
    torch_optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    theirs = getattr(torch.optim.lr_scheduler, name)(torch_optimizer, **kwargs)
    assert ours.get_last_lr() == theirs.get_last_lr()
    for epoch in range(1, 21):
        torch_optimizer.step()  # no gradient, so no update; keeps torch from warning about the order
        theirs.step()
        ours.step()
        assert ours.last_epoch == theirs.last_epoch == epoch
        # Exactly equal: the same float operations in the same order. The closed form
        # eta_min + (base_lr - eta_min) * (1 + cos(pi t / T_max)) / 2 differs in the last bits.
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert optimizer.lr == ours.get_last_lr()[0]


# ---------------------------------------------------------------------------------------------
# Errors


TORCH_VALIDATION = [
    ("sgd", {"lr": -1}, "Invalid learning rate: -1"),
    ("sgd", {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    ("sgd", {"weight_decay": -1e-4}, "Invalid weight_decay value: -0.0001"),
    ("sgd", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("sgd", {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
     "Nesterov momentum requires a momentum and zero dampening"),
    ("adam", {"lr": -0.001}, "Invalid learning rate: -0.001"),
    ("adam", {"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
    ("adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("adam", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    ("adamw", {"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
    ("rmsprop", {"alpha": -0.5}, "Invalid alpha value: -0.5"),
    ("rmsprop", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ("rmsprop", {"momentum": -0.9}, "Invalid momentum value: -0.9"),
]


@pytest.mark.parametrize("name, kwargs, message", TORCH_VALIDATION)
def test_invalid_hyper_parameters_raise_torchs_message(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SCRATCH[name]({"weight": np.zeros(2)}, **kwargs)
    with pytest.raises(ValueError) as torch_error:  # the message is torch's own, word for word
        TORCH[name]([torch.zeros(2, requires_grad=True)], **kwargs)
    assert str(torch_error.value).startswith(message)


@pytest.mark.parametrize("params, message", [
    ({}, "empty parameter list"),
    ({"weight": np.zeros(2, dtype=np.int64)},
     "parameter 'weight' must be a floating-point NumPy array, got int64"),
    ({"weight": [0.0, 1.0]}, "parameter 'weight' must be a floating-point NumPy array, got list"),
    ({"weight": np.zeros(2), "bias": np.zeros(2, dtype=np.float32)},
     "must share one dtype, got float32, float64"),
])
def test_invalid_params_raise(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        optim.SGD(params, lr=0.1)


def test_nan_learning_rate_is_refused():
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        optim.SGD({"weight": np.zeros(2)}, lr=float("nan"))


@pytest.mark.parametrize("make_scheduler, message", [
    (lambda optimizer: schedulers.StepLR(optimizer, step_size=0),
     "Invalid step_size: 0 (must be an integer >= 1)"),
    (lambda optimizer: schedulers.CosineAnnealingLR(optimizer, T_max=0),
     "Invalid T_max: 0 (must be an integer >= 1)"),
])
def test_invalid_scheduler_arguments_raise(make_scheduler, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_scheduler(optim.SGD({"weight": np.zeros(2)}, lr=0.1))


# ---------------------------------------------------------------------------------------------
# From a TrainSpec


@pytest.mark.parametrize("name, expected_class, expected", [
    ("sgd", optim.SGD, {"momentum": 0.5, "dampening": 0.25, "weight_decay": 1e-3}),
    ("adam", optim.Adam,
     {"betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 1e-3, "decoupled_weight_decay": False}),
    ("adamw", optim.AdamW,
     {"betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 1e-3, "decoupled_weight_decay": True}),
    ("rmsprop", optim.RMSprop, {"alpha": 0.9, "eps": 1e-6, "momentum": 0.5, "weight_decay": 1e-3}),
])
def test_build_optimizer_passes_the_spec_hyper_parameters(name, expected_class, expected):
    spec = TrainSpec(optimizer=name, lr=0.05, momentum=0.5, dampening=0.25, betas=(0.8, 0.9), eps=1e-6,
                     alpha=0.9, weight_decay=1e-3)
    optimizer = optim.build_optimizer(spec, {"weight": np.zeros(2)})
    assert type(optimizer) is expected_class
    assert optimizer.lr == 0.05
    assert {key: getattr(optimizer, key) for key in expected} == expected


def test_build_scheduler_follows_the_schedule():
    optimizer = optim.SGD({"weight": np.zeros(2)}, lr=0.1)
    assert schedulers.build_scheduler(TrainSpec(schedule="constant"), optimizer) is None
    step = schedulers.build_scheduler(TrainSpec(schedule="step", step_size=4, gamma=0.5), optimizer)
    assert type(step) is schedulers.StepLR and (step.step_size, step.gamma) == (4, 0.5)
    cosine = schedulers.build_scheduler(TrainSpec(schedule="cosine", epochs=12), optimizer)
    assert type(cosine) is schedulers.CosineAnnealingLR and (cosine.T_max, cosine.eta_min) == (12, 0.0)
