"""`svt fit --tour`: the path from one neuron to a deep net, a panel per step, each caption checked.

Every step is one fit of both sides (float64, full batch, SGD, 2000 steps, seed 0). Its caption makes
one claim about the figures the tour just computed, with the numbers; `claims(fits)` evaluates every
claim, and a claim that does not hold is marked on the page, printed, and makes the exit status 1.
The tests run the same functions on the same fits.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.files import folder_written_atomically
from benchmark.core.jsonio import json_ready
from benchmark.data.functions import load_points
from benchmark.fit.training import Fit, fit_both
from benchmark.fit.variants import default_fit_spec, hidden_layers
from benchmark.report import page
from benchmark.report.plots import plt, to_png
from scratch_nn.spec import Spec, validate

ROUNDING = 1e-9  # "a line to rounding": second differences below this fraction of the curve's size


@dataclass(frozen=True)
class Step:
    """One panel: a fit (target, hidden layers as (width, depth, activation), training changes) and
    the claim its caption makes, a function of all the tour's fits -> (holds, caption)."""

    key: str
    title: str
    target: str
    shape: tuple[int, int, str]
    train: dict
    claim: Callable[[dict[str, Fit]], tuple[bool, str]]
    init: str = "kaiming_uniform"


def loss(fit: Fit) -> float:
    return fit.final_losses["scratch"]


def second_differences(fit: Fit) -> np.ndarray:
    return np.abs(np.diff(fit.curves["scratch"], 2))


def line_claim(fits):
    fit = fits["neuron"]
    slope, intercept = fit.least_squares()
    weight, bias = (float(fit.weights["scratch"][name].ravel()[0]) for name in ("layers.0.weight", "layers.0.bias"))
    holds = abs(weight - slope) <= 1e-6 and abs(bias - intercept) <= 1e-6
    return holds, f"w = {weight:.6g}, b = {bias:.6g}: the least-squares slope {slope:.6g} and intercept {intercept:.6g}"


def still_line_claim(fits):
    fit = fits["linear5"]
    worst = float(second_differences(fit).max())
    holds = worst <= ROUNDING * max(1.0, float(np.abs(fit.curves["scratch"]).max()))
    return holds, f"still a line: its second differences are at most {worst:.1e} (rounding)"


def relu_claim(fits):
    fit = fits["relu5"]
    breakpoints, step = fit.breakpoints(), fit.grid[1] - fit.grid[0]
    bends = fit.grid[1:-1][second_differences(fit) > ROUNDING * max(1.0, float(np.abs(fit.curves["scratch"]).max()))]
    near = all(np.min(np.abs(breakpoints - bend)) <= 1.01 * step for bend in bends)
    holds = len(breakpoints) <= fit.neurons() and near
    return holds, (f"{len(breakpoints)} breakpoints -b/w for {fit.neurons()} neurons; the curve bends only there "
                   f"({fit.breakpoints_inside()} inside the data)")


def ratio_claim(key: str, other: str, words: str, factor: float = 1.0) -> Callable:
    """The fit `key` reaches a loss below the fit `other`'s / factor."""
    def claim(fits):
        mine, theirs = loss(fits[key]), loss(fits[other])
        return mine * factor < theirs, f"{words}: loss {mine:.2g} vs {theirs:.2g}"
    return claim


def wasted_claim(fits):
    fit = fits["plateau_relu"]
    inside = fit.breakpoints_inside()
    return inside < fit.neurons(), (f"only {inside} of {fit.neurons()} breakpoints inside the data; "
                                    f"loss {loss(fit):.2g}, {loss(fit) / loss(fits['plateau_tanh']):.0f}x tanh's")


def extrapolation_claim(fits):
    fit = fits["extrapolate"]
    error = np.abs(fit.curves["scratch"] - fit.points.target(fit.grid))
    inside, outside = float(error[fit.inside()].max()), float(error[~fit.inside()].max())
    return outside >= 10 * inside, f"largest error outside the data {outside:.2g}, inside {inside:.2g}"


