"""A two-layer net in the course-assignment convention: a params dict, checked by `svt check`.

Convention (course assignments): the parameters live in one dict, `W1`, `b1`, `W2`, `b2`, with
W of shape (in, out) and b of shape (out,); examples are rows (N, 784); the loss is softmax
cross-entropy averaged over the batch plus 0.5 * reg * ||W||^2 (reg is 0 here, as the twin has no
such term); `loss(X, y)` returns the loss and a grads dict with the same keys.

    forward:  h = max(0, X W1 + b1),  scores = h W2 + b2,  L = mean_i(-log softmax(scores_i)[y_i])
    backward: dscores = (softmax(scores) - onehot(y)) / N,  dW2 = h^T dscores,  db2 = sum_i dscores,
              dh = dscores W2^T * [h > 0],  dW1 = X^T dh,  db1 = sum_i dh

Expected: `svt check examples/params_dict/correct.py` agrees on every tensor (exit 0).
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
    dhidden[hidden <= 0] = 0                                    # ReLU lets gradient through where it was on
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
