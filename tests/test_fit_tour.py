"""`svt fit --tour`: every caption's claim holds on the fits the tour computes, and the claims can
fail: given figures where the story is false, each claim says so."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from chromium_page import check_page, start_chromium

from benchmark.fit.tour import STEPS, claims, tour_fits, write_tour


@pytest.fixture(scope="module")
def fits():
    return tour_fits(checks=1)


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[step.key for step in STEPS])
def test_the_caption_claim_holds(fits, index):
    holds, caption = claims(fits)[index]
    assert holds, f"{STEPS[index].title}: {caption}"


def test_every_panel_has_both_sides_and_gradient_parity(fits):
    for step in STEPS:
        fit = fits[step.key]
        assert fit.spec.model.dtype == "float64" and set(fit.curves) == {"scratch", "torch"}
        assert fit.parity_ok(), step.key
        if step.key != "lr_large":  # lr too large: the jumps amplify rounding, the sides part (docs/fit.md)
            assert fit.loss_gap() <= 1e-9 and fit.curve_gap() <= 1e-9, step.key


def test_the_claims_fail_where_the_story_is_false(fits):
    swapped = dict(fits)
    swapped["linear5"] = fits["relu5"]  # a ReLU fit is no line
    swapped["he"], swapped["glorot"] = fits["glorot"], fits["he"]  # He-normal would be worse
    swapped["lr_small"] = fits["extrapolate"]  # a good lr is not 10x worse than itself
    swapped["lr_large"] = fits["lr_small"]  # a small lr's loss does not jump
    swapped["deeper"] = fits["plateau_tanh"]
    line = dict(fits)
    neuron = fits["neuron"]
    line["neuron"] = replace(neuron, weights={"scratch": {"layers.0.weight": np.array([[0.49]]),
                                                          "layers.0.bias": np.array([1.0])}})
    failing = {STEPS[index].key for index, (holds, _) in enumerate(claims(swapped)) if not holds}
    assert failing == {"linear5", "he", "lr_small", "lr_large", "deeper"}
    assert not claims(line)[0][0]


@pytest.mark.browser
def test_the_page_shows_every_panel_and_claim(fits, tmp_path):
    rows = write_tour(fits, tmp_path / "tour")
    table = pd.read_csv(tmp_path / "tour" / "tour.csv")
    assert list(table["holds"]) == ["yes"] * len(STEPS) == [row["holds"] for row in rows]
    assert list(table["step"]) == [step.title for step in STEPS]
    assert (tmp_path / "tour" / "tour.png").stat().st_size < 300_000
    page = (tmp_path / "tour" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "lr too large jumps around" in page
    driver = start_chromium(tmp_path / "profile")
    try:
        check_page(driver, tmp_path / "tour" / "report.html", "#the-tour h2", tmp_path / "tour-page.png")
    finally:
        driver.quit()
