"""The learner's model as svt sees it: their file in its own process, or their functions in memory.

    model = LearnerProcess("my_check.py", timeout=60)   # imports the file in a child process
    model.declared          # {"TWIN": ..., "LOSS": ..., "has": ["forward"], "parameters": {name: copy}}
    model.parameters()      # copies of their arrays, their names and layouts
    model.set_parameters({"W1": array})                 # written into their arrays in place
    seen = model.loss_and_grads(x, y)                   # {"loss": float, "grads": {...}, "mutated": bool}
    model.forward(x); model.step(grads, lr); model.close()

`LearnerProcess` runs `python -m benchmark.check.child FILE` and speaks to it over a pipe
(benchmark/check/child.py has the protocol). Their code cannot break svt: an exception in it comes
back as `TheirError` (their traceback, marked as theirs), a file that does not meet the interface
as a one-line `UserError`, a call that takes longer than `timeout` seconds or a process that dies
as a `UserError` saying so; a module that patches NumPy patches the child's NumPy, never the one
svt computes with. `InMemoryModel` offers the same methods over functions of the caller's process
(`check_model` in a notebook).

A training loop drives either step by step (what `svt run --model` needs):

    with LearnerProcess(path, timeout) as model:
        for x, y in batches:
            seen = model.loss_and_grads(x, y)    # their loss and gradients on the batch
            model.step(seen["grads"], lr)        # their step(grads, lr), or p -= lr * g in place
        scores = model.forward(x_test)           # their forward (a UserError if the file has none)
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from benchmark.core.environment import THREAD_VARIABLES
from benchmark.core.errors import UserError


class TheirError(UserError):
    """An exception raised by the learner's code: `summary` ("ValueError: ..."), `where` (the file
    and the call) and `traceback` (their frames only). The CLI prints the traceback, then one line."""

    def __init__(self, where: str, summary: str, traceback: str) -> None:
        from benchmark.check.mistakes import label_hint

        hint = label_hint(summary) if "loss_and_grads" in where else ""
        super().__init__(f"{where} raised {summary} (the traceback above is from your code, not svt's){hint}")
        self.where, self.summary, self.traceback, self.hint = where.rstrip(","), summary, traceback, hint


class LearnerProcess:
    """The model file imported in a child process; each method is one request on the pipe."""

    # Every child not yet closed, so that a batch's Ctrl-C can end them all (`kill_all`): a child started
    # a moment after the terminal's SIGINT reached the process group never got it, and would run on.
    # After `kill_all`, a child that a worker thread starts late is killed as soon as it is registered.
    alive: weakref.WeakSet = weakref.WeakSet()
    interrupted = threading.Event()

    def __init__(self, path: str | Path, timeout: float = 60.0, threads: int | None = None,
                 quiet: bool = False) -> None:
        """`threads`: the BLAS threads of their process (OPENBLAS/OMP/MKL_NUM_THREADS), None: as svt's;
        `quiet`: what their code prints is dropped (a batch), else it goes to svt's standard error."""
        self.path, self.name, self.timeout = str(path), Path(path).name, timeout
        refuse_unusable_path(Path(path))
        source_root = str(Path(__file__).resolve().parents[2])  # benchmark/ found even without `pip install -e`
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
        if threads is not None:
            env.update({name: str(threads) for name in THREAD_VARIABLES})
        self.process = subprocess.Popen([sys.executable, "-m", "benchmark.check.child", os.path.abspath(path)],
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL if quiet else None)
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.answers = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        LearnerProcess.alive.add(self)
        if LearnerProcess.interrupted.is_set():
            self.process.kill()
        try:
            self.declared = self._answer("loading the file")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LearnerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def kill_all(cls) -> None:
        """Kill every learner process still running, and any started from now on until `interrupted` is
        cleared (a batch interrupted: none of their rows will come)."""
        cls.interrupted.set()
        for learner in list(cls.alive):
            if learner.process.poll() is None:
                learner.process.kill()

    def _answer(self, what: str):
        """The child's answer to the request in flight, or the error it stands for."""
        if not self.answers.poll(self.timeout):
            self.close()
            raise UserError(f"{self.name}: {what} did not finish within {self.timeout:g} s (--timeout); "
                            "an endless loop, or a model too slow for one batch?")
        try:
            status, *rest = self.answers.recv()
        except (EOFError, OSError):
            code = self.close()
            raise UserError(f"{self.name}: the process running it ended ({describe_exit(code)}) during {what}"
                            ) from None
        if status == "ok":
            return rest[0]
        if status == "usage":
            raise UserError(f"{self.name}: {rest[0]}")
        raise TheirError(f"{self.name}, {what},", *rest)

    def _call(self, request: str, *arguments):
        try:
            self.requests.send((request, arguments))
        except (BrokenPipeError, OSError):
            code = self.close()
            raise UserError(f"{self.name}: the process running it ended ({describe_exit(code)})") from None
        return self._answer(f"in {request}")

    def parameters(self) -> dict[str, np.ndarray]:
        return self._call("parameters")

    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        self._call("set_parameters", values)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> dict:
        return self._call("loss_and_grads", x, y)

    def losses_at(self, x: np.ndarray, y: np.ndarray, points: list[tuple[str, int, float]]) -> list[float]:
        return self._call("losses_at", x, y, points)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if "forward" not in self.declared["has"]:
            raise UserError(f"{self.name} defines no forward(x); it must return the (N, 10) scores or probabilities")
        return self._call("forward", x)

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        self._call("step", grads, lr)

    def close(self) -> int | None:
        """End the child (asked, then killed); its exit status."""
        if self.process.poll() is None:
            try:
                self.requests.send(("close", ()))
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for connection in (self.requests, self.answers):
            connection.close()
        return self.process.returncode


