"""docs/img/skip-connections.png: the run report's gradient-norm plot (benchmark.report.plots.grad_norms)
of plain-deep and resnet-deep side by side, from their first 150 training steps on real MNIST (the
scratch side, gradient norms every 10 steps, as `svt run --check-every 10` records them).

    python tools/skip_connections_plot.py docs/img/skip-connections.png
"""
from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.data.mnist import as_inputs, as_labels, load_mnist  # noqa: E402
from benchmark.report import plots  # noqa: E402
from benchmark.sides.scratch import ScratchSide  # noqa: E402
from scratch_nn.spec import load_spec  # noqa: E402

STEPS, EVERY = 150, 10


def gradient_rows(name: str, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """The layers table a run records (parameter, side, step, grad_norm) for STEPS steps of spec `name`."""
    spec = load_spec(name)
    side, rows = ScratchSide(spec), []
    order = np.random.default_rng(spec.train.seed).permutation(len(x))
    for step in range(STEPS):
        batch = order[step * spec.train.batch_size:(step + 1) * spec.train.batch_size]
        side.step(x[batch], y[batch], observe=step % EVERY == 0)
        if step % EVERY == 0:
            rows += [{"step": step + 1, "side": "scratch", **row} for row in side.diagnostics["parameters"]]
    return pd.DataFrame(rows)


def main(path: str) -> None:
    mnist = load_mnist(quiet=True)
    x = as_inputs(mnist.train_images[:STEPS * 64], "float32", shape=(1, 28, 28))
    y = as_labels(mnist.train_labels[:STEPS * 64])
    figure, axes = plt.subplots(1, 2, figsize=(20, 4.6))
    for axis, name, title in ((axes[0], "plain-deep", "plain-deep: 20 weight layers, sigmoid, no skip connections"),
                              (axes[1], "resnet-deep", "resnet-deep: the same layers in 9 residual blocks")):
        panel = plots.grad_norms(gradient_rows(name, x, y))
        panel.canvas.draw()
        axis.imshow(np.asarray(panel.canvas.buffer_rgba()))
        axis.set_title(title, fontsize=13)
        axis.axis("off")
        plt.close(panel)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1])
