"""A small network in the params-dict convention (W (in, out), b (out,), rows), correct unless BUG
names a planted mistake. tests/test_check.py writes copies with BUG, HIDDEN, LOSS... replaced."""
import numpy as np

BUG = ""
HIDDEN = [16]  # hidden ReLU layers; [16, 16] has a square weight
OUTPUT = "softmax"  # or "sigmoid": squared error on sigmoid outputs
DTYPE = np.float64
MOMENTUM = 0.0  # step's momentum, written as learners do: v = momentum * v - lr * g; p += v
TWIN = ",".join(f"{units}:relu" for units in HIDDEN) + (",10" if OUTPUT == "softmax" else ",10:sigmoid")
LOSS = "cross_entropy" if OUTPUT == "softmax" else "squared_error"
SCALE = 1.0 if OUTPUT == "softmax" else 0.5

rng = np.random.default_rng(0)
sizes = [784, *HIDDEN, 10]
params = {}
for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
    params[f"W{index}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(DTYPE)
    params[f"b{index}"] = (rng.standard_normal(fan_out) * 0.1).astype(DTYPE)
kept = {key: np.zeros_like(value) for key, value in params.items()}  # for the accumulating bug
velocity = {key: np.zeros_like(value) for key, value in params.items()}


def parameters():
    return params


def forward(x):
    return run(x)[-1]


def run(x):
    """[pre-activation, activation] of every layer; the last activation is softmax or sigmoid."""
    seen, a = [], x
    for index in range(1, len(sizes)):
        z = a @ params[f"W{index}"] + params[f"b{index}"]
        if index < len(sizes) - 1:
            a = np.tanh(z) if BUG == "forward_tanh" else np.maximum(0, z)
        elif OUTPUT == "softmax":
            e = np.exp(z if BUG == "softmax_unshifted" else z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
        else:
            a = 1 / (1 + np.exp(-z))
        seen += [z, a]
    return seen


def loss_and_grads(x, y):
    n, seen = len(x), run(x)
    target = np.eye(10, dtype=x.dtype)[y]
    probabilities = seen[-1]
    if OUTPUT == "softmax":
        loss = -np.log(probabilities[np.arange(n), y]).mean()
        d_z = (probabilities - target) / n
    else:
        loss = 0.5 * ((probabilities - target) ** 2).sum(axis=1).mean()
        d_z = (probabilities - target) * probabilities * (1 - probabilities) / n
    if BUG == "sum_over_batch":
        d_z = d_z * n
    if BUG == "divided_twice":
        d_z = d_z / n
    if BUG == "missing_half":
        d_z = d_z * 2
    if BUG == "extra_half":
        d_z = d_z * 0.5
    if BUG == "wrong_sign":
        d_z = -d_z
    grads = {}
    for index in range(len(sizes) - 1, 0, -1):
        a_in = x if index == 1 else seen[2 * index - 3]
        if BUG == "wrong_input" and index == len(sizes) - 1:
            a_in = x if index == 2 else seen[2 * index - 5]  # the input of the layer below
        grads[f"W{index}"] = a_in.T @ d_z
        grads[f"b{index}"] = d_z.sum() if BUG == "bias_scalar" and index == 1 else d_z.sum(axis=0)
        if BUG == "bias_axis_1" and index == len(sizes) - 1:
            grads[f"b{index}"] = d_z.sum(axis=1)
        if index > 1:
            d_a = d_z @ params[f"W{index}"].T
            z_below = seen[2 * index - 4]
            d_z = d_a if BUG == "no_relu_backward" else d_a * (z_below > 0)
            if BUG == "forward_tanh":
                d_z = d_a * (1 - np.tanh(z_below) ** 2)
    if BUG == "transposed_shape":
        grads["W1"] = grads["W1"].T
    if BUG == "transposed_square":
        grads["W2"] = grads["W2"].T
    if BUG == "accumulate":
        for key in grads:
            kept[key] += grads[key]
        grads = {key: value.copy() for key, value in kept.items()}
    if BUG == "one_hot_labels":
        loss = -np.sum(y * np.log(probabilities)) / n  # y taken for one-hot rows: (N,) against (N, 10)
    if BUG == "mutate_x":
        x -= 0.5
    if BUG == "wrong_keys":
        grads["dW1"] = grads.pop("W1")
    return loss, {key: grads[key] for key in sorted(grads, key=lambda k: (k[1:], k[0]))}


def step(grads, lr):
    for key, value in params.items():
        velocity[key] *= MOMENTUM
        velocity[key] -= (2 * lr if BUG == "double_step" else lr) * grads[key]
        value += velocity[key]
