"""scratch_nn: a from-scratch NumPy neural-network library (layers, activations, losses, init, a
Sequential model built from a spec's layer list) that never imports torch.

    from scratch_nn import Sequential, CrossEntropyLoss, load_spec
    spec = load_spec("mnist-mlp")
    model = Sequential(spec.model, np.random.default_rng(spec.train.seed))   # MLP is the same class

Optimisers live in `scratch_nn.optim`, learning-rate schedulers in `scratch_nn.schedulers`.
"""
from scratch_nn.activations import (
                                    ELU,
                                    GELU,
                                    Activation,
                                    Identity,
                                    LeakyReLU,
                                    ReLU,
                                    Sigmoid,
                                    Softplus,
                                    Tanh,
)
from scratch_nn.adaptive_pool import AdaptiveAvgPool2d
from scratch_nn.blocks import Concat, Residual
from scratch_nn.gradcheck import check_layer_gradients, check_model_gradients, numerical_gradient, relative_error
from scratch_nn.init import calculate_gain, fan_in_and_fan_out, init_weight_layer
from scratch_nn.io import load_npz, save_npz
from scratch_nn.layer import Flatten, Layer
from scratch_nn.layers import BatchNorm1d, Dropout, Linear
from scratch_nn.losses import CrossEntropyLoss, MSELoss, build_loss, log_softmax, softmax
from scratch_nn.model import LAYER_CLASSES, MLP, Sequential, build_layers
from scratch_nn.spec import ModelSpec, Spec, SpecError, TrainSpec, load_spec, with_overrides
from scratch_nn.spec.layer_specs import LAYER_SPECS, LayerSpec
from scratch_nn.spec.notation import format_layers, parse_layers

__all__ = [
    "Layer", "Activation", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ELU", "GELU", "Softplus",
    "Linear", "Dropout", "BatchNorm1d", "Flatten", "Residual", "Concat", "AdaptiveAvgPool2d",
    "CrossEntropyLoss", "MSELoss", "build_loss",
    "softmax", "log_softmax", "calculate_gain", "fan_in_and_fan_out", "init_weight_layer", "Sequential", "MLP",
    "build_layers", "LAYER_CLASSES", "LAYER_SPECS", "parse_layers", "format_layers", "save_npz", "load_npz",
    "numerical_gradient", "relative_error", "check_layer_gradients", "check_model_gradients",
    "Spec", "ModelSpec", "LayerSpec", "TrainSpec", "SpecError", "load_spec", "with_overrides",
]
