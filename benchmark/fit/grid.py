"""The report of `svt fit --vary`: every combination's fit in one grid picture, and their final losses.

    folder, rows = write_grid_report(fits, titles, out_dir, name)
        grid.png       a panel per combination, both sides drawn, the final losses in its title
        vary.csv       one row per combination (the rows returned, also printed)
        report.html, report.md, summary.json
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.core.files import folder_written_atomically
from benchmark.core.jsonio import json_ready
from benchmark.fit.training import Fit
from benchmark.report import page
from benchmark.report.plots import plt, to_png
from scratch_nn.spec.notation import layers_text


def rows_of(fits: list[Fit], titles: list[str]) -> list[dict]:
    return [{"combination": title, "layers": layers_text(fit.spec.model),
             "final loss scratch": f"{fit.final_losses['scratch']:.4g}",
             "final loss torch": f"{fit.final_losses['torch']:.4g}", "relative gap": f"{fit.loss_gap():.1e}",
             "parity": f"{sum(check['ok'] for check in fit.checks)}/{len(fit.checks)}"}
            for fit, title in zip(fits, titles)]


def panel_title(title: str, fit: Fit) -> str:
    return f"{title}\nloss scratch {fit.final_losses['scratch']:.3g}, torch {fit.final_losses['torch']:.3g}"


def write_grid_report(fits: list[Fit], titles: list[str], out_dir, name: str) -> tuple[Path, list[dict]]:
    """Write the folder `out_dir/name` atomically; returns it and the table's rows."""
    from benchmark.fit.plots import grid_picture

    rows = rows_of(fits, titles)
    columns = 2 if len(fits) in (2, 4) else 3 if len(fits) > 1 else 1
    figure = grid_picture(fits, [panel_title(title, fit) for title, fit in zip(titles, fits)], columns)
    png = to_png(figure)
    plt.close(figure)
    final = Path(out_dir) / name
    data = {"target": fits[0].points.name, "combinations": [
        {"combination": title, "layers": layers_text(fit.spec.model), "final_loss": fit.final_losses,
         "final_loss_relative_gap": fit.loss_gap(), "curve_max_abs_gap": fit.curve_gap(),
         "parity_ok": fit.parity_ok(), "training_seconds": fit.seconds} for fit, title in zip(fits, titles)]}
    sections = [("Final losses", [("table", pd.DataFrame(rows))]),
                ("The fits", [("figure", "grid.png", "One panel per combination: scratch solid, torch dashed, "
                                                     "the shaded ends outside the training interval.")])]
    with folder_written_atomically(final) as folder:
        (folder / "grid.png").write_bytes(png)
        pd.DataFrame(rows).to_csv(folder / "vary.csv", index=False)
        (folder / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        (folder / "report.html").write_text(page.to_html(name, sections, {"grid.png": png}), encoding="utf-8")
        (folder / "report.md").write_text(page.to_markdown(name, sections), encoding="utf-8")
    return final, rows
