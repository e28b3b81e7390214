"""A sigmoid network in the online book's convention: lists of weights and biases, one column at a time.

Convention (a well-known online book): `net.weights[i]` of shape (out, in) and `net.biases[i]` of
shape (out, 1); one example is a column x (784, 1) with a one-hot column target (10, 1); every
layer is sigmoid, the output too; the cost of one example is 0.5 * ||a - y||^2; `backprop(x, y)`
returns the gradient lists of that one example, and the file adds them up over a mini-batch.

    forward:  a_0 = x,  z_l = W_l a_{l-1} + b_l,  a_l = sigmoid(z_l);   C = 0.5 ||a_L - y||^2
    backward: delta_L = (a_L - y) * sigmoid'(z_L),  delta_l = (W_{l+1}^T delta_{l+1}) * sigmoid'(z_l),
              dC/dW_l = delta_l a_{l-1}^T,  dC/db_l = delta_l

svt's loss is the mean over the batch (REDUCTION) of 0.5 (SCALE) times the squared error summed
over the 10 outputs (LOSS), so the batch gradient is the mean of the per-example ones.
Expected: `svt check examples/weight_lists/correct.py` agrees on every tensor (exit 0).
"""
import numpy as np

# ---------------------------------------------------------------- what svt reads (the interface)
TWIN = "30:sigmoid,10:sigmoid"   # the output layer carries its sigmoid, as in the book
LOSS = "squared_error"
REDUCTION = "mean"
SCALE = 0.5

# ---------------------------------------------------------------- the learner's code, from the book's chapter


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """d sigmoid / dz = sigmoid(z) (1 - sigmoid(z))."""
    s = sigmoid(z)
    return s * (1 - s)


class Network:
    """A fully connected sigmoid network; sizes = [784, 30, 10] gives two weight layers."""

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [rng.standard_normal((n, 1)) for n in sizes[1:]]
        self.weights = [rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
                        for n_in, n_out in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        """The output column for an input column (784, 1); a matrix of columns works too."""
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(w @ a + b)
        return a

    def backprop(self, x, y):
        """Gradient lists (per layer) of 0.5 ||a - y||^2 for one example x (784, 1), y (10, 1)."""
        grad_b = [np.zeros(b.shape) for b in self.biases]
        grad_w = [np.zeros(w.shape) for w in self.weights]
        activation = x
        activations = [x]
        zs = []
        for b, w in zip(self.biases, self.weights):
            z = w @ activation + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        grad_b[-1] = delta
        grad_w[-1] = delta @ activations[-2].T
        for layer in range(2, self.num_layers):
            delta = (self.weights[-layer + 1].T @ delta) * sigmoid_prime(zs[-layer])
            grad_b[-layer] = delta
            grad_w[-layer] = delta @ activations[-layer - 1].T
        return grad_b, grad_w

    def update_mini_batch(self, grad_b, grad_w, eta):
        """One gradient-descent step with the batch's (averaged) gradients, in place."""
        for w, gw in zip(self.weights, grad_w):
            w -= eta * gw
        for b, gb in zip(self.biases, grad_b):
            b -= eta * gb


def one_hot_column(label):
    column = np.zeros((10, 1))
    column[label] = 1.0
    return column


# ---------------------------------------------------------------- adapting it to the interface
net = Network([784, 30, 10])


def parameters():
    """The lists' arrays under the book's names, in layer order."""
    named = {}
    for index, (w, b) in enumerate(zip(net.weights, net.biases)):
        named[f"weights[{index}]"] = w
        named[f"biases[{index}]"] = b
    return named


def loss_and_grads(x, y):
    """Loops over the rows of x as columns (784, 1) and averages the per-example costs and gradients."""
    total_cost = 0.0
    sum_b = [np.zeros(b.shape) for b in net.biases]
    sum_w = [np.zeros(w.shape) for w in net.weights]
    for row, label in zip(x, y):
        column, target = row.reshape(784, 1), one_hot_column(label)
        total_cost += 0.5 * np.sum((net.feedforward(column) - target) ** 2)
        grad_b, grad_w = net.backprop(column, target)
        sum_b = [sb + gb for sb, gb in zip(sum_b, grad_b)]
        sum_w = [sw + gw for sw, gw in zip(sum_w, grad_w)]
    count = len(x)
    grads = {}
    for index in range(len(net.weights)):
        grads[f"weights[{index}]"] = sum_w[index] / count
        grads[f"biases[{index}]"] = sum_b[index] / count
    return total_cost / count, grads


def forward(x):
    """The sigmoid outputs (N, 10): all examples at once as the columns of x.T."""
    return net.feedforward(x.T).T


def step(grads, lr):
    count = len(net.weights)
    net.update_mini_batch([grads[f"biases[{i}]"] for i in range(count)],
                          [grads[f"weights[{i}]"] for i in range(count)], lr)
