"""The report: its metrics on hand-made examples, every file and column it promises, a page that
opens offline, graceful handling of stopped runs, and the atomic write (a failure keeps the old report)."""
from __future__ import annotations

import dataclasses
import html
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from benchmark.report import plots, writer
from benchmark.report.record import COLUMNS, SIDES, RunRecord
from scratch_nn.spec import load_spec, to_dict

TEST_IMAGES = 200
STEPS_PER_EPOCH, EPOCHS, CHECK_EVERY = 20, 3, 10
PARAMETERS = [f"layers.{index}.{kind}" for index in (0, 2, 4) for kind in ("weight", "bias")]
PNGS = ["loss_steps.png", "epochs.png", "confusion.png", "grad_norms.png", "parity_drift.png", "units.png",
        "first_layer.png", "gallery.png"]
CSV_COLUMNS = {
    **{f"{key}.csv": columns for key, columns in COLUMNS.items()},
    "classes.csv": ["side", "class", "precision", "recall", "f1", "support"],  # spelled out: the contract
    "disagreements.csv": ["index", "label", "pred_scratch", "pred_torch", "conf_scratch", "conf_torch"],
}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def training_tables(rng, steps: int) -> dict[str, list[dict]]:
    """Plausible per-step, per-epoch and per-check rows for the mnist-mlp spec, both sides."""
    tables = {key: [] for key in COLUMNS}
    for step in range(steps):
        for side in SIDES:
            loss = 2.3 * np.exp(-step / 20) + 0.05 + 0.1 * rng.random()
            tables["steps"].append({"step": step, "epoch": step // STEPS_PER_EPOCH + 1, "side": side,
                                    "loss": loss, "lr": 0.05})
    for epoch in range(1, steps // STEPS_PER_EPOCH + 1):
        for side in SIDES:
            tables["epochs"].append({"epoch": epoch, "side": side, "train_loss": 1 / epoch,
                                     "train_accuracy": 0.8 + epoch / 100, "test_loss": 1.1 / epoch,
                                     "test_accuracy": 0.78 + epoch / 100, "seconds": 3.0,
                                     "peak_memory_mb": 150.0 + epoch})
    for step in range(0, steps, CHECK_EVERY):
        for depth, parameter in enumerate(PARAMETERS):
            tables["drift"].append({"step": step, "parameter": parameter, "drift": 1e-7 * (step + 1)})
            tables["parity"].append({"step": step, "tensor": f"grad {parameter}", "shape": "(256, 784)",
                                     "max_abs_diff": 1e-8, "rel_error": 1e-7 * rng.random(),
                                     "scratch_vs_f64": 1e-7 * rng.random(), "torch_vs_f64": 1e-7,
                                     "tolerance": 1.4e-6, "cosine": 1.0, "ok": True, "explained": ""})
            for side in SIDES:
                tables["layers"].append({"step": step, "side": side, "parameter": parameter,
                                         "grad_norm": 10.0 ** -depth * (1 + rng.random()), "weight_norm": 5.0,
                                         "update_ratio": 1e-3})
        for layer in ("layers.1", "layers.3"):
            for side in SIDES:
                tables["units"].append({"step": step, "side": side, "layer": layer, "activation": "relu",
                                        "dead_fraction": 0.1, "saturated_fraction": 0.0})
    return tables


def make_record(rng, agree: bool = False) -> RunRecord:
    """A complete run on TEST_IMAGES noise images; torch's probabilities are scratch's, perturbed
    (or identical with `agree`), so the two sides disagree on a few images."""
    labels = rng.integers(0, 10, TEST_IMAGES)
    scratch = rng.dirichlet(np.ones(10), TEST_IMAGES)
    scratch[np.arange(TEST_IMAGES), labels] += 1.0 * (rng.random(TEST_IMAGES) < 0.8)
    scratch /= scratch.sum(axis=1, keepdims=True)
    torch = scratch.copy() if agree else scratch + 0.05 * rng.random(scratch.shape)
    torch /= torch.sum(axis=1, keepdims=True)
    weights = 0.05 * rng.standard_normal((256, 784))
    return RunRecord(
        spec=load_spec("mnist-mlp"), **training_tables(rng, STEPS_PER_EPOCH * EPOCHS),
        test_labels=labels, test_images=rng.integers(0, 256, (TEST_IMAGES, 28, 28), dtype=np.uint8),
        predictions={"scratch": scratch.argmax(axis=1), "torch": torch.argmax(axis=1)},
        probabilities={"scratch": scratch, "torch": torch},
        first_layer_weights={"scratch": weights, "torch": weights + 1e-6},
        timing={side: {"train_seconds": 9.5, "eval_seconds": 0.2, "peak_memory_mb": 153.0} for side in SIDES},
        environment={"python": "3.11.2", "numpy": "2.4.6", "torch": "2.5.0", "blas": "openblas", "threads": 4},
        parity_verdict="gradients agree: worst rel error 1e-07 (float32)", seconds_total=21.0)


def stopped_record(rng) -> RunRecord:
    """A run that diverged during epoch 2: nan/inf losses, one epoch row, no final evaluation."""
    tables = training_tables(rng, STEPS_PER_EPOCH + 7)
    tables["steps"][-4]["loss"], tables["steps"][-2]["loss"] = float("inf"), float("nan")
    return RunRecord(spec=load_spec("mnist-mlp"), **tables, stopped="loss became nan at step 26 (lr <10>)",
                     parity_verdict="gradients agree", seconds_total=4.0)


def accuracy(record: RunRecord, side: str) -> float:
    return float(np.mean(record.predictions[side] == record.test_labels))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One complete report, shared by the tests that only read it (drawing takes seconds)."""
    record = make_record(np.random.default_rng(1234))
    return record, writer.write_report(record, tmp_path_factory.mktemp("reports"), name="run")


# ---------------------------------------------------------------------------------------------
# Metrics on hand-made examples


def test_confusion_matrix_counts_rows_true_columns_predicted():
    labels, predictions = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(writer.confusion_matrix(labels, predictions, classes=3), expected)


def test_per_class_metrics_exact_values():
    metrics = writer.per_class_metrics(np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]]))
    np.testing.assert_allclose(metrics["precision"], [1 / 2, 1 / 2, 2 / 2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(metrics["recall"], [1 / 2, 1 / 1, 2 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(metrics["f1"], [1 / 2, 2 / 3, 4 / 5], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(metrics["support"], [2, 1, 3])


def test_per_class_metrics_undefined_ratios_are_zero():
    # class 1 never occurs and is never predicted; class 2 is predicted but never right
    metrics = writer.per_class_metrics(np.array([[2, 0, 1], [0, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(metrics["precision"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(metrics["recall"], [2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(metrics["f1"], [0.8, 0.0, 0.0])


@pytest.mark.parametrize("labels, predictions, pattern", [
    ([0, 1], [0, 10], r"must lie in \[0, 9\]"),
    ([0, -1], [0, 1], r"must lie in \[0, 9\]"),
    ([0, 1], [0], r"differ in shape"),
])
def test_confusion_matrix_rejects_bad_input(labels, predictions, pattern):
    with pytest.raises(ValueError, match=pattern):
        writer.confusion_matrix(np.array(labels), np.array(predictions))


def test_disagreements_and_confident_mistakes():
    np.testing.assert_array_equal(writer.disagreements(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])), [1, 3])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.95, 0.05]])
    labels = np.array([1, 1, 0, 0, 0])  # wrong: 0 (conf .9), 2 (.6), 3 (.7)
    np.testing.assert_array_equal(writer.confident_mistakes(probabilities, labels, k=2), [0, 3])
    np.testing.assert_array_equal(writer.confident_mistakes(probabilities, labels, k=10), [0, 3, 2])


# ---------------------------------------------------------------------------------------------
# The folder of a complete run


def test_every_file_is_written(written):
    _, folder = written
    expected = {"report.html", "report.md", "summary.json", "confusion_scratch.csv", "confusion_torch.csv",
                *CSV_COLUMNS, *PNGS}
    assert {path.name for path in folder.iterdir()} == expected


@pytest.mark.parametrize("file_name", sorted(CSV_COLUMNS))
def test_csv_has_exactly_the_documented_columns(written, file_name):
    frame = pd.read_csv(written[1] / file_name)
    assert list(frame.columns) == CSV_COLUMNS[file_name]
    assert len(frame) > 0


def test_csv_rows_match_the_record(written):
    record, folder = written
    assert len(pd.read_csv(folder / "steps.csv")) == len(record.steps)
    disagreeing = pd.read_csv(folder / "disagreements.csv")
    np.testing.assert_array_equal(disagreeing["index"], np.flatnonzero(record.predictions["scratch"]
                                                                       != record.predictions["torch"]))
    classes = pd.read_csv(folder / "classes.csv")
    assert set(classes["side"]) == set(SIDES) and classes.groupby("side")["support"].sum().tolist() == [TEST_IMAGES] * 2


@pytest.mark.parametrize("side", SIDES)
def test_confusion_csv_is_labelled_10x10(written, side):
    record, folder = written
    frame = pd.read_csv(folder / f"confusion_{side}.csv", index_col=0)
    assert frame.index.name == "true" and list(frame.columns) == [str(label) for label in range(10)]
    expected = writer.confusion_matrix(record.test_labels, record.predictions[side])
    np.testing.assert_array_equal(frame.to_numpy(), expected)


def test_html_is_self_contained(written):
    page = (written[1] / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(PNGS)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_verdict_names_both_accuracies_and_their_difference(written):
    record, folder = written
    page, markdown = (folder / "report.html").read_text(), (folder / "report.md").read_text()
    difference = f"{100 * (accuracy(record, 'scratch') - accuracy(record, 'torch')):+.2f} pp"
    for text in (f"{accuracy(record, 'scratch'):.2%}", f"{accuracy(record, 'torch'):.2%}", difference,
                 record.parity_verdict):
        assert text in page and text in markdown
    assert page.index(f"{accuracy(record, 'scratch'):.2%}") < page.index("<img")  # the answer comes first


def test_markdown_links_every_png_beside_it(written):
    folder = written[1]
    linked = re.findall(r"\]\(([^)]+\.png)\)", (folder / "report.md").read_text())
    assert sorted(linked) == sorted(PNGS)


def test_summary_carries_both_sides(written):
    record, folder = written
    summary = json.loads((folder / "summary.json").read_text())
    for side in SIDES:
        assert summary["sides"][side]["test_accuracy"] == pytest.approx(accuracy(record, side), abs=1e-12)
        assert summary["sides"][side]["test_loss"] == pytest.approx(1.1 / EPOCHS)
        assert summary["sides"][side]["train_seconds"] == 9.5 and summary["sides"][side]["peak_memory_mb"] == 153.0
        assert len(summary["sides"][side]["per_class"]["f1"]) == 10
    difference = 100 * (accuracy(record, "scratch") - accuracy(record, "torch"))
    assert summary["accuracy_difference_pp"] == pytest.approx(difference)
    assert summary["spec"] == json.loads(json.dumps(to_dict(record.spec)))
    assert summary["parity_verdict"] == record.parity_verdict and summary["stopped"] is None
    assert summary["environment"] == record.environment and summary["seconds_total"] == 21.0


def test_default_name_is_spec_and_timestamp_and_figures_are_closed(rng, tmp_path):
    folder = writer.write_report(make_record(rng), tmp_path)
    assert re.fullmatch(r"mnist-mlp-\d{8}-\d{6}", folder.name) and folder.parent == tmp_path
    assert plt.get_fignums() == []


def test_default_name_makes_the_spec_name_safe_for_a_folder(rng):
    record = make_record(rng)
    record.spec = dataclasses.replace(record.spec, name="my spec/v2")
    assert re.fullmatch(r"my-spec-v2-\d{8}-\d{6}", writer.folder_name(record, None))


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden"])
def test_bad_name_is_refused(rng, tmp_path, name):
    with pytest.raises(ValueError, match="must be a plain folder name"):
        writer.write_report(make_record(rng), tmp_path, name=name)


def test_user_text_is_escaped(rng, tmp_path):
    record = make_record(rng)
    record.spec = dataclasses.replace(record.spec, description="<script>alert('x')</script> & more")
    page = (writer.write_report(record, tmp_path, name="run") / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_models_that_agree_everywhere_are_said_to(rng, tmp_path):
    folder = writer.write_report(make_record(rng, agree=True), tmp_path, name="run")
    assert f"the two models agree on all {TEST_IMAGES} test images" in (folder / "report.html").read_text()
    assert len(pd.read_csv(folder / "disagreements.csv")) == 0


# ---------------------------------------------------------------------------------------------
# A run that stopped early, and an empty one


def test_stopped_run_without_predictions_says_why(rng, tmp_path):
    record = stopped_record(rng)
    folder = writer.write_report(record, tmp_path, name="diverged")
    page, markdown = (folder / "report.html").read_text(), (folder / "report.md").read_text()
    assert f"Training stopped early: {html.escape(record.stopped)}" in page
    assert f"Training stopped early: {record.stopped}" in markdown
    assert "No final test evaluation" in page and "not evaluated" in page
    assert not (folder / "confusion_scratch.csv").exists() and not (folder / "gallery.png").exists()
    assert (folder / "loss_steps.png").exists()  # drawn from the finite losses
    summary = json.loads((folder / "summary.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    assert summary["stopped"] == record.stopped and summary["sides"]["torch"]["test_accuracy"] is None
    assert list(pd.read_csv(folder / "disagreements.csv").columns) == CSV_COLUMNS["disagreements.csv"]


def test_empty_record_still_writes_every_table(tmp_path):
    folder = writer.write_report(RunRecord(spec=load_spec("mnist-mlp")), tmp_path, name="empty")
    for file_name, columns in CSV_COLUMNS.items():
        frame = pd.read_csv(folder / file_name)
        assert list(frame.columns) == columns and frame.empty
    assert not list(folder.glob("*.png")) and "No training steps recorded" in (folder / "report.md").read_text()


# ---------------------------------------------------------------------------------------------
# Atomic write


@pytest.mark.parametrize("error", [RuntimeError("plot failed"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_previous_report(rng, tmp_path, monkeypatch, error):
    record = make_record(rng)
    before = (writer.write_report(record, tmp_path, name="run") / "summary.json").read_text()

    def broken(*args, **kwargs):
        plt.figure()  # half-drawn: this figure must be closed too
        raise error

    monkeypatch.setattr(plots, "first_layer", broken)
    with pytest.raises(type(error)):
        writer.write_report(record, tmp_path, name="run")
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no .tmp-*, no .old-*
    assert (tmp_path / "run" / "summary.json").read_text() == before
    assert (tmp_path / "run" / "first_layer.png").exists() and plt.get_fignums() == []


def test_rewrite_replaces_previous_report_at_the_end(rng, tmp_path):
    first = writer.write_report(make_record(rng), tmp_path, name="run")
    (first / "left-over.txt").write_text("from the first report")
    second = writer.write_report(stopped_record(rng), tmp_path, name="run")
    assert second == first and not (second / "left-over.txt").exists()
    assert json.loads((second / "summary.json").read_text())["stopped"] is not None
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_the_drift_plot_draws_what_drift_csv_calls_all():
    """The black line is drift.csv's `all` row (every parameter as one vector), not the largest
    single tensor's drift, which can be well above it (a bias drifting most, say)."""
    drift = pd.DataFrame([{"step": step, "parameter": parameter, "drift": value}
                          for step, values in ((1, (0.1, 0.4, 0.2)), (50, (0.2, 0.5, 0.3)))
                          for parameter, value in zip(("layers.0.weight", "layers.0.bias", "all"), values)])
    figure = plots.parity_drift(pd.DataFrame(columns=COLUMNS["parity"]), drift)
    lines = {line.get_label(): line for line in figure.axes[1].get_lines()}
    together = lines[plots.ALL_PARAMETERS]
    assert list(together.get_xdata()) == [1, 50] and list(together.get_ydata()) == [0.2, 0.3]
    assert "drift.csv: all" in plots.ALL_PARAMETERS
    plt.close(figure)