def width_claim(fits):
    wide, narrow = loss(fits["wide"]), loss(fits["momentum"])
    return wide >= narrow / 2, f"50 units reach {wide:.2g}, 20 reached {narrow:.2g}: no better"


def slow_claim(fits):
    slow, good = loss(fits["lr_small"]), loss(fits["extrapolate"])
    return slow >= 10 * good, f"lr 0.001 ends at loss {slow:.2g}, {slow / good:.0f}x lr 0.05's {good:.2g}"


def rising(fit: Fit) -> float:
    """The fraction of steps whose loss rose."""
    return float(np.mean(np.diff(fit.losses["scratch"]) > 0))


def jumping_claim(fits):
    large, good = fits["lr_large"], fits["extrapolate"]
    holds = rising(large) >= 10 * max(rising(good), 1e-3) and loss(large) > loss(good)
    return holds, (f"the loss rises at {rising(large):.0%} of steps (lr 0.05: {rising(good):.0%}); "
                   f"ends at {loss(large):.2g}")


SIN_TANH = {"lr": 0.05, "momentum": 0.9}
STEPS = (
    Step("neuron", "1. one neuron, no activation, fits a line", "line", (1, 0, "none"), {"lr": 0.05}, line_claim),
    Step("linear5", "2. five linear neurons: still a line", "parabola", (5, 1, "none"), {"lr": 0.05},
         still_line_claim),
    Step("relu5", "3. ReLU: one bend per neuron at most", "sin", (5, 1, "relu"), {"lr": 0.01}, relu_claim),
    Step("relu20", "4. more neurons fit better", "sin", (20, 1, "relu"), {"lr": 0.01},
         ratio_claim("relu20", "relu5", "20 ReLU units vs 5")),
    Step("momentum", "5. momentum 0.9 smooths the way down", "sin", (20, 1, "relu"), {"lr": 0.01, "momentum": 0.9},
         ratio_claim("momentum", "relu20", "with momentum vs without")),
    Step("plateau_relu", "6. a plateau and a sharp bend defeat ReLU", "plateau", (5, 1, "relu"), SIN_TANH,
         wasted_claim),
    Step("plateau_tanh", "7. tanh bends where ReLU cannot", "plateau", (5, 1, "tanh"), SIN_TANH,
         ratio_claim("plateau_tanh", "plateau_relu", "5 tanh vs 5 ReLU units", 10.0)),
    Step("glorot", "8. Glorot-normal init improves tanh", "plateau", (5, 1, "tanh"), SIN_TANH,
         ratio_claim("glorot", "plateau_tanh", "xavier_normal vs kaiming_uniform"), "xavier_normal"),
    Step("he", "9. He-normal init improves it more", "plateau", (5, 1, "tanh"), SIN_TANH,
         ratio_claim("he", "glorot", "kaiming_normal vs xavier_normal"), "kaiming_normal"),
    Step("extrapolate", "10. no network extrapolates", "sin", (20, 1, "tanh"), SIN_TANH, extrapolation_claim),
    Step("deeper", "11. a second hidden layer helps", "plateau", (5, 2, "tanh"), SIN_TANH,
         ratio_claim("deeper", "plateau_tanh", "two layers of 5 tanh vs one", 5.0)),
    Step("wide", "12. past some width, more neurons add nothing", "sin", (50, 1, "relu"),
         {"lr": 0.01, "momentum": 0.9}, width_claim),
    Step("lr_small", "13. lr too small never gets there", "sin", (20, 1, "tanh"), {"lr": 0.001, "momentum": 0.9},
         slow_claim),
    Step("lr_large", "14. lr too large jumps around", "sin", (20, 1, "tanh"), {"lr": 0.1, "momentum": 0.9},
         jumping_claim),
)


