"""The fused-update net of correct.py with the classic mistake: the weights move up the gradient.

Convention (fused update): Dense layers with weights (out, in) and bias (out, 1), one example at a
time as a column, MSE over the 10 outputs, `backward(output_gradient, learning_rate)` updates the
weights itself (see correct.py, also for how svt reads gradients that are never stored).

The bug: `self.weights += learning_rate * weights_gradient` (the bias update keeps its minus), so
the change an update makes to the weights is minus their gradient.
Expected `svt check`: the weight gradients (dense0.weights, dense1.weights) have the wrong sign
(cosine -1); the biases right; exit 1.
"""
import numpy as np

# ---------------------------------------------------------------- what svt reads (the interface)
TWIN = "30:tanh,10:sigmoid"
LOSS = "squared_error"
REDUCTION = "mean"
SCALE = 0.1

# ---------------------------------------------------------------- the learner's code, from a tutorial


class Dense:
    def __init__(self, input_size, output_size, rng):
        self.weights = rng.uniform(-1, 1, (output_size, input_size)) / np.sqrt(input_size)
        self.bias = rng.uniform(-1, 1, (output_size, 1)) / np.sqrt(input_size)

    def forward(self, input):
        self.input = input
        return self.weights @ self.input + self.bias

    def backward(self, output_gradient, learning_rate):
        weights_gradient = output_gradient @ self.input.T
        input_gradient = self.weights.T @ output_gradient
        self.weights += learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class Activation:
    def __init__(self, activation, activation_prime):
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input):
        self.input = input
        return self.activation(self.input)

    def backward(self, output_gradient, learning_rate):
        return output_gradient * self.activation_prime(self.input)


class Tanh(Activation):
    def __init__(self):
        super().__init__(np.tanh, lambda x: 1 - np.tanh(x) ** 2)


class Sigmoid(Activation):
    def __init__(self):
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))
        super().__init__(sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)))


def mse(y_true, y_pred):
    return np.mean((y_true - y_pred) ** 2)


def mse_prime(y_true, y_pred):
    return 2 * (y_pred - y_true) / np.size(y_true)


def predict(network, input):
    output = input
    for layer in network:
        output = layer.forward(output)
    return output


# ---------------------------------------------------------------- adapting it to the interface
rng = np.random.default_rng(0)
network = [Dense(784, 30, rng), Tanh(), Dense(30, 10, rng), Sigmoid()]
DENSE = {"dense0": network[0], "dense1": network[2]}


def parameters():
    return {f"{name}.{kind}": getattr(layer, kind) for name, layer in DENSE.items() for kind in ("weights", "bias")}


def example_gradients(column, target, live):
    """One example's gradients, read off the change an update with lr = 1 makes; weights put back after."""
    before = {name: array.copy() for name, array in live.items()}
    output = predict(network, column)
    error = mse(target, output)
    gradient = mse_prime(target, output)
    for layer in reversed(network):
        gradient = layer.backward(gradient, 1.0)
    grads = {}
    for name, layer in DENSE.items():
        for kind in ("weights", "bias"):
            key = f"{name}.{kind}"
            grads[key] = before[key] - getattr(layer, kind)  # (before - after) / lr, lr = 1
            live[key][...] = before[key]
            setattr(layer, kind, live[key])  # the arrays svt holds, even had backward replaced them
    return error, grads


def loss_and_grads(x, y):
    """One example at a time, as the tutorial trains; the mean over the batch of errors and gradients."""
    live = parameters()
    total_error, total = 0.0, {name: np.zeros_like(array) for name, array in live.items()}
    for row, label in zip(x, y):
        target = np.zeros((10, 1))
        target[label] = 1.0
        error, grads = example_gradients(row.reshape(784, 1), target, live)
        total_error += error
        for name in total:
            total[name] += grads[name]
    return total_error / len(x), {name: grad / len(x) for name, grad in total.items()}


def forward(x):
    """The sigmoid outputs (N, 10): the whole batch as columns through the same layers."""
    return predict(network, x.T).T
