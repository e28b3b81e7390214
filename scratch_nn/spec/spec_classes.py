"""The spec's frozen dataclasses (ModelSpec, TrainSpec, Spec) and their validation, done once.

`scratch_nn.spec` reads them from TOML and the command line; everything else trusts a validated
spec. A model is its layer list (`scratch_nn.spec.layer_specs`), the shape of one input example and
the settings its layers share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from scratch_nn.init import SCHEMES
from scratch_nn.spec.block_specs import LayerEntry, layer_entries
from scratch_nn.spec.data_spec import CLASSIFICATION_LOSSES, DataSpec, validate_data, validate_fit_model
from scratch_nn.spec.layer_specs import LayerSpec, init_gain, propagate_shapes, shape_text
from scratch_nn.spec.spec_checks import SpecError, check_choice, check_int, check_number

INITS = SCHEMES  # torch_default, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, zeros, constant
LOSSES = ("cross_entropy", "mse", "l1", "huber")  # l1 and huber: a fit's (scratch_nn.spec.data_spec)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")
DTYPES = ("float32", "float64")

MNIST_INPUT_SIZE = 784
MNIST_CLASSES = 10
DEFAULT_SPEC = "mnist-mlp"


@dataclass(frozen=True)
class ModelSpec:
    """The network: its layers in order (one entry per layer, `scratch_nn.spec.layer_specs`), the shape of
    one input example, and the settings every layer shares."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...] = (MNIST_INPUT_SIZE,)
    init: str = "kaiming_uniform"  # the weight layers' scheme, unless a layer names its own
    init_value: float = 0.0  # for init = "constant"
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    dtype: str = "float32"
    huber_delta: float = 1.0  # for loss = "huber": torch.nn.HuberLoss(delta)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's output shape, batch dimension left out: shapes[i] is what layers.{i} gives."""
        return propagate_shapes(self.layers, self.input_shape)

    @property
    def output_size(self) -> int:
        """The number of logits (classes) of the last layer."""
        return self.shapes[-1][0]

    def weight_init(self, index: int) -> tuple[str, float]:
        """(scheme, Kaiming gain) of weight layer `index`: its own init or the model's, and the gain of
        the first activation after it (`scratch_nn.spec.layer_specs.init_gain`)."""
        return self.layers[index].init or self.init, init_gain(self.layers, index)

    def weight_layers(self) -> list[int]:
        """The indices of the weight layers of the model's own list (`weight_layer_names` for all of them)."""
        return [index for index, layer in enumerate(self.layers) if layer.role == "weight"]

    @cached_property
    def entries(self) -> tuple[LayerEntry, ...]:
        """Every layer, blocks' own layers included, with its torch name, shapes, depth and init gain,
        in the order both sides build and run them (`scratch_nn.spec.block_specs.layer_entries`)."""
        return tuple(layer_entries(self.layers, self.input_shape))

    def weight_layer_names(self) -> list[str]:
        """The names of every weight layer, inside blocks too ("layers.3.body.0"): init and L1 read them."""
        return [entry.name for entry in self.entries if entry.spec.role == "weight"]

    def layer_init(self, entry: LayerEntry) -> tuple[str, float]:
        """(scheme, Kaiming gain) of a weight layer of `entries`: its own init or the model's, and its gain."""
        return entry.spec.init or self.init, entry.gain


