"""The MOOC's L-layer net of correct.py with the classic mistake: db summed over every axis.

Convention (a MOOC): parameters["W1"] (out, in), b (out, 1), X columns (784, m), ReLU hidden
layers, softmax output, cross-entropy averaged over m, returned dW1, db1, ... (see correct.py).

The bug: `db = np.sum(dZ) / m` sums over the units as well as the examples, so every bias gradient
is one number instead of a column (n_l, 1) (and broadcasting then moves every bias by that number).
Expected `svt check`: the bias gradients have the wrong shape, a scalar (): a bias gradient summed
over every axis; the weight gradients right; exit 1.
"""
import numpy as np

# ---------------------------------------------------------------- what svt reads (the interface)
TWIN = "100:relu,30:relu,10"
LOSS = "cross_entropy"
REDUCTION = "mean"
SCALE = 1.0

# ---------------------------------------------------------------- the learner's code, week by week


def initialize_parameters_deep(layer_dims, seed=1):
    np.random.seed(seed)
    parameters = {}
    for layer in range(1, len(layer_dims)):
        parameters[f"W{layer}"] = np.random.randn(layer_dims[layer], layer_dims[layer - 1])
        parameters[f"W{layer}"] *= np.sqrt(2 / layer_dims[layer - 1])  # He init
        parameters[f"b{layer}"] = np.zeros((layer_dims[layer], 1))
    return parameters


def relu(Z):
    return np.maximum(0, Z), Z


def softmax(Z):
    shifted = Z - np.max(Z, axis=0, keepdims=True)      # columns are examples
    expZ = np.exp(shifted)
    return expZ / np.sum(expZ, axis=0, keepdims=True), Z


def linear_activation_forward(A_prev, W, b, activation):
    Z = np.dot(W, A_prev) + b
    A, activation_cache = relu(Z) if activation == "relu" else softmax(Z)
    return A, ((A_prev, W, b), activation_cache)


def L_model_forward(X, parameters):
    caches = []
    A = X
    L = len(parameters) // 2
    for layer in range(1, L):
        A, cache = linear_activation_forward(A, parameters[f"W{layer}"], parameters[f"b{layer}"], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters[f"W{L}"], parameters[f"b{L}"], "softmax")
    caches.append(cache)
    return AL, caches


def compute_cost(AL, Y):
    """Cross-entropy of softmax outputs AL (10, m) against one-hot Y (10, m), averaged over m."""
    m = Y.shape[1]
    return -np.sum(np.log(AL[Y == 1])) / m           # only the true classes' log (0 * log 0 would be nan)


def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = np.dot(dZ, A_prev.T) / m
    db = np.sum(dZ) / m
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def relu_backward(dA, Z):
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def L_model_backward(AL, Y, caches):
    grads = {}
    L = len(caches)
    dZ = AL - Y                                            # softmax + cross-entropy together
    grads[f"dA{L - 1}"], grads[f"dW{L}"], grads[f"db{L}"] = linear_backward(dZ, caches[L - 1][0])
    for layer in reversed(range(L - 1)):
        linear_cache, Z = caches[layer]
        dZ = relu_backward(grads[f"dA{layer + 1}"], Z)
        dA_prev, dW, db = linear_backward(dZ, linear_cache)
        grads[f"dA{layer}"], grads[f"dW{layer + 1}"], grads[f"db{layer + 1}"] = dA_prev, dW, db
    return grads


def update_parameters(parameters, grads, learning_rate):
    L = len(parameters) // 2
    for layer in range(L):
        parameters[f"W{layer + 1}"] = parameters[f"W{layer + 1}"] - learning_rate * grads[f"dW{layer + 1}"]
        parameters[f"b{layer + 1}"] = parameters[f"b{layer + 1}"] - learning_rate * grads[f"db{layer + 1}"]
    return parameters


# ---------------------------------------------------------------- adapting it to the interface
layers_dims = [784, 100, 30, 10]
net_parameters = initialize_parameters_deep(layers_dims)


def parameters():
    return net_parameters


def one_hot_columns(y):
    Y = np.zeros((10, len(y)))
    Y[y, np.arange(len(y))] = 1.0
    return Y


def loss_and_grads(x, y):
    """Rows to columns, then the MOOC's forward, cost and backward; dW1 -> W1 for svt."""
    X, Y = x.T, one_hot_columns(y)
    AL, caches = L_model_forward(X, net_parameters)
    cost = compute_cost(AL, Y)
    grads = L_model_backward(AL, Y, caches)
    return cost, {name: grads["d" + name] for name in net_parameters}


def forward(x):
    """The softmax probabilities, back as rows (N, 10)."""
    return L_model_forward(x.T, net_parameters)[0].T


def step(grads, lr):
    """`update_parameters` builds new arrays; svt holds the old ones, so the new values go into them."""
    updated = update_parameters(dict(net_parameters), {"d" + name: grad for name, grad in grads.items()}, lr)
    for name, array in net_parameters.items():
        array[...] = updated[name]
