"""The recipe of `svt sanity`: which data each of the seven checks gets, and in what order they run.

    data = sanity_data(spec, mnist, rng)        # slices of MNIST's training set, in training order
    for result in run_checks(spec, model, data): ...   # the seven CheckResults, in the order to fix them

The data are slices of MNIST's training set in the order training would see them (one generator of
the spec's seed draws the init, then the permutation); the last HELD_OUT images of the permutation
are held out for check 5. The test set is not touched.
"""
from __future__ import annotations

import numpy as np

INIT_BATCH = 512  # check 1: enough images that the mean loss is within ~0.02 of its expectation
GRADCHECK_BATCH = 16  # check 2: one loss evaluation per sampled coordinate, so a small batch
OVERFIT_BATCH = 32  # check 4
USES_INPUT_IMAGES = 2048  # check 5: the training slice
HELD_OUT = 1000  # check 5: held-out images, the end of the permutation
DECREASE_STEPS = 100  # check 6
HEALTH_BATCH = 256  # check 7


def sanity_data(spec, mnist, rng: np.random.Generator) -> dict:
    """The slices the checks use, in the spec's dtype: "train" (x, y) in training order, capped at
    what the checks need, and "held_out" (x, y) from the end of the same permutation."""
    from benchmark.data.mnist import as_inputs, as_labels

    order = rng.permutation(len(mnist.train_labels))
    needed = max(INIT_BATCH, USES_INPUT_IMAGES, HEALTH_BATCH, spec.train.batch_size * DECREASE_STEPS)
    train = order[:min(needed, len(order) - HELD_OUT)]

    def arrays(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (as_inputs(mnist.train_images[chosen], spec.model.dtype, shape=spec.model.input_shape),
                as_labels(mnist.train_labels[chosen]))

    return {"train": arrays(train), "held_out": arrays(order[-HELD_OUT:])}


def run_checks(spec, model, data: dict):
    """Yield the seven CheckResults in order (each check starts from a copy of the same `model`)."""
    from benchmark.sanity.checks import check_gradients, check_initial_loss, check_parity
    from benchmark.sanity.health import check_gradient_health
    from benchmark.sanity.training import check_loss_decreases, check_overfit, check_uses_input, cycle_batches

    x, y = data["train"]
    train, l1 = spec.train, spec.train.l1
    yield check_initial_loss(model, x[:INIT_BATCH], y[:INIT_BATCH])
    yield check_gradients(model, x[:GRADCHECK_BATCH], y[:GRADCHECK_BATCH], l1=l1)
    yield check_parity(model, x[:train.batch_size], y[:train.batch_size], l1=l1)
    yield check_overfit(model, train, x[:OVERFIT_BATCH], y[:OVERFIT_BATCH])
    yield check_uses_input(model, train, x[:USES_INPUT_IMAGES], y[:USES_INPUT_IMAGES], *data["held_out"])
    yield check_loss_decreases(model, train, list(cycle_batches(x, y, train.batch_size, DECREASE_STEPS)))
    yield check_gradient_health(model, x[:HEALTH_BATCH], y[:HEALTH_BATCH])
