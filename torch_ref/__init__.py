"""torch_ref: the idiomatic PyTorch twin of the scratch MLP, built from the same spec.

    from torch_ref import build_model, load_from_numpy, build_loss, build_optimizer
    module = build_model(spec.model)               # TorchSequential: module.layers is an nn.Sequential
    load_from_numpy(module, scratch_model.state_dict())
    set_dropout_masks(module, {"layers.3": mask})  # the mask the scratch side drew

Imports torch and `scratch_nn.spec` only, never `benchmark`.
"""
from torch_ref.model import (
                             TORCH_BUILDERS,
                             TORCH_DTYPES,
                             MaskedDropout,
                             TorchMLP,
                             TorchSequential,
                             build_model,
                             load_from_numpy,
                             load_npz,
                             named_layers,
                             set_dropout_masks,
)
from torch_ref.probe import Recorded, each_layer_alone, forward_backward
from torch_ref.training import (
                             OneHotMSELoss,
                             build_loss,
                             build_optimizer,
                             build_scheduler,
                             l1_penalty,
                             load_training_state,
                             optimizer_state,
                             training_state,
)

__all__ = [
    "TORCH_DTYPES", "MaskedDropout", "TorchMLP", "TorchSequential", "TORCH_BUILDERS", "build_model",
    "load_from_numpy", "load_npz",
    "named_layers", "set_dropout_masks", "OneHotMSELoss", "build_loss", "build_optimizer", "build_scheduler",
    "l1_penalty", "load_training_state", "optimizer_state", "training_state", "Recorded", "each_layer_alone",
    "forward_backward",
]
