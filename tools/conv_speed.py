"""Time a lenet5-relu training step, scratch_nn against torch, side by side: python tools/conv_speed.py.

    conv 6@5x5 pad 2 - relu - maxpool 2 - conv 16@5x5 - relu - maxpool 2 - flatten - 120 relu - 84 relu - 10

Both sides start from the same weights (scratch's torch-default init, copied into torch), train with
SGD (lr 0.01, momentum 0.9) and cross-entropy on the same real MNIST batches, and are timed in turns
(one scratch step, one torch step, ...) so that a change in the machine's load hits both. A step is
forward + loss + backward (no input gradient for the first conv, as torch skips it too) + update.
Printed per batch size: median step time of each side over the repeats and their ratio, then the
scratch side's per-op profile (medians of each layer's forward and backward, the loss, the update).
`svt bench --spec lenet5-relu` is where the project measures the CNN's speed (step, forward,
backward, update, inference, epoch, memory); this script adds what the bench does not print, the
per-op profile of the scratch side, to find which layer to work on.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmark.data.mnist import load_mnist
from scratch_nn.activations import ReLU
from scratch_nn.conv import Conv2d
from scratch_nn.layer import Flatten
from scratch_nn.layers import Linear
from scratch_nn.losses import CrossEntropyLoss
from scratch_nn.optim import SGD
from scratch_nn.pooling import MaxPool2d

LR, MOMENTUM = 0.01, 0.9


def scratch_lenet5_relu(rng: np.random.Generator, dtype) -> list:
    return [Conv2d(1, 6, 5, padding=2, dtype=dtype, rng=rng), ReLU(), MaxPool2d(2),
            Conv2d(6, 16, 5, dtype=dtype, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
            Linear(400, 120, dtype=dtype, rng=rng), ReLU(), Linear(120, 84, dtype=dtype, rng=rng), ReLU(),
            Linear(84, 10, dtype=dtype, rng=rng)]


def torch_twin(layers: list, dtype) -> torch.nn.Sequential:
    """torch's nn.Sequential of the same layers, holding copies of the scratch weights."""
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10)).to(getattr(torch, np.dtype(dtype).name))
    state = {f"{index}.{name}": torch.tensor(value) for index, layer in enumerate(layers)
             for name, value in layer.params.items()}
    model.load_state_dict(state)
    return model


class ScratchStep:
    """One training step of the scratch stack, with each op's time recorded in `profile`."""

    def __init__(self, layers: list) -> None:
        self.layers, self.loss = layers, CrossEntropyLoss()
        named = [(f"{index}.{name}", layer.params[name], layer.grads[name])
                 for index, layer in enumerate(layers) for name in layer.params]
        self.optimizer = SGD({name: param for name, param, _ in named}, lr=LR, momentum=MOMENTUM)
        self.grads = {name: grad for name, _, grad in named}
        self.profile: dict[str, list[float]] = {}

    def _record(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.profile.setdefault(name, []).append(now - started)
        return now

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        clock = time.perf_counter()
        for index, layer in enumerate(self.layers):
            x = layer.forward(x)
            clock = self._record(f"{index} {type(layer).__name__} forward", clock)
        loss = self.loss.forward(x, y)
        grad = self.loss.backward()
        clock = self._record("loss forward+backward", clock)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            grad = layer.backward(grad, input_grad=False) if index == 0 else layer.backward(grad)
            clock = self._record(f"{index} {type(layer).__name__} backward", clock)
        self.optimizer.step(self.grads)
        self._record("SGD step", clock)
        return loss.item()


def torch_step(model, optimizer, loss_fn):
    def step(x, y) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def time_batch_size(images: np.ndarray, labels: np.ndarray, batch_size: int, repeats: int, dtype) -> dict:
    layers = scratch_lenet5_relu(np.random.default_rng(0), dtype)
    model = torch_twin(layers, dtype)
    scratch = ScratchStep(layers)
    step_torch = torch_step(model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM),
                            torch.nn.CrossEntropyLoss())
    batches = [(images[start:start + batch_size], labels[start:start + batch_size])
               for start in range(0, batch_size * (repeats + 5), batch_size)]
    times = {"scratch": [], "torch": []}
    losses = []
    for position, (x, y) in enumerate(batches):
        x_torch, y_torch = torch.from_numpy(x), torch.from_numpy(y)
        started = time.perf_counter()
        loss_scratch = scratch(x, y)
        middle = time.perf_counter()
        loss_torch = step_torch(x_torch, y_torch)
        ended = time.perf_counter()
        if position >= 5:  # warm-up: buffers, thread pools, caches
            times["scratch"].append(middle - started)
            times["torch"].append(ended - middle)
        losses.append((loss_scratch, loss_torch))
    profile = {name: statistics.median(values[5:]) for name, values in scratch.profile.items()}
    return {"scratch": statistics.median(times["scratch"]), "torch": statistics.median(times["torch"]),
            "profile": profile, "last_losses": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--repeats", type=int, default=40, help="timed steps per batch size (after 5 warm-up)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (NumPy's OpenBLAS: its own)")
    parser.add_argument("--profile", action="store_true", help="print the scratch side's per-op medians")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist(quiet=True)
    images = (mnist.train_images[:, None].astype(args.dtype) / np.array(255, dtype=args.dtype))  # (N, 1, 28, 28)
    labels = mnist.train_labels.astype(np.int64)
    print(f"lenet5-relu training step, {args.dtype}, torch {torch.__version__} ({args.threads} threads), "
          f"medians of {args.repeats} alternating steps")
    print(f"{'batch':>6} {'scratch ms':>11} {'torch ms':>9} {'ratio':>6}   last losses (scratch, torch)")
    results = {}
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        result = results[batch_size] = time_batch_size(images, labels, batch_size, args.repeats, args.dtype)
        print(f"{batch_size:>6} {result['scratch'] * 1e3:>11.2f} {result['torch'] * 1e3:>9.2f} "
              f"{result['scratch'] / result['torch']:>6.2f}   {result['last_losses'][0]:.6f}, "
              f"{result['last_losses'][1]:.6f}")
    if args.profile:
        for batch_size, result in results.items():
            total = sum(result["profile"].values()) * 1e3
            print(f"\nscratch per-op medians at batch {batch_size} (ms; sum {total:.2f})")
            for name, seconds in result["profile"].items():
                print(f"  {name:<28} {seconds * 1e3:7.3f}")


if __name__ == "__main__":
    main()
