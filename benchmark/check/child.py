"""The learner's process: `python -m benchmark.check.child FILE.py` imports their model file and
answers requests on a pipe (benchmark.check.learner.LearnerProcess is the other end).

Protocol: the parent writes pickled `(request, arguments)` on standard input; the child answers each
with a pickled `("ok", value)`, `("theirs", summary, traceback)` (an exception in their code) or
`("usage", message)` (the file does not meet the interface). Standard output carries the answers
alone: the learner's own `print`s (and anything C code writes to file descriptor 1) go to standard
error, so they can neither break the protocol nor mix into svt's tables.

Nothing here computes a figure svt reports: a model file that patches NumPy (`np.dot = ...`)
patches it in this process only.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

import numpy as np

REQUIRED = ("TWIN", "parameters", "loss_and_grads")
OPTIONAL = ("LOSS", "REDUCTION", "SCALE", "forward", "step")
THIS_FILE = os.path.abspath(__file__)


class Usage(Exception):
    """The model file does not meet the interface: one line saying what and what is expected."""


def load_module(path: str):
    """Import the model file as a module named after it, its folder first on sys.path (its imports)."""
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        defined = [name for name in vars(module) if not name.startswith("_")]
        close = [match for name in missing for match in difflib.get_close_matches(name, defined, n=1)]
        raise Usage(f"defines no {', '.join(missing)}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                    + "; a model file needs TWIN (e.g. \"100:relu,10\"), parameters() and loss_and_grads(x, y)")
    for name in ("parameters", "loss_and_grads", "forward", "step"):
        if hasattr(module, name) and not callable(getattr(module, name)):
            raise Usage(f"{name} must be a function, got {type(getattr(module, name)).__name__}")
    return module


def their_parameters(module) -> dict[str, np.ndarray]:
    """parameters(), checked: a dict of name -> NumPy float array (their own arrays, not copies)."""
    params = module.parameters()
    if not isinstance(params, dict) or not params:
        raise Usage(f"parameters() must return a non-empty dict name -> NumPy array, got {type(params).__name__}")
    for name, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
            kind = f"array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            raise Usage(f"parameters()[{name!r}] must be a float32 or float64 NumPy array, got {kind}")
    return params


def declaration(module) -> dict:
    """What the file declares, and which optional functions it has."""
    values = {name: getattr(module, name) for name in ("TWIN", "LOSS", "REDUCTION", "SCALE") if hasattr(module, name)}
    values["has"] = [name for name in ("forward", "step") if hasattr(module, name)]
    first, again = their_parameters(module), their_parameters(module)
    copies = [name for name, value in first.items() if not np.shares_memory(value, again.get(name, value[:0]))]
    if copies:
        raise Usage(f"parameters() must return the model's own arrays, which svt reads and writes in place, not "
                    f"new copies at each call: {', '.join(copies)} {'is' if len(copies) == 1 else 'are'} new each time")
    values["parameters"] = {name: value.copy() for name, value in first.items()}
    return values


def loss_and_grads(module, x: np.ndarray, y: np.ndarray) -> dict:
    """Their loss and gradients (copied), and whether they changed the x they were given."""
    original = x.copy()
    result = module.loss_and_grads(x, y)
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], dict):
        raise Usage(f"loss_and_grads(x, y) must return (loss, dict of gradients), got {type(result).__name__}")
    loss, grads = result
    try:
        loss = float(np.asarray(loss).reshape(()))
    except (TypeError, ValueError):
        raise Usage(f"loss_and_grads returned a loss that is not one number: {type(loss).__name__} "
                    f"of shape {np.shape(loss)}") from None
    grads = {name: numbers(value, f"loss_and_grads's gradient {name!r}") for name, value in grads.items()}
    mutated = x.shape != original.shape or not np.array_equal(x, original)
    return {"loss": loss, "grads": grads, "mutated": mutated}


def set_parameters(module, values: dict[str, np.ndarray]) -> None:
    """Write `values` into their arrays in place (their model keeps using its own arrays)."""
    params = their_parameters(module)
    for name, value in values.items():
        params[name][...] = value


def losses_at(module, x: np.ndarray, y: np.ndarray, points: list[tuple[str, int, float]]) -> list[float]:
    """Their loss with one coordinate moved: for each (name, flat index, delta) the loss at
    parameter[name].flat[index] + delta, the coordinate restored after each (finite differences)."""
    params, losses = their_parameters(module), []
    for name, index, delta in points:
        array = params[name]
        original = array.flat[index]
        array.flat[index] = original + delta
        try:
            losses.append(loss_and_grads(module, x.copy(), y)["loss"])
        finally:
            array.flat[index] = original
    return losses


def step(module, grads: dict[str, np.ndarray], lr: float) -> None:
    """Their `step(grads, lr)`, or plain SGD in place: p -= lr * g."""
    if hasattr(module, "step"):
        module.step(grads, lr)
        return
    for name, array in their_parameters(module).items():
        array -= lr * np.asarray(grads[name]).reshape(array.shape).astype(array.dtype)


def forward(module, x: np.ndarray) -> np.ndarray:
    return numbers(module.forward(x), "forward(x)")


def numbers(value, what: str) -> np.ndarray:
    """A copy of `value` as a NumPy array of numbers, or a Usage error saying what it was."""
    array = np.array(value)
    if array.dtype.kind not in "fiu":
        raise Usage(f"{what} must be an array of numbers, got {type(value).__name__}"
                    + (f" of {array.dtype}" if isinstance(value, np.ndarray) else ""))
    return array


def their_traceback(error: BaseException) -> str:
    """The traceback without this module's frames: what their code did."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(frame.filename) != THIS_FILE and not frame.filename.startswith("<frozen importlib")]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return "Traceback (most recent call last):\n" + "".join(lines)


