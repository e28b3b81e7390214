"""The torch twin a model file declares: TWIN, LOSS, REDUCTION, SCALE read into a `Declaration`,
and one forward and backward of the twin on a batch (`twin_pass`).

    declaration = read_declaration(model.declared, "my_check.py")   # validated, or a one-line UserError
    seen = twin_pass(declaration, state, x, y)    # torch_ref.Recorded: outputs, loss, grads, ...

The loss of the twin, on its last layer's output z (N, 10) and the one-hot targets t:

    cross_entropy          l_n = -log softmax(z_n)[y_n]                    (nn.CrossEntropyLoss)
    squared_error          l_n = sum_c (z_nc - t_nc)^2
    binary_cross_entropy   l_n = -sum_c [t_nc log z_nc + (1 - t_nc) log(1 - z_nc)]   (F.binary_cross_entropy,
                                                                  whose log is clamped at -100, torch's rule)
    loss = SCALE * (mean_n l_n  or  sum_n l_n, by REDUCTION)

squared_error and binary_cross_entropy sum over the 10 outputs of an example, as the learners' ½‖a − y‖²
and per-unit cross-entropy do (nn.MSELoss's mean over N * C would be their loss / 10).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core.errors import UserError
from scratch_nn.losses import softmax
from scratch_nn.spec import SpecError, builtin_spec_names, load_spec, with_overrides

LOSSES = ("cross_entropy", "squared_error", "binary_cross_entropy")
REDUCTIONS = ("mean", "sum")
TWIN_LAYERS = ("linear",)  # and the activations: the twin of a learner's network is an MLP
DEFAULT_TWIN_SPEC = "mnist-mlp"  # TWIN in --layers notation replaces this spec's layers


@dataclass(frozen=True)
class Declaration:
    """What the model file declares, validated: the twin's ModelSpec (in the learner's dtype) and its loss."""

    twin: str  # TWIN as written
    model: object  # scratch_nn.spec.ModelSpec
    loss: str = "cross_entropy"
    reduction: str = "mean"
    scale: float = 1.0

    def describe(self) -> str:
        scale = "" if self.scale == 1.0 else f" x {self.scale:g}"
        return f"twin {self.twin} ({self.model.dtype}), loss {self.loss} ({self.reduction} over the batch{scale})"


def read_declaration(declared: dict, name: str, dtype: str) -> Declaration:
    """TWIN, LOSS, REDUCTION and SCALE from the file's values, each checked with a one-line error."""
    twin = declared.get("TWIN")
    if not isinstance(twin, str) or not twin.strip():
        raise UserError(f"{name}: TWIN must be a string: --layers notation (\"100:relu,10\"), a built-in spec name "
                        f"({', '.join(builtin_spec_names())}) or a spec TOML path; got {twin!r}")
    loss = declared.get("LOSS", "cross_entropy")
    reduction = declared.get("REDUCTION", "mean")
    scale = declared.get("SCALE", 1.0)
    if loss not in LOSSES:
        raise UserError(f"{name}: LOSS {loss!r} is not one of {', '.join(LOSSES)}")
    if reduction not in REDUCTIONS:
        raise UserError(f"{name}: REDUCTION {reduction!r} is not one of {', '.join(REDUCTIONS)} (over the batch)")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale == 0:
        raise UserError(f"{name}: SCALE must be a finite non-zero number (0.5 for ½‖a − y‖²), got {scale!r}")
    model = twin_model(twin.strip(), name, dtype, declared.get("folder"))
    if loss == "binary_cross_entropy" and model.layers[-1].type != "sigmoid":
        raise UserError(f"{name}: LOSS binary_cross_entropy takes probabilities: end TWIN with a sigmoid output "
                        f"(e.g. \"30:sigmoid,10:sigmoid\"), got {twin!r}")
    return Declaration(twin.strip(), model, loss, reduction, float(scale))


def twin_model(twin: str, name: str, dtype: str, folder: str | None):
    """TWIN as a ModelSpec in `dtype`: a spec TOML path (relative to the model file), a built-in spec, or --layers."""
    try:
        if twin.endswith(".toml") or "/" in twin or twin in builtin_spec_names():
            path = Path(folder or ".") / twin
            spec = with_overrides(load_spec(str(path) if path.is_file() else twin), model={"dtype": dtype})
        else:
            spec = with_overrides(load_spec(DEFAULT_TWIN_SPEC), layers=twin, model={"dtype": dtype})
    except SpecError as error:
        raise UserError(f"{name}: TWIN {twin!r}: {error}") from None
    model = spec.model
    unsupported = [layer.type for layer in model.layers if layer.type not in TWIN_LAYERS and layer.role != "activation"]
    if unsupported or model.input_shape != (784,) or model.output_size != 10:
        raise UserError(f"{name}: TWIN {twin!r} must be an MLP from 784 inputs to 10 outputs made of linear layers "
                        f"and activations; it has {', '.join(unsupported) or model.input_shape}"
                        if unsupported or model.input_shape != (784,) else
                        f"{name}: TWIN {twin!r} has {model.output_size} outputs; MNIST has 10 classes")
    return model


def twin_loss(declaration: Declaration):
    """The twin's loss, a function (output (N, 10), targets (N,) int64) -> scalar tensor (module docstring)."""
    import torch
    import torch.nn.functional as F

    def loss(output, targets):
        if declaration.loss == "cross_entropy":
            per_example = F.cross_entropy(output, targets, reduction="none")
        else:
            one_hot = F.one_hot(targets, num_classes=output.shape[1]).to(output.dtype)  # (N, 10)
            if declaration.loss == "squared_error":
                per_example = ((output - one_hot) ** 2).sum(dim=1)
            else:
                per_example = F.binary_cross_entropy(output, one_hot, reduction="none").sum(dim=1)
        total = per_example.mean() if declaration.reduction == "mean" else per_example.sum()
        return total * torch.tensor(declaration.scale, dtype=output.dtype)

    return loss


def twin_pass(declaration: Declaration, state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, dtype: str):
    """One forward and backward of the twin from `state` (twin names and layouts) cast to `dtype`:
    torch_ref.Recorded (outputs per layer, loss, grads, grad_inputs, grad_logits)."""
    from torch_ref import build_model, forward_backward, load_from_numpy

    module = build_model(dataclasses.replace(declaration.model, dtype=dtype))
    load_from_numpy(module, {key: value.astype(dtype) for key, value in state.items()})
    return forward_backward(module, twin_loss(declaration), x.astype(dtype), y)


def twin_shapes(declaration: Declaration) -> dict[str, tuple[int, ...]]:
    """The twin's parameters in order: name -> shape (layers.0.weight (out, in), layers.0.bias (out,), ...)."""
    from torch_ref import build_model

    return {name: tuple(param.shape) for name, param in build_model(declaration.model).named_parameters()}


def output_probabilities(declaration: Declaration, output: np.ndarray) -> np.ndarray:
    """What a learner's forward returning probabilities should equal: softmax of the twin's logits
    under cross_entropy (computed stably: exp(z - max z) / sum)."""
    if declaration.loss != "cross_entropy":
        return output
    return softmax(output)
