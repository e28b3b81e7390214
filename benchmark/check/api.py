"""The check on objects in memory, for a notebook:

    from benchmark.check import check_model
    report = check_model(parameters=params, loss_and_grads=my_loss_and_grads, twin="100:relu,10")
    print(report.table()); print(report.verdict()); report.ok; report.findings

The same engine as `svt check FILE.py` (benchmark.check.engine), run on the caller's own functions
in the caller's process (benchmark.check.learner.InMemoryModel): no time limit, and a NumPy patched
by the notebook is the one the check computes with (`svt check` on a file is immune to that).
"""
from __future__ import annotations

from collections.abc import Callable

from benchmark.check.engine import CheckOptions, check
from benchmark.check.learner import InMemoryModel
from benchmark.check.report import CheckReport


def check_model(*, parameters, loss_and_grads: Callable, twin: str, loss: str = "cross_entropy",
                reduction: str = "mean", scale: float = 1.0, forward: Callable | None = None,
                step: Callable | None = None, batch: int = 64, seed: int = 0, steps: int = 1, lr: float = 0.1,
                map: dict[str, str] | None = None, data_dir: str | None = None,
                name: str = "your model") -> CheckReport:
    """Check `loss_and_grads(x, y) -> (loss, grads)` over `parameters` (a dict name -> array, or a
    function returning it) against the twin `twin` (--layers notation, a spec name or a TOML path)
    with the loss `loss` ("cross_entropy", "squared_error", "binary_cross_entropy"), `reduction`
    over the batch and `scale`, on one MNIST batch of `batch` examples (`seed`), then `steps` updates
    (`step(grads, lr)` or p -= lr * g). Raises benchmark.core.errors.UserError when the model cannot
    be used (TheirError when their code raised)."""
    params_function = parameters if callable(parameters) else (lambda: parameters)
    declared = {"TWIN": twin, "LOSS": loss, "REDUCTION": reduction, "SCALE": scale}
    model = InMemoryModel(params_function, loss_and_grads, forward, step, declared, name)
    options = CheckOptions(batch=batch, seed=seed, steps=steps, lr=lr, overrides=dict(map or {}), data_dir=data_dir)
    return check(model, options, name)
