"""What is wrong, in words, with the evidence: the findings of `svt check` (benchmark.check.engine).

Each function looks at one kind of evidence and returns sentences (or nothing when it finds
nothing). The engine calls them in the order a learner should act on them:

    x_changed            loss_and_grads changed the x it was given
    loss_words           the loss or the output differs from the twin's from the same weights: the
                         forward pass or the declaration; their own finite differences say whether
                         their gradients at least fit their own loss
    gradient_words       one gradient: the right one times a constant (x N, x 1/N, x 2, x 0.5, -1),
                         transposed (square ones too), of the wrong shape (a scalar: summed over
                         every axis), or simply wrong (its cosine with the right one)
    where_words          which layers are right and the first wrong one counting from the output
    accumulation_words   the second call's gradients are the sum of both batches'
    step_words           their step(grads, lr) moves the weights by something else than -lr * g

The factor of a gradient g against the right one t is the least-squares r = <g, t> / <t, t>;
g is "t times r" when the cosine is 1 to within rounding and g - r t is rounding noise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from benchmark.check.mapping import to_their_layout
from benchmark.check.mistakes import wrong_axis_words, wrong_input_words, zero_words
from scratch_nn.gradcheck import relative_error

# |g - r t| / scale at most this, g is r times t (float32: a learner's float32 sums round at ~1e-7
# per term, and a batch adds thousands of terms)
FACTOR_FIT = {"float64": 1e-6, "float32": 1e-3}
NAMED_FACTORS = [  # (factor as a function of the batch size N, name, what it usually means)
    (lambda n: n, "N", "summed over the batch where the loss averages: divide by N (or declare REDUCTION = \"sum\")"),
    (lambda n: 1 / n, "1/N", "divided by the batch size where the loss sums, or divided by N twice"),
    (lambda n: 2.0, "2", "a missing ½: the derivative of ½(a − y)² is (a − y); or declare SCALE = 1.0"),
    (lambda n: 0.5, "0.5", "an extra ½: the derivative of (a − y)² is 2(a − y); or declare SCALE = 0.5"),
    (lambda n: -1.0, "-1", "the wrong sign: the gradient of −loss (y − a where a − y belongs), "
                           "or an update that adds lr * g"),
]


def fit_factor(g: np.ndarray, t: np.ndarray, dtype: str) -> float | None:
    """r with g = r t to within rounding, or None (also for t = 0)."""
    g, t = np.asarray(g, np.float64).ravel(), np.asarray(t, np.float64).ravel()
    norm = float(t @ t)
    if norm == 0 or g.shape != t.shape:
        return None
    factor = float(g @ t) / norm
    if factor == 0 or relative_error(g, factor * t, floor=0.0) > FACTOR_FIT[dtype]:
        return None
    return factor


def factor_words(factor: float, batch: int) -> str:
    """'times N = 64 (summed over the batch where ...)' or 'times 3.2'."""
    for value, name, meaning in NAMED_FACTORS:
        if abs(factor / value(batch) - 1) < 1e-3:
            shown = f"times {name}" + {"N": f" = {batch}", "1/N": f" = 1/{batch}"}.get(name, "")
            return f"{shown}: {meaning}"
        if name == "N" and abs(-factor / batch - 1) < 1e-3:
            return f"times −N = {-batch}: the wrong sign, and summed over the batch where the loss averages"
    return f"times {factor:.4g}"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else float("nan")


def gradient_words(theirs: str, their_shape: tuple, grad: np.ndarray, right: np.ndarray, batch: int,
                   dtype: str) -> str:
    """Why gradient `grad` (their layout, as they returned it) is not `right` (their layout)."""
    grad = np.asarray(grad)
    if grad.shape != tuple(their_shape):
        if grad.size == 1:
            return (f"{theirs}'s gradient is a scalar (shape {grad.shape}) but {theirs} is {tuple(their_shape)}: "
                    "summed over every axis; a bias gradient sums over the batch only "
                    "(rows: d.sum(axis=0); columns: d.sum(axis=1, keepdims=True))")
        if grad.shape == tuple(their_shape)[::-1]:
            return (f"{theirs}'s gradient has shape {grad.shape}, {theirs} has {tuple(their_shape)}: transposed "
                    "(the gradient must have the parameter's own layout)")
        axis = wrong_axis_words(theirs, their_shape, grad, batch)
        if axis:
            return axis
        if grad.size == right.size and np.squeeze(grad).shape == np.squeeze(right).shape:
            grad = grad.reshape(right.shape)
        else:
            return f"{theirs}'s gradient has shape {grad.shape}, {theirs} has {tuple(their_shape)}"
    factor = fit_factor(grad, right, dtype)
    if factor is not None:
        return f"{theirs}'s gradient is the right one {factor_words(factor, batch)} (cosine {cosine(grad, right):.6f})"
    if grad.ndim == 2 and grad.shape[0] == grad.shape[1]:
        flipped = fit_factor(grad.T, right, dtype)
        if flipped is not None:
            extra = "" if abs(flipped - 1) < 1e-3 else f", and {factor_words(flipped, batch)}"
            return (f"{theirs}'s gradient is the right one transposed (a square layer: the shape cannot tell; "
                    f"x.T @ d and d.T @ x mixed up?){extra}")
    zero = zero_words(theirs, grad, right)
    if zero:
        return zero
    return (f"{theirs}'s gradient is wrong: cosine {cosine(grad, right):.4f} with the right one, norm "
            f"{np.linalg.norm(grad):.3g} where the right one has {np.linalg.norm(right):.3g}")


def where_words(layers: list[tuple[str, list[str], bool]], activations: dict[str, str]) -> str | None:
    """`layers`: the twin's weight layers from the output back, each (name, their parameter names, right?).
    The first wrong one counting from the output, and what lies between it and the right one above."""
    if all(right for _, _, right in layers) or not any(right for _, _, right in layers):
        return None
    right_names, wrong_names = [], []
    for index, (layer, names, right) in enumerate(layers):
        if right:
            right_names += names
            continue
        wrong_names = names
        above = layers[index - 1][0] if index else None
        between = activations.get(layer, "") if above else ""
        if above is None:
            return (f"{', '.join(names)} wrong at the output layer while deeper ones are right: look at the "
                    "output layer's own gradient (dL/dW = dL/dz · input) and the loss's gradient")
        return (f"{', '.join(right_names)} right; {', '.join(wrong_names)} wrong: look at the backward through "
                f"the {between or 'layer'} between them" + (" (and what feeds it)" if index > 1 else ""))
    return None


def accumulation_words(first: dict, second: dict, right_second: dict, dtype: str) -> str | None:
    """The second call's gradients equal the first call's plus the right ones of the second batch."""
    names = [name for name in right_second if np.shape(second.get(name)) == np.shape(first.get(name))
             == np.shape(right_second[name])]
    if not names:
        return None
    if all(fit_factor(np.asarray(second[n]) - np.asarray(first[n]), right_second[n], dtype) is not None
           and fit_factor(second[n], right_second[n], dtype) is None for n in names):
        return ("gradients accumulate from call to call: the second call's are the first call's plus the "
                "second batch's (they are added, +=, to arrays never reset; set them, or zero them each call)")
    return None


def step_words(theirs: str, moved: np.ndarray, right_move: np.ndarray, batch: int, dtype: str) -> str:
    """Their step moved `theirs` by `moved`, where p -= lr * g (g: the right gradient) moves it by `right_move`."""
    factor = fit_factor(moved, right_move, dtype)
    if factor is None:
        return (f"your step(grads, lr) does not move {theirs} by -lr * grad (cosine {cosine(moved, right_move):.4f}; "
                "svt checks plain SGD, p -= lr * g, and torch's SGD with momentum)")
    if abs(factor) < 1e-12:
        return f"your step(grads, lr) does not move {theirs}"
    return f"your step(grads, lr) moves {theirs} by -lr * grad {factor_words(factor, batch)}"


@dataclass
class Evidence:
    """What the engine gathered (benchmark.check.engine.check), for `findings`."""

    rows: list  # benchmark.check.mapping.Mapped
    first: dict  # their first call: {"loss", "grads", "mutated"}
    second: dict  # their second call, another batch, the same weights
    passes: list  # the twin's (recorded, exact or None) for both calls
    output: np.ndarray | None
    fd_rows: list
    steps: list[dict]
    batch: int
    dtype: str
    declaration: object
    x: np.ndarray | None = None  # the first batch
    overflow: str | None = None  # benchmark.check.mistakes.overflow_words


def findings(evidence: Evidence, judged: list) -> list[str]:
    """Every finding in words, the most useful first: the loss or declaration, gradients that
    accumulate, each wrong gradient, where the error is, the step, a changed x."""
    by_name = {row.name: row for row in judged}
    e, words = evidence, []
    words += ([e.overflow] if e.overflow else []) + loss_findings(e, by_name)
    right_second = {row.theirs: to_their_layout(row, e.passes[1][0].grads[row.twin]) for row in e.rows}
    first_ok = all(by_name[f"{row.theirs}.grad"].ok for row in e.rows)
    second_ok = all(by_name[f"2nd call/{row.theirs}.grad"].ok for row in e.rows)
    if first_ok and not second_ok:
        words.append(accumulation_words(e.first["grads"], e.second["grads"], right_second, e.dtype) or
                     "the second call's gradients are wrong though the first call's were right: something is kept "
                     "from one call to the next (a cache of an earlier batch?)")
    gradients = gradient_findings(e, by_name)
    words += gradients
    if first_ok and second_ok:  # (gradients that accumulate make every step wrong as well)
        words += step_findings(e)
    fd_broken = [row.name for row in e.fd_rows if not row.ok]
    if gradients and fd_broken and by_name["loss"].ok:
        words.append(f"finite differences of your own loss (which agrees with the twin's) disagree with your "
                     f"gradients too ({', '.join(fd_broken)}): the backward is wrong, not the declaration")
    if e.first["mutated"] or e.second["mutated"]:
        words.append("loss_and_grads changed the x it was given (in place: x -= ..., x /= ..., x[...] = ...); "
                     "a training loop would then see altered data: work on a copy")
    broken = next((row for row in judged + e.fd_rows if not row.ok), None)
    if broken is not None and not words:
        words.append(f"{broken.name} differs from the twin's: rel error {broken.rel_error:.2e}, "
                     f"cosine {broken.cosine:.4f}")
    return words


def gradient_findings(e: Evidence, by_name: dict) -> list[str]:
    """Each wrong gradient of the first call (alike ones said once), and where the error is: named
    mistakes (a factor, a transpose, a shape) first, then where, then the unnamed ones."""
    right_first = {row.theirs: to_their_layout(row, e.passes[0][0].grads[row.twin]) for row in e.rows}
    gradients = grouped([(row.theirs, wrong_input_words(row, e.rows, np.asarray(e.first["grads"][row.theirs]),
                                                        e.passes[0][0], e.x, e.declaration.model, e.dtype)
                          or gradient_words(row.theirs, row.their_shape, e.first["grads"][row.theirs],
                                            right_first[row.theirs], e.batch, e.dtype))
                         for row in e.rows if not by_name[f"{row.theirs}.grad"].ok])
    layers: dict[str, list[str]] = {}
    for row in e.rows:
        layers.setdefault(row.layer, []).append(row.theirs)
    ordered = sorted(layers.items(), key=lambda item: -int(item[0].rpartition(".")[2]))
    status = [(layer, names, [by_name[f"{name}.grad"].ok for name in names]) for layer, names in ordered]
    first_wrong = next((oks for _, _, oks in status if not all(oks)), [True])
    found = None if any(first_wrong) else where_words(  # a layer wrong in part: its gradients' findings say it
        [(layer, names, all(oks)) for layer, names, oks in status], activations_between(e.declaration.model))
    return ([words for words in gradients if not is_unnamed(words)] + ([found] if found else [])
            + [words for words in gradients if is_unnamed(words)])


def is_unnamed(words: str) -> bool:
    return "gradient is wrong: cosine" in words


def grouped(items: list[tuple[str, str]]) -> list[str]:
    """Gradients with the same finding said once: "W1, b1, W2, b2: each gradient is the right one times N ..."."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, words in items:
        rest = words.removeprefix(f"{name}'s gradient")
        key = re.sub(r" \(cosine [^)]*\)$", "", rest) if rest != words else words
        groups.setdefault(key, []).append((name, words))
    return [members[0][1] if len(members) == 1 else
            f"{', '.join(name for name, _ in members)}: each gradient{key}" for key, members in groups.items()]


