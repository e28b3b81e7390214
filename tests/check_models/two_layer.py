"""A correct two-layer network in the params-dict convention: W (in, out), b (out,), rows,
softmax cross-entropy averaged over the batch. The planted mistakes of tests/test_check.py are
made by `BUG` (set by the copy a test writes next to this file)."""
import numpy as np

TWIN = "100:relu,10"
BUG = ""
rng = np.random.default_rng(0)
params = {"W1": rng.normal(0, 0.05, (784, 100)), "b1": np.zeros(100),
          "W2": rng.normal(0, 0.1, (100, 10)), "b2": np.zeros(10)}


def parameters():
    return params


def forward(x):
    hidden = np.maximum(0, x @ params["W1"] + params["b1"])
    return hidden @ params["W2"] + params["b2"]


def loss_and_grads(x, y):
    n = len(x)
    pre = x @ params["W1"] + params["b1"]
    hidden = np.maximum(0, pre)
    scores = hidden @ params["W2"] + params["b2"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    d_scores = np.exp(log_probs)
    d_scores[np.arange(n), y] -= 1
    d_scores /= n
    d_hidden = d_scores @ params["W2"].T
    d_pre = d_hidden * (pre > 0)
    grads = {"W1": x.T @ d_pre, "b1": d_pre.sum(axis=0), "W2": hidden.T @ d_scores, "b2": d_scores.sum(axis=0)}
    return loss, grads
