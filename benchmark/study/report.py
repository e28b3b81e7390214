"""Write a study as its folder: the answer first (is the difference real?), then the evidence.

    statistics = write_study(final, work, context) -> final/
        study.html     self-contained page (plots as base64 PNG, inline CSS, no scripts)
        study.md       the same verdict and tables, linking the PNGs beside it
        seeds.csv      one row per seed and side: seed, side, test_accuracy, test_loss, seconds,
                       parity_verdict, parity_ok, disagreements, stopped
        epochs.csv     one row per seed, epoch and side: test_accuracy, test_loss
        summary.json   spec, seeds (finished, missing, stopped), statistics, verdicts, backend
        per_seed.png differences.png epochs.png
        seeds/seed-<k>/   each seed's summary.json and CSVs (as `svt run` writes them) and seed.json

The folder is built aside and renamed into place (`benchmark.core.files.folder_written_atomically`).
Statistics are over the seeds that finished with a test evaluation on both sides; the page and
summary.json say how many those are, and which seeds are missing or stopped and why.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from benchmark.core.files import folder_written_atomically
from benchmark.core.jsonio import json_ready
from benchmark.core.tables import counted
from benchmark.report import page as report_page
from benchmark.study import plots as study_plots
from benchmark.study import stats as study_stats
from benchmark.study.folder import copy_seeds
from scratch_nn.spec import to_dict

SIDES = ("scratch", "torch")
SEEDS_COLUMNS = ["seed", "side", "test_accuracy", "test_loss", "seconds", "parity_verdict", "parity_ok",
                 "disagreements", "stopped"]
EPOCHS_COLUMNS = ["seed", "epoch", "side", "test_accuracy", "test_loss"]


def evaluated(results: dict[int, dict]) -> list[dict]:
    """The results the statistics use, by seed: finished, with a test accuracy on both sides."""
    return [results[seed] for seed in sorted(results) if not results[seed]["stopped"]
            and all(results[seed]["sides"][side]["test_accuracy"] is not None for side in SIDES)]


def seeds_table(results: dict[int, dict]) -> pd.DataFrame:
    rows = [{"seed": seed, "side": side, "test_accuracy": result["sides"][side]["test_accuracy"],
             "test_loss": result["sides"][side]["test_loss"], "seconds": result["sides"][side]["train_seconds"],
             "parity_verdict": result["parity_verdict"], "parity_ok": result["parity_broken"] == 0,
             "disagreements": result["disagreements"], "stopped": result["stopped"]}
            for seed, result in sorted(results.items()) for side in SIDES]
    return pd.DataFrame(rows, columns=SEEDS_COLUMNS)


def epochs_table(results: dict[int, dict]) -> pd.DataFrame:
    rows = [{"seed": seed, **row} for seed, result in sorted(results.items()) for row in result["epochs"]]
    return pd.DataFrame(rows, columns=EPOCHS_COLUMNS)


def compute(context: dict) -> study_stats.StudyStatistics:
    """The statistics over the evaluated seeds (accuracies in percent)."""
    used = evaluated(context["results"])
    accuracy = {side: [100 * r["sides"][side]["test_accuracy"] for r in used] for side in SIDES}
    loss = {side: [r["sides"][side]["test_loss"] for r in used] for side in SIDES}
    return study_stats.compare(accuracy, loss, context["margin"])


def seeds_status(context: dict) -> str:
    """'10 of 10 seeds' or '8 of 10 seeds (missing: 3 ...; stopped: 5 ...)'."""
    used, seeds = evaluated(context["results"]), context["seeds"]
    parts = [f"missing {seed}: {reason}" for seed, reason in sorted(context["missing"].items())]
    parts += [f"stopped {seed}: {result['stopped']}" for seed, result in sorted(context["results"].items())
              if result["stopped"]]
    status = f"{len(used)} of {len(seeds)} seeds ({describe_seeds(seeds)})"
    return status + (f"; {'; '.join(parts)}" if parts else "")


def describe_seeds(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def parity_text(context: dict) -> str:
    """How many seeds had every gradient-parity check within tolerance (from each check's `ok`)."""
    results = list(context["results"].values())
    good = sum(1 for result in results if result["parity_broken"] == 0)
    checks = sum(result["parity_checks"] for result in results)
    if good == len(results):
        return f"all {checks} checks within tolerance, in every one of the {len(results)} seeds"
    return f"checks out of tolerance in {len(results) - good} of {len(results)} seeds (see seeds.csv)"


def spread_fact(spread: study_stats.Spread, unit: str, digits: int, interval: bool = True) -> str:
    """'98.41% ± 0.06 (95% CI 98.37 to 98.45)'; without the interval when `interval` is False."""
    if spread.n < 2:
        return "-" if spread.n == 0 else f"{spread.mean:.{digits}f}{unit} (one seed)"
    text = f"{spread.mean:+.{digits}f}" if unit == " pp" else f"{spread.mean:.{digits}f}"
    text += f"{unit} ± {spread.std:.{digits}f}"
    return text + (f" (95% CI {spread.low:.{digits}f} to {spread.high:.{digits}f})" if interval else "")


def verdict_blocks(context: dict, statistics: study_stats.StudyStatistics) -> list[tuple]:
    """The answer: both sides' accuracy over the seeds, the paired difference, equivalence, spread.
    Short values (the intervals go in the labels) so that the whole verdict fits one screen."""
    used = evaluated(context["results"])
    blocks = [("alert", f"Not every seed counts: {seeds_status(context)}")] if (
        len(used) < len(context["seeds"])) else []

    def label(text: str, spread: study_stats.Spread, unit: str) -> str:
        return f"{text} · 95% CI {spread.low:.2f} to {spread.high:.2f}{unit}" if spread.n >= 2 else text

    difference = statistics.accuracy_difference
    facts = [(label(f"{side} test accuracy, mean ± sd", statistics.accuracy[side], "%"),
              spread_fact(statistics.accuracy[side], "%", 2, interval=False)) for side in SIDES]
    facts += [(label("scratch - torch, paired per seed", difference, " pp"),
               spread_fact(difference, " pp", 3, interval=False)),
              (f"equivalence: two one-sided t-tests, margin ±{context['margin']:g} pp",
               study_stats.equivalence_text(statistics.equivalence)),
              ("is the difference real? (mean paired difference)", study_stats.difference_text(statistics)),
              ("seed-to-seed: mean |scratch - torch| vs mean |seed i - seed j| of one side",
               study_stats.spread_text(statistics)),
              ("gradient parity", parity_short(context)),
              ("seeds in the statistics", f"{len(used)} of {len(context['seeds'])}")]
    return blocks + [("facts", facts)]


def parity_short(context: dict) -> str:
    results = list(context["results"].values())
    good = sum(1 for result in results if result["parity_broken"] == 0)
    return f"ok in {good} of {len(results)} seeds"


def per_seed_table(context: dict) -> pd.DataFrame:
    rows = []
    for seed, result in sorted(context["results"].items()):
        accuracy = {side: result["sides"][side]["test_accuracy"] for side in SIDES}
        both = None not in accuracy.values()
        rows.append({"seed": seed, **{f"{side} accuracy": f"{100 * accuracy[side]:.2f}%" if both else "-"
                                      for side in SIDES},
                     "difference": f"{100 * (accuracy['scratch'] - accuracy['torch']):+.2f} pp" if both else "-",
                     **{f"{side} loss": report_page.fmt(result["sides"][side]["test_loss"]) for side in SIDES},
                     "parity": "ok" if result["parity_broken"] == 0 else f"{result['parity_broken']} off",
                     "disagreements": report_page.fmt(result["disagreements"]),
                     "seconds": f"{result['seconds']:.1f}", "worker": result["worker"]["host"],
                     "note": result["stopped"] or ""})
    return pd.DataFrame(rows)


def statistics_table(statistics: study_stats.StudyStatistics) -> pd.DataFrame:
    rows = []
    for label, spreads in (("test accuracy (%)", statistics.accuracy), ("test loss", statistics.loss)):
        for side in SIDES:
            rows.append((label, side, spreads[side]))
    rows += [("test accuracy (pp)", "scratch - torch", statistics.accuracy_difference),
             ("test loss", "scratch - torch", statistics.loss_difference)]
    return pd.DataFrame([{"measure": label, "of": of, "seeds": spread.n, "mean": f"{spread.mean:.4f}",
                          "sd": f"{spread.std:.4f}", "95% CI": f"{spread.low:.4f} to {spread.high:.4f}"}
                         for label, of, spread in rows])


def sections(context: dict, statistics, pngs: dict) -> list[tuple[str, list]]:
    figure = report_page.figure
    how = {"backend": context["backend"], "threads per seed": context["threads"],
           "data": f"{context['train_limit'] or 60000} training, {context['test_limit'] or 10000} test images",
           "seconds in all": f"{context['seconds_total']:.1f}"}
    return [
        ("Verdict", verdict_blocks(context, statistics)),
        ("Seeds", [("table", per_seed_table(context)),
                   figure(pngs, "per_seed.png", "Each seed's test accuracy on both sides, joined by a line. "
                          "Lines sloping one way in every seed mean a real difference; crossing lines, noise.",
                          "No seed with both accuracies.")]),
        ("Differences", [figure(pngs, "differences.png", "Paired differences scratch - torch, one dot per seed, "
                                "with their mean, its 95% confidence interval and the equivalence margin.",
                                "No paired differences."),
                         ("table", statistics_table(statistics)),
                         ("note", "Equivalence: two one-sided t-tests (TOST) of the mean paired difference "
                                  "against ±margin, at 0.05. Intervals: t distribution, seeds - 1 degrees of "
                                  "freedom (SciPy).")]),
        ("Training", [figure(pngs, "epochs.png", "Test accuracy per epoch over the seeds: mean, ±1 standard "
                             "deviation and range per side.", "No epochs recorded.")]),
        ("Spec", report_page.spec_blocks(context["spec"])),
        ("How it ran", [("table", report_page.key_value_table({key: [value] for key, value in how.items()},
                                                              ["setting", "value"]))]),
    ]


def summary(context: dict, statistics) -> dict:
    results = context["results"]
    return {"spec": to_dict(context["spec"]), "seeds": context["seeds"],
            "seeds_used": [result["seed"] for result in evaluated(results)],
            "missing": {str(seed): reason for seed, reason in sorted(context["missing"].items())},
            "stopped": {str(seed): result["stopped"] for seed, result in sorted(results.items()) if result["stopped"]},
            "margin_pp": context["margin"], "statistics": asdict(statistics),
            "verdict": {"equivalence": study_stats.equivalence_text(statistics.equivalence),
                        "equivalent": statistics.equivalence.equivalent,
                        "difference": study_stats.difference_text(statistics),
                        "spread": study_stats.spread_text(statistics), "parity": parity_text(context),
                        "seeds": seeds_status(context)},
            "backend": {"name": context["backend_name"], "address": context["address"], "jobs": context["jobs"],
                        "threads": context["threads"], "described": context["backend"],
                        "workers": sorted({result["worker"]["host"] for result in results.values()})},
            "data": {"train_limit": context["train_limit"], "test_limit": context["test_limit"]},
            "seconds_total": context["seconds_total"]}


def render(statistics, frames: dict[str, pd.DataFrame], margin: float) -> dict[str, bytes]:
    """Draw every figure; {file name: PNG bytes} of those drawn."""
    from benchmark.report.plots import to_png

    used = frames["seeds"].dropna(subset=["test_accuracy"])
    wide = 100 * used.pivot(index="seed", columns="side", values="test_accuracy").reindex(columns=list(SIDES))
    wide = wide.dropna().reset_index()  # columns seed, scratch, torch (percent)
    epochs = frames["epochs"].assign(test_accuracy=frames["epochs"]["test_accuracy"] * 100)
    drawings = {"per_seed.png": lambda: study_plots.per_seed(wide),
                "differences.png": lambda: study_plots.differences(
                    (wide["scratch"] - wide["torch"]).to_numpy(), statistics.accuracy_difference, margin),
                "epochs.png": lambda: study_plots.epoch_bands(epochs)}
    pngs = {}
    for file_name, draw in drawings.items():
        figure = draw()
        if figure is not None:
            pngs[file_name] = to_png(figure)
            study_plots.plt.close(figure)
    return pngs


def write_study(final: Path, work: Path, context: dict) -> study_stats.StudyStatistics:
    """Build the study folder `final` aside from the finished seeds in `work`, then rename it into place."""
    statistics = compute(context)
    frames = {"seeds": seeds_table(context["results"]), "epochs": epochs_table(context["results"])}
    with folder_written_atomically(final) as folder:
        copy_seeds(work, folder, sorted(context["results"]))
        for stem, frame in frames.items():
            frame.to_csv(folder / f"{stem}.csv", index=False)
        pngs = render(statistics, frames, context["margin"])
        for file_name, png in pngs.items():
            (folder / file_name).write_bytes(png)
        context["seconds_total"] = time.perf_counter() - context["started"]
        data = summary(context, statistics)
        (folder / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        page = sections(context, statistics, pngs)
        title = f"study {final.name}"
        (folder / "study.html").write_text(report_page.to_html(title, page, pngs), encoding="utf-8")
        (folder / "study.md").write_text(report_page.to_markdown(title, page), encoding="utf-8")
    return statistics


def terminal_report(context: dict, statistics) -> str:
    """The table and the verdict, for the terminal (and the README)."""
    rows = [f"{'side':<8} {'test accuracy, mean ± sd (95% CI)':<44} test loss, mean ± sd (95% CI)"]
    for side in SIDES:
        rows.append(f"{side:<8} {spread_fact(statistics.accuracy[side], '%', 2):<44} "
                    f"{spread_fact(statistics.loss[side], '', 4)}")
    spec = context["spec"]
    lines = [f"study: {spec.name}, {spec.model.dtype}, {counted(spec.train.epochs, 'epoch')}, {seeds_status(context)}",
             *rows,
             f"scratch - torch, paired: {spread_fact(statistics.accuracy_difference, ' pp', 3)}",
             f"  {study_stats.difference_text(statistics)}",
             f"  {study_stats.equivalence_text(statistics.equivalence)}",
             f"  {study_stats.spread_text(statistics)}",
             f"gradient parity: {parity_text(context)}"]
    return "\n".join(lines)
