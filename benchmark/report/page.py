"""The report's page: what it says, in which order, rendered once as HTML and once as Markdown.

`sections` decides the content (the verdict first, then the spec, the curves, the test set, the
gradients, time and memory, the environment) as a list of (title, blocks). A block is one of

    ("alert", text)              something the reader must not miss (training stopped early)
    ("facts", [(label, value)])  the headline numbers
    ("p", text)                  a paragraph; ("note", text) a muted one
    ("table", DataFrame)         cells already formatted as text
    ("figure", file, caption)    a PNG written by `benchmark.report.writer`

`to_html` and `to_markdown` only render these blocks, so the two files cannot disagree. All text
from the record (names, reasons, versions) is escaped in the HTML.
"""
from __future__ import annotations

import base64
import html
import json
from string import Template

import pandas as pd

from benchmark.report.layer_table import COLUMNS, layer_rows
from benchmark.report.record import RunRecord
from scratch_nn.spec import Spec, settings_in_use
from scratch_nn.spec.notation import format_layers, layers_text

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1060px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav { color: #555; font-size: 0.9em; } nav a { color: #1f5fa8; margin-right: 0.8em; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 0.8em; margin: 0; }
.facts div { background: #f3f6fa; border-radius: 6px; padding: 0.6em 0.9em; }
.facts div.wide { grid-column: 1 / -1; }
.facts dt { font-size: 0.85em; color: #555; }
.facts dd { margin: 0; font-size: 1.3em; font-weight: 600; }
.alert { background: #fdecea; border-left: 6px solid #c62828; padding: 0.8em 1em; font-size: 1.1em; font-weight: 600; }
.note { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f3f6fa; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>$title</h1>
<nav>$nav</nav>
$body
</body>
</html>
""")


def fmt(value) -> str:
    """A table cell as text: '-' for missing, 4 significant digits for floats, ints as they are."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def percent(fraction) -> str:
    return "not evaluated" if fraction is None else f"{fraction:.2%}"


def figure(pngs: dict, file_name: str, caption: str, missing: str) -> tuple:
    """The figure if it was drawn, else a note saying why not."""
    return ("figure", file_name, caption) if file_name in pngs else ("note", missing)


def verdict(record: RunRecord, data: dict) -> list[tuple]:
    """The answer first: each side's test accuracy, their difference, gradient parity, agreement."""
    blocks = [("alert", f"Training stopped early: {record.stopped}")] if record.stopped else []
    sides, count = data["sides"], data["test_images"]
    facts = [(f"{side} test accuracy", percent(sides[side]["test_accuracy"])) for side in record.sides]
    difference = data["accuracy_difference_pp"]
    facts.append((f"difference ({' - '.join(record.sides)})", "-" if difference is None else f"{difference:+.2f} pp"))
    facts.append(("gradient parity", record.parity_verdict or "no parity check recorded"))
    if data["disagreements"] is not None:
        disagree = data["disagreements"]
        facts.append(("disagreements (test images)", f"none: the two models agree on all {count} test images"
                      if disagree == 0 else f"{disagree} of {count} ({disagree / count:.2%})"))
    facts.append(("total time", f"{record.seconds_total:.1f} s"))
    blocks.append(("facts", facts))
    if record.targets:
        blocks.append(("table", pd.DataFrame([{"target": row["target"], "measured": row["measured"],
                                               "holds": "yes" if row["holds"] else "NO"} for row in record.targets])))
    missing = [side for side in record.sides if sides[side]["test_accuracy"] is None]
    if missing:
        blocks.append(("p", f"No final test evaluation of {' and '.join(missing)}: without test predictions there "
                            "are no confusion matrices, per-class metrics, disagreements or gallery for it. "
                            "The curves below show what was recorded."))
    return blocks


def layers_table(spec: Spec) -> pd.DataFrame:
    """One row per entry of the spec's layer list (`benchmark.report.layer_table`): the names are the
    parameter prefixes of the gradient plots."""
    return pd.DataFrame(layer_rows(spec), columns=COLUMNS)


def spec_blocks(spec: Spec) -> list[tuple]:
    """The spec: its description, the layers, and the model and training settings it uses."""
    pairs = [(key, fmt(value)) for key, value in settings_in_use(spec).items()]
    rows = -(-len(pairs) // 3)  # three setting/value column pairs, filled column by column
    pairs += [("", "")] * (3 * rows - len(pairs))
    table = pd.DataFrame([sum((pairs[row + rows * column] for column in range(3)), ()) for row in range(rows)],
                         columns=["setting", "value"] * 3)
    blocks = [("p", f"Spec {spec.name!r}: {spec.description}" if spec.description else f"Spec {spec.name!r}."),
              ("p", f"Layers, as --layers takes them: {format_layers(spec.model)}" if format_layers(spec.model)
               else f"Layers: {layers_text(spec.model)}")]
    return blocks + [("table", layers_table(spec)), ("table", table)]


def classes_table(classes: pd.DataFrame) -> pd.DataFrame:
    """Per-class precision, recall and F1, the sides next to each other."""
    wide = classes.pivot(index="class", columns="side", values=["precision", "recall", "f1"]).sort_index()
    support = classes.groupby("class")["support"].first().sort_index()
    table = pd.DataFrame({"class": support.index, "support": support.to_numpy()})
    for side in classes["side"].unique():
        for metric in ("precision", "recall", "f1"):
            table[f"{side} {metric}"] = [f"{value:.3f}" for value in wide[(metric, side)]]
    return table


def key_value_table(values: dict, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([(key, *(fmt(value) for value in row)) for key, row in values.items()], columns=columns)


def timing_table(timing: dict[str, dict], sides: tuple[str, str]) -> pd.DataFrame:
    """One row per measure recorded in `record.timing`, one column per side."""
    keys = list(dict.fromkeys(key for side in sides for key in timing.get(side, {})))
    return key_value_table({key: [timing.get(side, {}).get(key) for side in sides] for key in keys},
                           ["measure", *sides])


def parity_table(parity: pd.DataFrame) -> pd.DataFrame:
    """One row per parity check: its tensors, the worst one relative to its tolerance (the first
    break, if any), each side's distance from the float64 reference (float32) and the verdict."""
    rows = []
    for step, check in parity.groupby("step", sort=True):
        judged = check["scratch_vs_f64"].where(check["scratch_vs_f64"].notna(), check["rel_error"])
        broken = check[~check["ok"].astype(bool)]
        row = broken.iloc[0] if len(broken) else check.loc[(judged / check["tolerance"]).idxmax()]
        explained = int((check["explained"].fillna("").astype(str) != "").sum())
        rows.append({"step": step, "tensors": len(check), "worst tensor (or first break)": row["tensor"],
                     "scratch vs torch": f"{row['rel_error']:.1e}", "scratch vs f64": fmt_error(row["scratch_vs_f64"]),
                     "torch vs f64": fmt_error(row["torch_vs_f64"]), "tolerance": f"{row['tolerance']:.1e}",
                     "kink crossings": explained or "-", "ok": "yes" if not len(broken) else "BREAK"})
    return pd.DataFrame(rows)


def fmt_error(value) -> str:
    return "-" if pd.isna(value) else f"{value:.1e}"


def evaluation_blocks(record: RunRecord, frames: dict, data: dict, pngs: dict) -> list[tuple]:
    """Confusion matrices, per-class metrics, and the gallery of disagreements and mistakes."""
    blocks = [figure(pngs, "confusion.png", "Confusion matrices (row = true label, column = prediction, log "
                     f"colour) and their difference {' - '.join(record.sides)}.",
                     "No test predictions: no confusion matrix.")]
    if not frames["classes"].empty:
        blocks.append(("table", classes_table(frames["classes"])))
    if data["disagreements"] == 0:
        blocks.append(("p", f"The two models agree on all {data['test_images']} test images."))
    elif data["disagreements"]:
        blocks.append(("p", f"The two models disagree on {data['disagreements']} test images "
                            "(all listed in disagreements.csv); the gallery shows the first ones."))
    blocks.append(figure(pngs, "gallery.png", "Test images with the true label and each side's prediction "
                         "(confidence).", "No gallery: no test images or predictions were recorded."))
    return blocks


def sections(record: RunRecord, frames: dict, data: dict, pngs: dict) -> list[tuple[str, list]]:
    """The whole page as (title, blocks), in reading order."""
    timing = timing_table(record.timing, record.sides)
    environment = key_value_table({key: [value] for key, value in record.environment.items()}, ["setting", "value"])
    return [
        ("Verdict", verdict(record, data)),
        ("Spec", spec_blocks(record.spec)),
        ("Training curves", [
            figure(pngs, "loss_steps.png", "Training loss of every step: raw (faint) and smoothed. Lines on "
                   "top of each other mean the two implementations train alike.", "No training steps recorded."),
            figure(pngs, "epochs.png", "Loss and accuracy per epoch, train (solid) and test (dashed).",
                   "No completed epoch recorded.")]),
        ("Test set", evaluation_blocks(record, frames, data, pngs)),
        ("Gradients and parity", [
            figure(pngs, "grad_norms.png", "Gradient norm of each weight (log scale): a layer far below the "
                   "others has vanishing gradients, a climbing line exploding ones.", "No gradient norms recorded."),
            figure(pngs, "parity_drift.png", "Left: at each check, the worst tensor's distance from the float64 "
                   "reference for each side (float32; scratch vs torch in float64). Right: how far the "
                   "weights have drifted apart.", "No parity checks recorded."),
            ("p", "Each parity check, from the same weights on both sides. In float32 what is judged is each "
                  "side's distance from a float64 reference computed from the same float32 weights, inputs "
                  "and masks: scratch passes when it is as close to it as torch is (every tensor is in "
                  "parity.csv)."),
            ("table", parity_table(frames["parity"])) if len(frames["parity"]) else ("note", "No parity checks."),
            figure(pngs, "units.png", "Dead (never positive) and saturated units per activation layer.",
                   "No unit statistics recorded.")]),
        ("First-layer weights", [figure(pngs, "first_layer.png", "What the first hidden units look for: each "
                                        "unit's 784 input weights as a 28x28 image, or each filter of a first "
                                        "conv layer as a small image (red +, blue -).",
                                        "No first-layer weights recorded.")]),
        *([("Feature maps", [figure(pngs, "feature_maps.png", "The first test digit after each conv layer, both "
                                    "sides: one small image per channel.", "No feature maps recorded.")])]
          if "feature_maps.png" in pngs else []),
        ("Time and memory", [("table", timing) if len(timing) else ("note", "No timing recorded.")]),
        ("Environment", [("table", environment) if len(environment) else ("note", "No environment recorded.")]),
    ]


def html_block(block: tuple, pngs: dict) -> str:
    kind, text = block[0], html.escape(str(block[1]))
    if kind == "facts":
        return '<dl class="facts">' + "".join(
            f'<div{" class=wide" if len(value) > 32 else ""}><dt>{html.escape(label)}</dt>'
            f"<dd>{html.escape(value)}</dd></div>" for label, value in block[1]) + "</dl>"
    if kind == "table":
        return block[1].to_html(index=False, border=0, na_rep="-", escape=True)
    if kind == "figure":
        data = base64.b64encode(pngs[block[1]]).decode("ascii")
        caption = html.escape(block[2])
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")
    return f'<p class="{kind}">{text}</p>'  # "p", "note", "alert"


def anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def to_html(name: str, sections: list[tuple[str, list]], pngs: dict, sides: tuple[str, str] = ("scratch", "torch")
            ) -> str:
    """The self-contained page: inline CSS, images as data URIs, no scripts, no external links."""
    body = "\n".join(f'<section id="{anchor(title)}"><h2>{html.escape(title)}</h2>\n'
                     + "\n".join(html_block(block, pngs) for block in blocks) + "\n</section>"
                     for title, blocks in sections)
    nav = "".join(f'<a href="#{anchor(title)}">{html.escape(title)}</a>' for title, _ in sections)
    return PAGE.substitute(title=html.escape(f"{' vs '.join(sides)}: {name}"), nav=nav, body=body)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    def cell(value) -> str:
        return fmt(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(column) for column in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def markdown_block(block: tuple) -> str:
    kind = block[0]
    if kind == "alert":
        return f"> **{block[1]}**"
    if kind == "facts":
        return "\n".join(f"- **{label}:** {value}" for label, value in block[1])
    if kind == "table":
        return markdown_table(block[1])
    if kind == "figure":
        return f"![{block[1][:-4]}]({block[1]})\n\n*{block[2]}*"
    return f"*{block[1]}*" if kind == "note" else block[1]


def to_markdown(name: str, sections: list[tuple[str, list]], sides: tuple[str, str] = ("scratch", "torch")) -> str:
    """The same page in Markdown, the PNGs linked by relative path."""
    parts = [f"# {' vs '.join(sides)}: {name}"]
    for title, blocks in sections:
        parts.append(f"## {title}")
        parts.extend(markdown_block(block) for block in blocks)
    return "\n\n".join(parts) + "\n"
