"""A fit's report folder, like `svt run`'s: the answer first, then the evidence.

    write_fit_report(fit, out_dir, name) -> out_dir/<name>/
        report.html, report.md   the page (`benchmark.report.page` renders the blocks)
        fit.png, loss.png        the fit over a wider range, the loss per step of both sides
        losses.csv               step, scratch, torch
        curve.csv                x, target, scratch, torch (the picture's grid)
        checks.csv               step, ok, verdict (the parity engine at each check)
        summary.json             spec, final losses, agreement, breakpoints, least squares, timing

Written under a temporary name and renamed into place at the end (`core.files`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.files import folder_written_atomically
from benchmark.core.jsonio import json_ready
from benchmark.fit.training import Fit
from benchmark.report import page
from benchmark.report.plots import plt, to_png
from scratch_nn.spec import settings_in_use, to_dict


def summary(fit: Fit) -> dict:
    """The numbers of the fit, for summary.json and the page."""
    data = {
        "spec": to_dict(fit.spec), "target": fit.points.name, "formula": fit.points.formula,
        "points": len(fit.points), "interval": [fit.points.low, fit.points.high], "steps": fit.steps,
        "final_loss": dict(fit.final_losses), "final_loss_relative_gap": fit.loss_gap(),
        "curve_max_abs_gap": fit.curve_gap(), "parity_checks": len(fit.checks),
        "parity_ok": fit.parity_ok(), "training_seconds": fit.seconds, "neurons": fit.neurons(),
    }
    breakpoints = fit.breakpoints()
    if breakpoints is not None:
        data["breakpoints"] = {"all": len(breakpoints), "inside": fit.breakpoints_inside(),
                               "x": breakpoints.tolist()}
    if fit.one_linear_neuron():
        slope, intercept = fit.least_squares()
        data["least_squares"] = {"slope": slope, "intercept": intercept,
                                 **{side: {"weight": float(fit.weights[side]["layers.0.weight"][0, 0]),
                                           "bias": float(fit.weights[side]["layers.0.bias"][0])}
                                    for side in ("scratch", "torch")}}
    return data


def tables(fit: Fit) -> dict[str, pd.DataFrame]:
    target = fit.points.target(fit.grid) if fit.points.target is not None else np.full(len(fit.grid), np.nan)
    return {
        "losses": pd.DataFrame({"step": range(fit.steps), **fit.losses}),
        "curve": pd.DataFrame({"x": fit.grid, "target": target, **fit.curves}),
        "checks": pd.DataFrame(fit.checks, columns=["step", "ok", "verdict"]),
    }


def facts(fit: Fit, data: dict) -> list[tuple[str, str]]:
    """The headline: final losses, how closely the two sides agree, the parity verdicts."""
    rows = [("final loss, scratch", f"{fit.final_losses['scratch']:.6g}"),
            ("final loss, torch", f"{fit.final_losses['torch']:.6g}"),
            ("final losses differ by (relative)", f"{fit.loss_gap():.2e}"),
            ("curves differ by at most", f"{fit.curve_gap():.2e}"),
            ("gradient parity", f"{sum(check['ok'] for check in fit.checks)} of {len(fit.checks)} checks pass"),
            ("steps, points", f"{fit.steps} steps on {len(fit.points)} points, {fit.seconds:.2f} s")]
    if "breakpoints" in data:
        rows.append(("ReLU breakpoints", f"{data['breakpoints']['inside']} inside the interval "
                                         f"({data['breakpoints']['all']} in all) for {fit.neurons()} neurons"))
    if "least_squares" in data:
        squares = data["least_squares"]
        rows += [("least squares: slope, intercept", f"{squares['slope']:.6g}, {squares['intercept']:.6g}")]
        rows += [(f"{side}: weight, bias", f"{squares[side]['weight']:.6g}, {squares[side]['bias']:.6g}")
                 for side in ("scratch", "torch")]
    return rows


def sections(fit: Fit, data: dict, frames: dict[str, pd.DataFrame]) -> list[tuple[str, list]]:
    settings = pd.DataFrame([{"setting": key, "value": page.fmt(value)}
                             for key, value in settings_in_use(fit.spec).items()])
    verdicts = frames["checks"].assign(ok=frames["checks"]["ok"].map({True: "yes", False: "NO"}))
    return [
        ("Verdict", [("facts", facts(fit, data))]),
        ("The fit", [("figure", "fit.png", "The target (grey), the training points, both sides' curves; the shaded "
                                           "ends lie outside the training interval (extrapolation).")]),
        ("Loss", [("figure", "loss.png", "Training loss per step, both sides.")]),
        ("Gradient parity", [("p", "The parity engine compares one forward and backward of the scratch model's "
                                   "weights with its torch twin at each check (as `svt run` and `svt parity`)."),
                             ("table", verdicts.astype(str))]),
        ("Spec", [("p", f"{fit.spec.name}: {fit.spec.description}" if fit.spec.description else fit.spec.name),
                  ("table", settings)]),
    ]


def write_fit_report(fit: Fit, out_dir: Path, name: str) -> Path:
    """Write the report folder `out_dir/name` atomically and return its path."""
    from benchmark.fit.plots import fit_picture, loss_picture

    frames, data = tables(fit), summary(fit)
    final = Path(out_dir) / name
    with folder_written_atomically(final) as folder:
        for stem, frame in frames.items():
            frame.to_csv(folder / f"{stem}.csv", index=False)
        pngs = {}
        for file_name, draw in (("fit.png", fit_picture), ("loss.png", loss_picture)):
            figure = draw(fit)
            pngs[file_name] = to_png(figure)
            plt.close(figure)
            (folder / file_name).write_bytes(pngs[file_name])
        (folder / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        blocks = sections(fit, data, frames)
        (folder / "report.html").write_text(page.to_html(fit.spec.name, blocks, pngs), encoding="utf-8")
        (folder / "report.md").write_text(page.to_markdown(fit.spec.name, blocks), encoding="utf-8")
    return final