@dataclass(frozen=True)
class TrainSpec:
    """How to train: the optimiser with torch's hyper-parameter names, the schedule, the data order."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0        # sgd, rmsprop
    dampening: float = 0.0       # sgd
    nesterov: bool = False       # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8            # adam, adamw, rmsprop
    alpha: float = 0.99          # rmsprop smoothing constant
    weight_decay: float = 0.0    # L2 added to the gradient (adamw: decoupled), all parameters
    l1: float = 0.0              # l1 * sum|w| added to the loss, Linear weights only
    schedule: str = "constant"   # per epoch: "step" (StepLR) or "cosine" (CosineAnnealingLR)
    step_size: int = 1           # schedule = "step"
    gamma: float = 0.1           # schedule = "step"
    batch_size: int = 64         # a fit: 0 = the whole data set in one batch
    epochs: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Spec:
    """A named pair of model and training specs: what every subcommand takes."""

    name: str
    model: ModelSpec
    train: TrainSpec
    description: str = ""
    data: DataSpec = DataSpec()  # MNIST, or a function to fit


# ---------------------------------------------------------------------------------------------
# Validation: one function per dataclass, called by every constructor path (TOML, CLI, Python).


def validate_model(model: ModelSpec, where: str = "model") -> None:
    """Check every layer and setting, and propagate the shapes once (a layer that does not fit its
    input is refused, naming the layer, its index and the shapes)."""
    if not isinstance(model.layers, tuple) or not model.layers:
        raise SpecError(f"{where}: layers must be a non-empty tuple of layer specs, got {model.layers!r}")
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, LayerSpec):
            raise SpecError(f"{where}: layers.{index} is not a layer spec, got {layer!r}")
        layer.check(f"{where}: layers.{index} ({layer.type})")
    shape = model.input_shape
    if not isinstance(shape, tuple) or not shape or any(isinstance(size, bool) or not isinstance(size, int)
                                                        or size < 1 for size in shape):
        raise SpecError(f"{where}: input_shape must be a list of positive integers like [784] or [1, 28, 28], "
                        f"got {shape!r}")
    if len(propagate_shapes(model.layers, shape, where)[-1]) != 1:
        raise SpecError(f"{where}: the last layer gives {shape_text(model.shapes[-1])}; it must give "
                        "(N, classes) logits: put a flatten and a linear at the end")
    check_choice(model.init, INITS, "init", where)
    check_number(model.init_value, "init_value", where, -1e6, 1e6)
    check_choice(model.loss, LOSSES, "loss", where)
    check_number(model.label_smoothing, "label_smoothing", where, 0.0, 1.0)
    if model.label_smoothing and model.loss != "cross_entropy":
        raise SpecError(f"{where}: label_smoothing only applies to loss = \"cross_entropy\"")
    check_number(model.huber_delta, "huber_delta", where, 0.0, 1e6, low_open=True)
    check_choice(model.dtype, DTYPES, "dtype", where)


def validate_train(train: TrainSpec, where: str = "train", smallest_batch: int = 1) -> None:
    check_choice(train.optimizer, OPTIMIZERS, "optimizer", where)
    check_number(train.lr, "lr", where, 0.0, math.inf, low_open=True)
    check_number(train.momentum, "momentum", where, 0.0, 1.0)
    check_number(train.dampening, "dampening", where, 0.0, 1.0, high_open=False)
    if train.nesterov and (train.momentum <= 0 or train.dampening != 0):
        raise SpecError(f"{where}: nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
    if not (isinstance(train.betas, tuple) and len(train.betas) == 2):
        raise SpecError(f"{where}: betas must be a pair [beta1, beta2], got {train.betas!r}")
    for beta in train.betas:
        check_number(beta, "each of betas", where, 0.0, 1.0)
    check_number(train.eps, "eps", where, 0.0, 1.0)
    check_number(train.alpha, "alpha", where, 0.0, 1.0, high_open=False)
    check_number(train.weight_decay, "weight_decay", where, 0.0, math.inf)
    check_number(train.l1, "l1", where, 0.0, math.inf)
    check_choice(train.schedule, SCHEDULES, "schedule", where)
    check_int(train.step_size, "step_size", where)
    check_number(train.gamma, "gamma", where, 0.0, 1.0, low_open=True, high_open=False)
    check_int(train.batch_size, "batch_size", where, minimum=smallest_batch)
    check_int(train.epochs, "epochs", where)
    check_int(train.seed, "seed", where, minimum=0)


def validate(spec: Spec, where: str = "spec") -> Spec:
    """Check every field of `spec`, and that it fits its data: MNIST (784 pixels in, 10 classes out)
    or a function (one number in, one out: `scratch_nn.spec.data_spec`)."""
    validate_model(spec.model, f"{where}: model")
    if not isinstance(spec.data, DataSpec):
        raise SpecError(f"{where}: data must be a DataSpec, got {spec.data!r}")
    validate_data(spec.data, f"{where}: data")
    validate_train(spec.train, f"{where}: train", smallest_batch=0 if spec.data.is_function else 1)
    if spec.data.is_function:
        validate_fit_model(spec.model, f"{where}: model")
        return spec
    if spec.model.loss not in CLASSIFICATION_LOSSES:
        raise SpecError(f"{where}: model: loss {spec.model.loss!r} is a regression loss, for a fit ([data] "
                        f"source = a function); MNIST takes one of {', '.join(CLASSIFICATION_LOSSES)}")
    if math.prod(spec.model.input_shape) != MNIST_INPUT_SIZE:
        raise SpecError(f"{where}: input_shape {list(spec.model.input_shape)} does not fit MNIST images, which "
                        f"have {MNIST_INPUT_SIZE} pixels (28x28); use [{MNIST_INPUT_SIZE}] or [1, 28, 28]")
    if spec.train.batch_size < 2 and any(entry.spec.type == "batch_norm1d" for entry in spec.model.entries):
        raise SpecError(f"{where}: batch_size {spec.train.batch_size} with batch_norm1d: batch-norm needs "
                        "at least 2 examples per batch for its statistics (torch refuses 1 too)")
    if spec.model.shapes[-1] != (MNIST_CLASSES,):
        last = len(spec.model.layers) - 1
        raise SpecError(f"{where}: model: layers.{last} ({spec.model.layers[last].type}) gives "
                        f"{shape_text(spec.model.shapes[-1])}, which does not fit MNIST's {MNIST_CLASSES} classes: "
                        f"the last layer must give (N, {MNIST_CLASSES})")
    return spec