def loss_findings(e: Evidence, by_name: dict) -> list[str]:
    """The loss (or output) differs from the twin's from the same weights: the forward or the
    declaration; and whether their gradients fit their own loss (the finite-difference rows)."""
    loss, output = by_name["loss"], by_name.get("output")
    if loss.ok and (output is None or output.ok):
        return []
    fd_fit = all(row.ok for row in e.fd_rows)
    if loss.ok:
        return [f"your forward(x) differs from the twin's output (rel error {output.rel_error:.2e}) though the loss "
                "agrees: forward is not the network loss_and_grads computes, or returns other numbers than "
                "scores (or probabilities)"]
    theirs, twin = float(loss.scratch), float(loss.reference)
    ratio = theirs / twin if twin else float("nan")
    hint = next((f"; yours is the twin's {label}: {advice}" for value, label, advice in (
        (e.batch, "times N", "a sum over the batch? declare REDUCTION = \"sum\""),
        (1 / e.batch, "divided by N", "a mean over the batch? declare REDUCTION = \"mean\""),
        (0.5, "times 0.5", "declare SCALE = 0.5"), (2.0, "times 2", "declare SCALE = 2 (or drop a 2)"))
        if np.isfinite(ratio) and abs(ratio / value - 1) < 1e-6), "")
    words = [f"your loss differs from the twin's from the same weights (yours {theirs:.6g}, the twin's {twin:.6g}"
             f"{hint}): your forward pass or the declaration (TWIN {e.declaration.twin!r}, LOSS, REDUCTION, SCALE) "
             "is wrong"]
    fd_count = sum(len(row.reference) for row in e.fd_rows)
    words.append(f"your gradients fit your own loss (finite differences agree at {fd_count} coordinates): your "
                 "backward is right for the loss you compute; the forward or the declaration differs" if fd_fit else
                 "your gradients do not fit your own loss either (finite differences: "
                 f"{next(row.name for row in e.fd_rows if not row.ok)}): the backward is wrong too")
    return words


def step_findings(e: Evidence) -> list[str]:
    """The first step whose parameters break while its gradients were right: what their step did."""
    for step in e.steps:
        broken = next((row for row in step["rows"] if not row.ok), None)
        if broken is None:
            continue
        theirs = broken.name.partition("/")[2]
        moved = np.asarray(step["after"][theirs], np.float64) - step["before"][theirs]
        return [step_words(theirs, moved, -step["lr"] * np.asarray(step["right"][theirs]),
                           e.batch, e.dtype)]
    return []


def activations_between(model) -> dict[str, str]:
    """Weight layer "layers.i" -> the layers between it and the next weight layer ("relu (layers.1)")."""
    layers, between = model.layers, {}
    starts = [index for index, layer in enumerate(layers) if layer.type == "linear"]
    for start, end in zip(starts, starts[1:]):
        between[f"layers.{start}"] = ", ".join(f"{layers[i].type} (layers.{i})" for i in range(start + 1, end))
    return between
