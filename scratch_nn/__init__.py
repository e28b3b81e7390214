"""scratch_nn: a from-scratch NumPy MLP (layers, activations, losses, init, model) that never imports torch.

    from scratch_nn import MLP, CrossEntropyLoss, load_spec
    spec = load_spec("mnist-mlp")
    model = MLP(spec.model, np.random.default_rng(spec.train.seed))

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
                                    build_activation,
)
from scratch_nn.gradcheck import check_layer_gradients, check_model_gradients, numerical_gradient, relative_error
from scratch_nn.init import calculate_gain, init_linear
from scratch_nn.io import load_npz, save_npz
from scratch_nn.layers import BatchNorm1d, Dropout, Linear
from scratch_nn.losses import CrossEntropyLoss, MSELoss, build_loss, log_softmax, softmax
from scratch_nn.model import MLP, build_layers
from scratch_nn.spec import LayerSpec, ModelSpec, Spec, SpecError, TrainSpec, load_spec, with_overrides

__all__ = [
    "Activation", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ELU", "GELU", "Softplus",
    "build_activation", "Linear", "Dropout", "BatchNorm1d", "CrossEntropyLoss", "MSELoss", "build_loss",
    "softmax", "log_softmax", "calculate_gain", "init_linear", "MLP", "build_layers", "save_npz", "load_npz",
    "numerical_gradient", "relative_error", "check_layer_gradients", "check_model_gradients",
    "Spec", "ModelSpec", "LayerSpec", "TrainSpec", "SpecError", "load_spec", "with_overrides",
]
