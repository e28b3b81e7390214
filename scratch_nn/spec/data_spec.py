"""What a spec trains on: MNIST, or a function of one variable (a fit), the spec's `[data]` table.

    [data]
    source = "sin"        # "mnist" (the default), a built-in target (FUNCTION_TARGETS), or a file "points.csv"
    samples = 64          # training points, evenly spaced over [low, high] (a built-in target)
    low = -3.0
    high = 3.0
    noise = 0.0           # standard deviation of the Gaussian noise added to the targets
    seed = 0              # the noise's generator

A fit's network takes one number in (input_shape = [1]) and gives one out; its loss is a
regression loss (REGRESSION_LOSSES). The points themselves are drawn by `benchmark.data.functions`,
which defines the targets named here (a test checks that the two lists agree).
"""
from __future__ import annotations

from dataclasses import dataclass

from scratch_nn.spec.spec_checks import SpecError, check_int, check_number

MNIST = "mnist"
FUNCTION_TARGETS = ("line", "parabola", "sin", "abs", "step", "plateau")
REGRESSION_LOSSES = ("mse", "l1", "huber")
CLASSIFICATION_LOSSES = ("cross_entropy", "mse")


@dataclass(frozen=True)
class DataSpec:
    """The training data: MNIST, or a function's points (`source` a built-in target or a CSV file)."""

    source: str = MNIST
    samples: int = 64
    low: float = -3.0
    high: float = 3.0
    noise: float = 0.0
    seed: int = 0

    @property
    def is_function(self) -> bool:
        """True for a fit (a built-in target or a CSV file), False for MNIST."""
        return self.source != MNIST

    @property
    def is_file(self) -> bool:
        return self.source.lower().endswith(".csv")


def validate_data(data: DataSpec, where: str = "data") -> None:
    """Check the source and, for a built-in target, its settings."""
    if not isinstance(data.source, str) or not (data.source in (MNIST, *FUNCTION_TARGETS) or data.is_file):
        raise SpecError(f"{where}: unknown source {data.source!r}; allowed: {MNIST}, "
                        f"{', '.join(FUNCTION_TARGETS)}, or a file of x,y points ending in .csv")
    check_int(data.samples, "samples", where, minimum=2)
    check_number(data.low, "low", where, -1e6, 1e6)
    check_number(data.high, "high", where, -1e6, 1e6)
    if not data.low < data.high:
        raise SpecError(f"{where}: the interval must have low < high, got [{data.low}, {data.high}]")
    check_number(data.noise, "noise", where, 0.0, 1e6)
    check_int(data.seed, "seed", where, minimum=0)


def validate_fit_model(model, where: str) -> None:
    """A fit's network: one number in, one out, a regression loss."""
    if model.input_shape != (1,):
        raise SpecError(f"{where}: a fit's network takes one number: input_shape must be [1], "
                        f"got {list(model.input_shape)}")
    if model.output_size != 1 or len(model.shapes[-1]) != 1:
        raise SpecError(f"{where}: a fit's network gives one number: its last layer must give (N, 1), "
                        f"got (N, {', '.join(map(str, model.shapes[-1]))}); end --layers with ,1")
    if model.loss not in REGRESSION_LOSSES:
        raise SpecError(f"{where}: loss {model.loss!r} is a classification loss; a fit takes one of "
                        f"{', '.join(REGRESSION_LOSSES)}")
