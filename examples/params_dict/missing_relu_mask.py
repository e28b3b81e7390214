"""The params-dict two-layer net of correct.py with the classic mistake: no ReLU mask in the backward.

Convention (course assignments): a dict W1, b1, W2, b2, W (in, out), b (out,), rows (N, 784),
softmax cross-entropy averaged over the batch, a grads dict with the same keys (see correct.py).

The bug: `dhidden` goes back through the ReLU unmasked (the line `dhidden[hidden <= 0] = 0` is
missing), so W1 and b1 get gradient from units that were off.
Expected `svt check`: W2, b2 right; W1, b1 wrong, the first wrong layer counting from the output:
look at the backward through the activation between them; exit 1.
"""
import numpy as np

# ---------------------------------------------------------------- what svt reads (the interface)
TWIN = "100:relu,10"        # 784 -> 100 relu -> 10 scores, as torch's Linear/ReLU/Linear
LOSS = "cross_entropy"
REDUCTION = "mean"
SCALE = 1.0

# ---------------------------------------------------------------- the learner's code, as written in class


def init_two_layer_net(input_size, hidden_size, output_size, std=0.01, seed=0):
    """Small random weights, zero biases, all in one dict."""
    rng = np.random.default_rng(seed)
    return {
        "W1": std * rng.standard_normal((input_size, hidden_size)),
        "b1": np.zeros(hidden_size),
        "W2": std * rng.standard_normal((hidden_size, output_size)),
        "b2": np.zeros(output_size),
    }


def two_layer_scores(params, X):
    """Class scores (N, C) and the hidden activations (N, H) that the backward pass needs."""
    hidden = np.maximum(0, X.dot(params["W1"]) + params["b1"])
    scores = hidden.dot(params["W2"]) + params["b2"]
    return scores, hidden


def two_layer_loss(params, X, y, reg=0.0):
    """Softmax loss (mean over the batch) + 0.5 * reg * (||W1||^2 + ||W2||^2), and its gradients."""
    N = X.shape[0]
    scores, hidden = two_layer_scores(params, X)
    shifted = scores - scores.max(axis=1, keepdims=True)       # stable: exp never overflows
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(N), y].mean()
    loss += 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))

    grads = {}
    dscores = np.exp(log_probs)
    dscores[np.arange(N), y] -= 1
    dscores /= N
    grads["W2"] = hidden.T.dot(dscores) + reg * params["W2"]
    grads["b2"] = dscores.sum(axis=0)
    dhidden = dscores.dot(params["W2"].T)
    grads["W1"] = X.T.dot(dhidden) + reg * params["W1"]
    grads["b1"] = dhidden.sum(axis=0)
    return loss, grads


def sgd_update(params, grads, learning_rate):
    """Vanilla SGD, in place."""
    for name in params:
        params[name] -= learning_rate * grads[name]


# ---------------------------------------------------------------- adapting it to the interface
params = init_two_layer_net(784, 100, 10)
reg = 0.0


def parameters():
    """The dict itself: svt reads and writes these very arrays."""
    return params


def loss_and_grads(x, y):
    """Rows already: the assignment's function as it is."""
    return two_layer_loss(params, x, y, reg)


def forward(x):
    """Scores (N, 10), before the softmax."""
    return two_layer_scores(params, x)[0]


def step(grads, lr):
    sgd_update(params, grads, lr)