MODEL_FILE = "give the path of a .py file that defines TWIN, parameters() and loss_and_grads(x, y)"


def refuse_unusable_path(path: Path) -> None:
    """One line for a path that cannot be a model file (missing, a folder, not .py), before any process."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a model file; {MODEL_FILE}")
    if not path.is_file():
        raise UserError(f"{path}: no such model file; {MODEL_FILE}")
    if path.suffix != ".py":
        raise UserError(f"{path}: not a Python file (it ends in {path.suffix or 'no suffix'!r}); {MODEL_FILE}")


def describe_exit(code: int | None) -> str:
    import signal

    if code is None or code >= 0:
        return f"exit status {code}"
    return f"killed by {signal.Signals(-code).name}"


class InMemoryModel:
    """The same methods over the caller's own functions (a notebook): no process, no timeout."""

    def __init__(self, parameters, loss_and_grads, forward=None, step=None, declared: dict | None = None,
                 name: str = "your model") -> None:
        from benchmark.check import child

        self.name, self.functions = name, {"parameters": parameters, "loss_and_grads": loss_and_grads}
        self.functions.update({name: function for name, function in (("forward", forward), ("step", step))
                               if function is not None})
        self.module = type("Model", (), {key: staticmethod(value) for key, value in self.functions.items()})
        self.child = child
        self.declared = {**(declared or {}), "has": [key for key in ("forward", "step") if key in self.functions]}
        self.declared["parameters"] = self._run("parameters", child.declaration)["parameters"]  # checked as a file's

    def _run(self, what: str, function, *arguments):
        try:
            return function(self.module, *arguments)
        except self.child.Usage as error:
            raise UserError(f"{self.name}: {error}") from None
        except Exception as error:
            raise TheirError(f"{self.name}, in {what},", f"{type(error).__name__}: {error}",
                             self.child.their_traceback(error)) from error

    def parameters(self) -> dict[str, np.ndarray]:
        return self._run("parameters", lambda module: {
            key: value.copy() for key, value in self.child.their_parameters(module).items()})

    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        self._run("set_parameters", self.child.set_parameters, values)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> dict:
        return self._run("loss_and_grads", self.child.loss_and_grads, x, y)

    def losses_at(self, x: np.ndarray, y: np.ndarray, points: list) -> list[float]:
        return self._run("loss_and_grads", self.child.losses_at, x, y, points)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if "forward" not in self.functions:
            raise UserError(f"{self.name}: no forward given; it must return the (N, 10) scores or probabilities")
        return self._run("forward", self.child.forward, x)

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        self._run("step", self.child.step, grads, lr)

    def close(self) -> None:
        pass

    def __enter__(self) -> InMemoryModel:
        return self

    def __exit__(self, *exc) -> None:
        pass
