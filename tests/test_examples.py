"""examples/: every model file keeps the interface of issue 24, and its planted bug is real.

Without the `svt check` engine, these tests prove what each file claims on its own terms, on a
batch of real MNIST in float64:
- the interface is complete (TWIN, LOSS, REDUCTION, SCALE, parameters(), loss_and_grads(), forward(),
  step() where given), `loss_and_grads` leaves x alone, and `step` writes into parameters()'s arrays;
- forward and the loss equal the twin's (built here with torch_ref from TWIN, the file's weights
  copied by order and shape), for correct and buggy files alike: the bugs are in the backward;
- a correct file's gradients equal central finite differences of its own loss; a buggy file's
  differ exactly on the parameters its docstring names (a shape that is not the parameter's counts
  as different).
Each file's loss_and_grads is called on another batch first: gradients that accumulate show.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_ref
from benchmark.data.mnist import as_inputs, as_labels
from scratch_nn.gradcheck import numerical_gradient, relative_error
from scratch_nn.spec import ModelSpec
from scratch_nn.spec.layer_specs import LAYER_SPECS
from scratch_nn.spec.notation import parse_layers

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CORRECT = ["params_dict/correct.py", "weight_lists/correct.py", "layer_objects/correct.py",
           "columns/correct.py", "fused_update/correct.py"]
BUGGY = {  # file -> the parameters whose gradients the planted bug makes wrong (its docstring says why)
    "params_dict/sum_not_mean.py": {"W1", "b1", "W2", "b2"},
    "params_dict/missing_relu_mask.py": {"W1", "b1"},
    "weight_lists/missing_sigmoid_prime.py": {"weights[0]", "biases[0]"},
    "layer_objects/accumulating.py": {"dense1.weights", "dense1.biases", "dense2.weights", "dense2.biases"},
    "columns/db_summed_everywhere.py": {"b1", "b2", "b3"},
    "fused_update/wrong_sign.py": {"dense0.weights", "dense1.weights"},
}
ALL = CORRECT + list(BUGGY)
BATCH = 12
COORDINATES = 8     # sampled per parameter: half the largest |gradient|, half at random
RIGHT = 1e-6        # float64 central differences at h = 1e-6 agree to ~1e-8 (cs231n's reading: < 1e-7 right)
WRONG = 1e-2        # ... and a real bug is off by far more (> 1e-2 wrong)


def load_example(relative: str):
    """Import one file from its path as a fresh module (its weights as the file initialises them)."""
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location("example_" + relative.replace("/", "_")[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def batches(mnist):
    """Two disjoint batches of real MNIST training images, float64 rows in [0, 1] and int labels."""
    x = as_inputs(mnist.train_images[:2 * BATCH], "float64")
    y = as_labels(mnist.train_labels[:2 * BATCH])
    return (x[:BATCH], y[:BATCH]), (x[BATCH:], y[BATCH:])


def twin_of(module) -> torch_ref.TorchSequential:
    """The torch twin of TWIN in float64 with the file's weights. An output activation (`10:sigmoid`)
    is added by hand here: the --layers notation gains it in the `check` branch."""
    hidden, _, output = module.TWIN.rpartition(",")
    units, _, activation = output.partition(":")
    layers = parse_layers(f"{hidden},{units}" if hidden else units, "TWIN")
    if activation:
        layers = (*layers, LAYER_SPECS[activation]())
    twin = torch_ref.build_model(ModelSpec(layers=layers, dtype="float64"))
    state = {}
    for (twin_name, tensor), (name, array) in zip(twin.named_parameters(), module.parameters().items()):
        array = array.T if array.ndim == 2 and array.T.shape == tuple(tensor.shape) else array
        assert array.size == tensor.numel(), f"{name} {array.shape} does not fit {twin_name} {tensor.shape}"
        state[twin_name] = np.asarray(array, dtype=np.float64).reshape(tuple(tensor.shape))  # (out,1)/(1,out)
    torch_ref.load_from_numpy(twin, state)
    return twin


def twin_loss(module, output: torch.Tensor, y: np.ndarray) -> float:
    """The loss the file declares (LOSS, REDUCTION, SCALE), computed by torch from the twin's output."""
    targets = torch.from_numpy(y)
    if module.LOSS == "cross_entropy":
        per_example = F.cross_entropy(output, targets, reduction="none")
    else:
        one_hot = F.one_hot(targets, 10).to(output.dtype)
        per_unit = ((output - one_hot) ** 2 if module.LOSS == "squared_error"
                    else F.binary_cross_entropy(output, one_hot, reduction="none"))
        per_example = per_unit.sum(dim=1)
    reduced = per_example.mean() if module.REDUCTION == "mean" else per_example.sum()
    return float(module.SCALE * reduced)