def step_spec(step: Step) -> Spec:
    spec = default_fit_spec(step.target)
    model = replace(spec.model, layers=hidden_layers(*step.shape), init=step.init, dtype="float64")
    train = replace(spec.train, **{"momentum": 0.0, **step.train})
    return validate(replace(spec, name=f"tour-{step.key}", model=model, train=train), f"tour step {step.key}")


def tour_fits(checks: int = 2) -> dict[str, Fit]:
    """Every step's fit, by key."""
    fits = {}
    for step in STEPS:
        spec = step_spec(step)
        fits[step.key] = fit_both(spec, load_points(spec.data, spec.model.dtype), checks)
    return fits


def claims(fits: dict[str, Fit]) -> list[tuple[bool, str]]:
    """(holds, caption) of every step, in order."""
    return [step.claim(fits) for step in STEPS]


def tour_rows(fits: dict[str, Fit], verdicts: list[tuple[bool, str]]) -> list[dict]:
    from benchmark.fit.plots import network_words

    return [{"step": step.title, "network": network_words(fits[step.key]), "target": step.target,
             "loss scratch": f"{loss(fits[step.key]):.3g}", "loss torch": f"{fits[step.key].final_losses['torch']:.3g}",
             "gap": f"{fits[step.key].loss_gap():.0e}", "parity": "ok" if fits[step.key].parity_ok() else "BREAK",
             "claim": caption, "holds": "yes" if holds else "NO"}
            for step, (holds, caption) in zip(STEPS, verdicts)]


def run_tour(out_dir: str, name: str, checks: int, start: float) -> int:
    """Compute the fits, check the claims, write the page; exit 1 if a claim or a parity check fails."""
    from benchmark.core.tables import format_table

    print(f"tour: {len(STEPS)} steps, each both sides in float64, full batch, 2000 SGD steps", flush=True)
    fits = tour_fits(checks)
    rows = write_tour(fits, Path(out_dir) / name)
    print(format_table(rows, ["step", "network", "loss scratch", "loss torch", "holds", "claim"]))
    failed = [row["step"] for row in rows if row["holds"] != "yes" or row["parity"] != "ok"]
    print(f"claims: {len(rows) - len(failed)} of {len(rows)} hold, parity at every check"
          + (f"; failing: {', '.join(failed)}" if failed else ""))
    print(f"wrote {Path(out_dir) / name}/ (report.html, report.md, tour.png, tour.csv, summary.json)")
    print(f"took {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


def write_tour(fits: dict[str, Fit], final: Path) -> list[dict]:
    """Check the claims, draw the panels, write the folder `final` atomically; returns the table's rows."""
    from benchmark.fit.plots import grid_picture, network_words

    verdicts = claims(fits)
    rows = tour_rows(fits, verdicts)
    titles = [f"{step.title}\n{network_words(fits[step.key])} on {step.target}" for step in STEPS]
    captions = [("" if holds else "CLAIM FAILS: ") + caption for holds, caption in verdicts]
    figure = grid_picture([fits[step.key] for step in STEPS], titles, 4, captions)
    png = to_png(figure, dpi=72)
    plt.close(figure)
    sections = [("The tour", [("figure", "tour.png", "A panel per step: scratch solid, torch dashed; the shaded ends "
                                                     "lie outside the training data.")]),
                ("Claims", [("table", pd.DataFrame(rows))])]
    with folder_written_atomically(final) as folder:
        (folder / "tour.png").write_bytes(png)
        pd.DataFrame(rows).to_csv(folder / "tour.csv", index=False)
        data = {"steps": [{**row, "final_loss": fits[step.key].final_losses, "curve_max_abs_gap":
                           fits[step.key].curve_gap()} for step, row in zip(STEPS, rows)]}
        (folder / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        (folder / "report.html").write_text(page.to_html(final.name, sections, {"tour.png": png}), encoding="utf-8")
        (folder / "report.md").write_text(page.to_markdown(final.name, sections), encoding="utf-8")
    return rows