def serve(path: str, requests: Connection, answers: Connection) -> None:
    """Load the file, then answer requests until "close" or the end of the pipe."""
    handlers = {"parameters": lambda module: {k: v.copy() for k, v in their_parameters(module).items()},
                "set_parameters": set_parameters, "loss_and_grads": loss_and_grads, "forward": forward,
                "step": step, "losses_at": losses_at}
    module, request = None, "load"
    while True:
        try:
            if module is None:
                module = load_module(path)
                answers.send(("ok", declaration(module)))
            try:
                request, arguments = requests.recv()
            except EOFError:  # svt closed the pipe (their code's EOFError is theirs, below)
                return
            if request == "close":
                return
            answers.send(("ok", handlers[request](module, *arguments)))
        except Usage as error:
            answers.send(("usage", str(error)))
            if module is None:
                return
        except Exception as error:  # their code raised: their traceback goes back, marked as theirs
            answers.send(("theirs", f"{type(error).__name__}: {error}", their_traceback(error)))
            if module is None:
                return
        except SystemExit as error:  # their module called exit()
            answers.send(("theirs", f"SystemExit({error.code}) during {request}", their_traceback(error)))
            return


def exit_when_svt_is_gone(parent: int) -> None:
    """End this process as soon as svt's process (its parent) is gone, killed rather than interrupted:
    the learner's code must not run on, orphaned, in an endless loop. A daemon thread polls the parent's
    pid twice a second (an orphan's parent becomes another process)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="svt-parent-watch", daemon=True).start()


def main() -> None:
    exit_when_svt_is_gone(os.getppid())
    answers, requests = Connection(os.dup(1), readable=False), Connection(os.dup(0), writable=False)
    os.dup2(2, 1)  # their prints (Python's and C's) go to standard error
    sys.stdout = sys.stderr
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # their input() meets the end of a file, not svt's requests
    sys.stdin = open(os.devnull, encoding="utf-8")
    try:
        serve(sys.argv[1], requests, answers)
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches this process too: svt says "interrupted", once
        sys.exit(130)
    except BrokenPipeError:  # svt is gone while an answer was being sent: nobody is left to tell
        os._exit(1)


if __name__ == "__main__":
    main()
