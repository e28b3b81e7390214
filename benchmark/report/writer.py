"""Write one comparison run (`RunRecord`) as a report folder: the answer first, then the evidence.

    write_report(record, out_dir) -> out_dir/<spec name>-<YYYYmmdd-HHMMSS>/   (or out_dir/<name>)
        report.html    self-contained page (plots as base64 PNG, inline CSS, no scripts)
        report.md      the same verdict and tables, linking the PNGs beside it
        *.png          loss_steps, epochs, confusion, grad_norms, parity_drift, units, first_layer, feature_maps,
                       gallery
        summary.json   spec, environment, final metrics per side, verdicts
        steps.csv epochs.csv layers.csv units.csv parity.csv drift.csv   exactly record.COLUMNS, always
        classes.csv disagreements.csv                                     always (empty without predictions)
        confusion_scratch.csv confusion_torch.csv                         when that side has predictions

The folder is built under a hidden temporary name and renamed into place at the very end, so a
failed or interrupted report never looks complete and never destroys an earlier one of the same name.
The metrics (`confusion_matrix`, `per_class_metrics`, `disagreements`, `confident_mistakes`) are
pure NumPy functions; the figures live in `benchmark.report.plots`, the page layout in `benchmark.report.page`.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.files import folder_written_atomically
from benchmark.core.jsonio import json_ready
from benchmark.report import page, plots
from benchmark.report.record import COLUMNS, RunRecord
from scratch_nn.spec import to_dict

GALLERY_DISAGREEMENTS = 16   # images shown in the gallery; the CSV lists every disagreement
GALLERY_MISTAKES = 8         # most confident mistakes shown per side
CLASSES_COLUMNS = ["side", "class", "precision", "recall", "f1", "support"]
DISAGREEMENT_COLUMNS = ["index", "label", "pred_scratch", "pred_torch", "conf_scratch", "conf_torch"]  # named
# after record.sides: in `svt run --model` pred_<their file>, ...


# ---------------------------------------------------------------------------------------------
# Metrics: pure functions of label and prediction arrays.


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts C[true, predicted], shape (classes, classes): row = true label, column = prediction."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    if labels.size and (min(labels.min(), predictions.min()) < 0 or max(labels.max(), predictions.max()) >= classes):
        raise ValueError(f"labels and predictions must lie in [0, {classes - 1}]")
    return np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per class k: precision = C[k,k] / sum_i C[i,k], recall = C[k,k] / sum_j C[k,j],
    f1 = 2 P R / (P + R), support = sum_j C[k,j]. An undefined ratio (0/0) is 0, as scikit-learn."""
    confusion = np.asarray(confusion, dtype=np.int64)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def disagreements(predictions_a: np.ndarray, predictions_b: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the examples on which the two sides predict different classes."""
    return np.flatnonzero(np.asarray(predictions_a) != np.asarray(predictions_b))


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` misclassified examples with the highest confidence in their (wrong)
    prediction argmax_c p[i, c], most confident first."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    return wrong[np.argsort(-confidence[wrong], kind="stable")[:k]]


# ---------------------------------------------------------------------------------------------
# What the report shows, computed once from the record.


def evaluated_sides(record: RunRecord) -> list[str]:
    """The sides with a final test evaluation (predictions and the labels to score them)."""
    if record.test_labels is None:
        return []
    return [side for side in record.sides if record.predictions.get(side) is not None]


def confidence(record: RunRecord, side: str) -> np.ndarray:
    """p[i, prediction_i] for every test image (nan when the side kept no probabilities)."""
    predictions, probabilities = record.predictions[side], record.probabilities.get(side)
    if probabilities is None:
        return np.full(len(predictions), np.nan)
    return probabilities[np.arange(len(predictions)), predictions]


def final_metrics(record: RunRecord, epochs: pd.DataFrame) -> dict[str, dict]:
    """Per side: test accuracy (from the final predictions), test loss (last epoch row), train
    seconds and peak memory (record.timing, else summed/maxed over the epoch rows)."""
    evaluated, metrics = evaluated_sides(record), {}
    for side in record.sides:
        rows, timing = epochs[epochs["side"] == side].sort_values("epoch"), record.timing.get(side, {})
        accuracy = None
        if side in evaluated:
            accuracy = float(np.mean(record.predictions[side] == record.test_labels))
        metrics[side] = {
            "test_accuracy": accuracy,
            "test_loss": float(rows["test_loss"].iloc[-1]) if len(rows) else None,
            "train_seconds": timing.get("train_seconds", float(rows["seconds"].sum()) if len(rows) else None),
            "peak_memory_mb": timing.get("peak_memory_mb", float(rows["peak_memory_mb"].max()) if len(rows) else None),
        }
    return metrics


def tables(record: RunRecord) -> dict[str, pd.DataFrame]:
    """Every CSV of the report by file stem: the record's tables with exactly their documented
    columns, per-class metrics, disagreements and the confusion matrices."""
    frames = {key: pd.DataFrame(getattr(record, key), columns=columns) for key, columns in COLUMNS.items()}
    evaluated, classes = evaluated_sides(record), []
    for side in evaluated:
        matrix = confusion_matrix(record.test_labels, record.predictions[side])
        labels = [str(label) for label in range(10)]
        frames[f"confusion_{side}"] = pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=labels)
        classes.append(pd.DataFrame({"side": side, "class": range(10), **per_class_metrics(matrix)}))
    frames["classes"] = (pd.concat(classes, ignore_index=True) if classes else
                         pd.DataFrame(columns=CLASSES_COLUMNS))
    first, second = record.sides
    columns = [column.replace("scratch", first).replace("torch", second) for column in DISAGREEMENT_COLUMNS]
    disagreement = {column: [] for column in columns}
    if len(evaluated) == 2:
        index = disagreements(record.predictions[first], record.predictions[second])
        disagreement = {"index": index, "label": record.test_labels[index],
                        **{f"pred_{side}": record.predictions[side][index] for side in record.sides},
                        **{f"conf_{side}": confidence(record, side)[index] for side in record.sides}}
    frames["disagreements"] = pd.DataFrame(disagreement)
    return frames


def summary(record: RunRecord, frames: dict[str, pd.DataFrame]) -> dict:
    """summary.json: the spec, the environment, the final metrics per side and the verdicts."""
    metrics = final_metrics(record, frames["epochs"])
    for side in record.sides:
        metrics[side]["per_class"] = None
    for side, rows in frames["classes"].groupby("side"):
        metrics[side]["per_class"] = {key: rows[key].tolist() for key in ("precision", "recall", "f1", "support")}
    accuracies = [metrics[side]["test_accuracy"] for side in record.sides]
    both = None not in accuracies
    return {"spec": to_dict(record.spec), "environment": record.environment, "sides": metrics,
            "accuracy_difference_pp": 100 * (accuracies[0] - accuracies[1]) if both else None,
            "disagreements": len(frames["disagreements"]) if both else None,
            "test_images": None if record.test_labels is None else len(record.test_labels),
            "parity_verdict": record.parity_verdict, "stopped": record.stopped,
            "seconds_total": record.seconds_total, "targets": record.targets}


def figures(record: RunRecord, frames: dict[str, pd.DataFrame]) -> list[tuple[str, Callable]]:
    """(PNG file name, function drawing it) for every plot; attributes are looked up on `plots`
    at call time, so a test can replace one."""
    matrices = {side: frames[f"confusion_{side}"].to_numpy() for side in evaluated_sides(record)}
    return [
        ("loss_steps.png", lambda: plots.loss_steps(frames["steps"])),
        ("epochs.png", lambda: plots.epochs(frames["epochs"])),
        ("confusion.png", lambda: plots.confusion(matrices)),
        ("grad_norms.png", lambda: plots.grad_norms(frames["layers"])),
        ("parity_drift.png", lambda: plots.parity_drift(frames["parity"], frames["drift"])),
        ("units.png", lambda: plots.units(frames["units"])),
        ("first_layer.png", lambda: plots.first_layer(record.first_layer_weights)),
        ("feature_maps.png", lambda: plots.feature_maps(record.feature_maps)),
        ("gallery.png", lambda: plots.gallery(record.test_images, gallery_groups(record, frames))),
    ]


def gallery_groups(record: RunRecord, frames: dict[str, pd.DataFrame]) -> list[tuple[str, list]]:
    """The gallery's groups: the first disagreements, then each side's most confident mistakes."""
    if record.test_images is None:
        return []
    evaluated = evaluated_sides(record)
    confidences = {side: confidence(record, side) for side in evaluated}

    def caption(index: int) -> str:
        lines = [f"true {record.test_labels[index]}"]
        for side in evaluated:
            probability = confidences[side][index]
            lines.append(f"{side} {record.predictions[side][index]}"
                         + ("" if np.isnan(probability) else f" ({probability:.0%})"))
        return "\n".join(lines)

    shown = frames["disagreements"]["index"].to_numpy()[:GALLERY_DISAGREEMENTS]
    groups = [(f"Where {' and '.join(record.sides)} disagree", [(int(i), caption(i)) for i in shown])]
    for side in evaluated:
        if record.probabilities.get(side) is not None:
            worst = confident_mistakes(record.probabilities[side], record.test_labels, GALLERY_MISTAKES)
            groups.append((f"Most confident mistakes of {side}", [(int(i), caption(i)) for i in worst]))
    return groups


# ---------------------------------------------------------------------------------------------
# Writing the folder, atomically.


def render_figures(record: RunRecord, frames: dict[str, pd.DataFrame], folder: Path) -> dict[str, bytes]:
    """Draw, save (100 dpi) and close every figure; returns {file name: PNG bytes} of those drawn."""
    import matplotlib.pyplot as plt

    before, pngs = set(plt.get_fignums()), {}
    try:
        for file_name, draw in figures(record, frames):
            figure = draw()
            if figure is None:
                continue
            pngs[file_name] = plots.to_png(figure)
            plt.close(figure)
            (folder / file_name).write_bytes(pngs[file_name])
    finally:  # also the figures of a plot function that raised half-way
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
    return pngs


def write_contents(record: RunRecord, folder: Path, finalize: Callable[[RunRecord], None] | None = None) -> None:
    """Write every file of the report into `folder` (which exists and is empty); `finalize(record)`
    runs after the plots, just before the summary and pages that state the total time are written."""
    frames = tables(record)
    for stem, frame in frames.items():
        frame.to_csv(folder / f"{stem}.csv", index=stem.startswith("confusion_"))
    pngs = render_figures(record, frames, folder)
    if finalize is not None:
        finalize(record)
    data = summary(record, frames)
    (folder / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8")
    sections = page.sections(record, frames, data, pngs)
    (folder / "report.html").write_text(page.to_html(record.spec.name, sections, pngs, record.sides), encoding="utf-8")
    (folder / "report.md").write_text(page.to_markdown(record.spec.name, sections, record.sides), encoding="utf-8")


def folder_name(record: RunRecord, name: str | None) -> str:
    """`name` if given (a plain folder name), else `<spec name>-<YYYYmmdd-HHMMSS>` (local time)."""
    if name is None:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", record.spec.name).strip(".-") or "run"
        return f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise ValueError(f"report name {name!r} must be a plain folder name (no '/', not starting with '.')")
    return name


def write_report(record: RunRecord, out_dir: Path, name: str | None = None,
                 finalize: Callable[[RunRecord], None] | None = None) -> Path:
    """Write the report of `record` as the folder `out_dir/<name>` and return its path.

    `finalize(record)` is called once the plots are drawn, before summary.json and the pages: the
    run sets its total time and checks its targets there, so that they include the report's own time.

    Everything is built in `out_dir/.tmp-<name>-<pid>` and renamed into place at the end; on any
    failure or Ctrl-C the temporary folder is removed and an earlier report of that name is kept.
    """
    final = Path(out_dir) / folder_name(record, name)
    with folder_written_atomically(final) as temporary:
        write_contents(record, temporary, finalize)
    return final
