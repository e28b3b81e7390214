"""The committed example report (reports/example) and the README's links to it stay true (and what
docs/history.md says made it)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "reports" / "example"


def test_every_relative_link_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [target for target in re.findall(r"\]\(([^)#]+)\)", readme) if "://" not in target]
    assert "reports/example/report.md" in links
    missing = [target for target in links if not (ROOT / target).exists()]
    assert missing == []


def test_the_example_is_the_default_run_on_all_of_mnist_and_meets_its_targets():
    summary = json.loads((EXAMPLE / "summary.json").read_text(encoding="utf-8"))
    assert summary["spec"]["name"] == "mnist-mlp" and summary["spec"]["model"]["dtype"] == "float32"
    assert summary["test_images"] == 10000 and summary["stopped"] is None
    targets = {row["target"]: row["holds"] for row in summary["targets"]}
    assert len(targets) == 4 and not any("subset" in target for target in targets)
    assert all(targets.values()), targets
    accuracy = {side: metrics["test_accuracy"] for side, metrics in summary["sides"].items()}
    assert min(accuracy.values()) >= 0.98 and abs(accuracy["scratch"] - accuracy["torch"]) <= 0.003


def test_the_example_pages_show_images_that_are_there():
    markdown = (EXAMPLE / "report.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) >= 6 and all((EXAMPLE / image).is_file() for image in images)
    html = (EXAMPLE / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 6 and "<script" not in html


def test_the_history_names_the_versions_the_example_was_made_with():
    history = (ROOT / "docs" / "history.md").read_text(encoding="utf-8")
    environment = json.loads((EXAMPLE / "summary.json").read_text(encoding="utf-8"))["environment"]
    made_with = re.search(r"It was made with Python (\S+), NumPy (\S+) and torch (\S+) ", history)
    assert made_with, "docs/history.md says which versions made reports/example"
    assert made_with.groups() == (environment["python"], environment["numpy"], environment["torch"].split("+")[0])
