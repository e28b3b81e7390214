"""A two-layer net in the from-scratch book's convention: layer objects and a separate optimiser.

Convention (a from-scratch book): `Layer_Dense` objects hold `.weights` (in, out) and `.biases`
(1, out); examples are rows (N, 784); each object's `backward(dvalues)` sets `.dweights`,
`.dbiases` and `.dinputs` on itself; softmax and the cross-entropy (mean over the batch) are one
object whose backward starts the chain; an `Optimizer_SGD` object reads `.dweights` off each layer.

    forward:  h = max(0, X W1 + b1),  scores = h W2 + b2,  L = mean_i(-log softmax(scores_i)[y_i])
    backward: dscores = (softmax(scores) - onehot(y)) / N;  for a dense layer with input X:
              dweights = X^T dvalues,  dbiases = sum_i dvalues,  dinputs = dvalues W^T;
              the ReLU's dinputs = dvalues where its input > 0, else 0

The adapter reads the gradients off the layers (`loss_and_grads`) and, for `step`, puts svt's
gradients on the layers before calling the optimiser, which reads them from there.
Expected: `svt check examples/layer_objects/correct.py` agrees on every tensor (exit 0).
"""
import numpy as np

# ---------------------------------------------------------------- what svt reads (the interface)
TWIN = "64:relu,10"
LOSS = "cross_entropy"
REDUCTION = "mean"
SCALE = 1.0

# ---------------------------------------------------------------- the learner's code, chapter by chapter


class Layer_Dense:
    def __init__(self, n_inputs, n_neurons, rng):
        self.weights = 0.05 * rng.standard_normal((n_inputs, n_neurons))
        self.biases = np.zeros((1, n_neurons))

    def forward(self, inputs):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = dvalues @ self.weights.T


class Activation_ReLU:
    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.maximum(0, inputs)

    def backward(self, dvalues):
        self.dinputs = dvalues.copy()
        self.dinputs[self.inputs <= 0] = 0


class Activation_Softmax_Loss_CategoricalCrossentropy:
    """Softmax then cross-entropy, fused: the backward of the pair is (softmax - onehot) / N."""

    def forward(self, inputs, y_true):
        shifted = inputs - np.max(inputs, axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        self.output = np.exp(log_probabilities)
        return np.mean(-log_probabilities[range(len(inputs)), y_true])

    def backward(self, dvalues, y_true):
        samples = len(dvalues)
        self.dinputs = dvalues.copy()
        self.dinputs[range(samples), y_true] -= 1
        self.dinputs = self.dinputs / samples


class Optimizer_SGD:
    def __init__(self, learning_rate=1.0):
        self.learning_rate = learning_rate

    def update_params(self, layer):
        layer.weights += -self.learning_rate * layer.dweights
        layer.biases += -self.learning_rate * layer.dbiases


# ---------------------------------------------------------------- adapting it to the interface
rng = np.random.default_rng(0)
dense1 = Layer_Dense(784, 64, rng)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(64, 10, rng)
loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
optimizer = Optimizer_SGD()
LAYERS = {"dense1": dense1, "dense2": dense2}


def parameters():
    return {f"{name}.{kind}": getattr(layer, kind) for name, layer in LAYERS.items()
            for kind in ("weights", "biases")}


def forward(x):
    """The scores (N, 10) of the last dense layer (the softmax belongs to the loss object)."""
    dense1.forward(x)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    return dense2.output


def loss_and_grads(x, y):
    """The book's training-loop body: forward through every object, then backward from the loss;
    the gradients are read off the layers (copies: the next backward would overwrite them)."""
    scores = forward(x)
    loss = loss_activation.forward(scores, y)
    loss_activation.backward(loss_activation.output, y)
    dense2.backward(loss_activation.dinputs)
    activation1.backward(dense2.dinputs)
    dense1.backward(activation1.dinputs)
    grads = {f"{name}.{kind}": getattr(layer, "d" + kind).copy() for name, layer in LAYERS.items()
             for kind in ("weights", "biases")}
    return loss, grads


def step(grads, lr):
    """The book's optimiser object, which reads `.dweights`/`.dbiases`: svt's gradients go there first."""
    optimizer.learning_rate = lr
    for name, layer in LAYERS.items():
        layer.dweights = np.array(grads[f"{name}.weights"])  # copies: svt's arrays stay svt's
        layer.dbiases = np.array(grads[f"{name}.biases"])
        optimizer.update_params(layer)