def wrong_gradients(module, x, y, other) -> dict[str, float]:
    """Each parameter's relative error between the file's gradient (after a first call on `other`)
    and central differences of the file's own loss at sampled coordinates; inf for a wrong shape."""
    module.loss_and_grads(*other)
    _, grads = module.loss_and_grads(x, y)
    rng = np.random.default_rng(0)
    errors = {}
    for name, array in module.parameters().items():
        analytic = np.asarray(grads[name], dtype=np.float64)
        if analytic.shape != array.shape:
            errors[name] = float("inf")
            continue
        largest = np.argsort(-np.abs(analytic).ravel())[:COORDINATES // 2]
        indices = np.unique(np.concatenate([largest, rng.choice(array.size, COORDINATES // 2, replace=False)]))
        numerical = numerical_gradient(lambda: module.loss_and_grads(x, y)[0], array, 1e-6, indices)
        errors[name] = relative_error(analytic.ravel()[indices], numerical)
    return errors


@pytest.mark.parametrize("relative", ALL)
def test_interface_is_complete(relative, batches):
    module = load_example(relative)
    assert isinstance(module.TWIN, str) and module.TWIN
    assert module.LOSS in ("cross_entropy", "squared_error", "binary_cross_entropy")
    assert module.REDUCTION in ("mean", "sum") and isinstance(module.SCALE, float)
    assert module.__doc__ and "svt check" in module.__doc__, "the docstring says what svt check should say"
    parameters = module.parameters()
    assert parameters and all(isinstance(array, np.ndarray) and array.dtype == np.float64
                              for array in parameters.values())
    (x, y), _ = batches
    x_given = x.copy()
    loss, grads = module.loss_and_grads(x, y)
    assert np.isfinite(loss) and np.ndim(loss) == 0
    assert set(grads) == set(parameters), "the gradients carry parameters()'s keys"
    np.testing.assert_array_equal(x, x_given, err_msg="loss_and_grads changed the x it was given")
    assert module.forward(x).shape == (BATCH, 10)


@pytest.mark.parametrize("relative", [name for name in ALL if "\ndef step(" in (EXAMPLES / name).read_text()])
def test_step_updates_the_arrays_svt_holds(relative):
    module = load_example(relative)
    parameters = module.parameters()
    before = {name: array.copy() for name, array in parameters.items()}
    rng = np.random.default_rng(1)
    grads = {name: rng.standard_normal(array.shape) for name, array in parameters.items()}
    module.step(grads, 0.25)
    for name, array in module.parameters().items():
        assert array is parameters[name], f"{name}: step replaced the array instead of writing into it"
        np.testing.assert_allclose(array, before[name] - 0.25 * grads[name], rtol=0, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("relative", ALL)
def test_forward_and_loss_match_the_twin(relative, batches):
    module = load_example(relative)
    (x, y), _ = batches
    with torch.no_grad():
        output = twin_of(module)(torch.from_numpy(x))
    theirs = module.forward(x)
    if module.LOSS == "cross_entropy" and np.allclose(theirs.sum(axis=1), 1.0):
        output_compared = torch.softmax(output, dim=1).numpy()   # the file gives probabilities
    else:
        output_compared = output.numpy()
    assert relative_error(theirs, output_compared) < 1e-12
    loss, _ = module.loss_and_grads(x, y)
    assert loss == pytest.approx(twin_loss(module, output, y), rel=1e-12)


@pytest.mark.parametrize("relative", CORRECT)
def test_correct_gradients_match_finite_differences(relative, batches):
    module = load_example(relative)
    errors = wrong_gradients(module, *batches[0], batches[1])
    assert max(errors.values()) < RIGHT, errors


@pytest.mark.parametrize("relative, expected", BUGGY.items())
def test_planted_bug_is_real(relative, expected, batches):
    module = load_example(relative)
    errors = wrong_gradients(module, *batches[0], batches[1])
    wrong = {name for name, error in errors.items() if error > WRONG}
    right = {name for name, error in errors.items() if error < RIGHT}
    assert wrong == expected and right == set(errors) - expected, errors


def test_every_example_file_is_listed():
    found = {str(path.relative_to(EXAMPLES)) for path in EXAMPLES.glob("*/*.py")}
    assert found == set(ALL), "a file in examples/ that no test runs, or a listed file that is gone"
