"""Tests of tlbook.widgets.selection (Chapter 7's source-selection explorer): what it embeds, what it
computes in a headless browser (against scipy's Kendall tau), and its argument checks.

Tests that need a browser end in ``in_the_browser`` (``make widgets7`` deselects them).
"""
import json
import re

import pytest
from scipy.stats import kendalltau

from conftest import in_browser
from tlbook.widgets.selection import source_selection_explorer

SOURCES = ["MNIST", "KMNIST", "shuffled", "random init"]
TARGETS = {
    "usps": {"scores": {"LEEP": [-1.2, -1.9, -2.3, -2.30], "LogME": [0.8, 0.5, 0.1, 0.3]},
             "fine-tuned": [0.91, 0.85, 0.70, 0.78], "probe": [0.80, 0.72, 0.40, 0.45]},
    "digits": {"scores": {"LEEP": [-1.5, -1.4, -2.3, -2.31], "LogME": [0.2, 0.6, 0.6, 0.1]},
               "fine-tuned": [0.80, 0.83, 0.60, 0.75], "probe": [0.70, 0.60, 0.30, 0.50]},
}


def payload(html_text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', html_text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_explorer_embeds_its_data_and_needs_no_network():
    text = source_selection_explorer(TARGETS, SOURCES, title="t", element_id="se1").data
    data = payload(text, "se1")
    assert data["sources"] == SOURCES and data["scores"] == ["LEEP", "LogME"]
    assert data["targets"]["digits"]["LogME"] == TARGETS["digits"]["scores"]["LogME"]
    assert data["targets"]["usps"]["fine-tuned"] == TARGETS["usps"]["fine-tuned"]
    assert not re.search(r"\b(src|href)\s*=", text) and "fetch(" not in text and "import(" not in text
    assert not re.findall(r"https?://", text)


def test_explorer_ranks_sources_and_computes_kendall_tau_in_the_browser(chromium):
    out = source_selection_explorer(TARGETS, SOURCES, element_id="se2")
    first, second = in_browser(chromium, out.data, """
      var root = document.getElementById("se2"), r = root.querySelector(".tlbook-result");
      var read = function () {
        return {order: Array.from(root.querySelectorAll(".tlbook-source")).map(function (c) { return c.textContent; }),
                ft: r.getAttribute("data-tau-finetuned"), probe: r.getAttribute("data-tau-probe"),
                top: r.getAttribute("data-top"), best: r.getAttribute("data-best"), text: r.textContent};
      };
      var first = read();
      var t = root.querySelector(".tlbook-target"), s = root.querySelector(".tlbook-score");
      t.value = "digits"; t.dispatchEvent(new Event("change"));
      s.value = "LogME"; s.dispatchEvent(new Event("change"));
      var result = [first, read()];""")
    # first view: the first target and the first score
    assert first["order"] == ["MNIST", "KMNIST", "shuffled", "random init"]
    assert first["top"] == first["best"] == "MNIST" and "the best source" in first["text"]
    usps = TARGETS["usps"]
    assert float(first["ft"]) == pytest.approx(kendalltau(usps["scores"]["LEEP"], usps["fine-tuned"]).statistic, abs=1e-6)
    # digits by LogME: ties in the score (KMNIST and shuffled at 0.6) are handled as scipy's tau-b does
    digits = TARGETS["digits"]
    assert second["order"][:2] in (["KMNIST", "shuffled"], ["shuffled", "KMNIST"]) and second["order"][2:] == ["MNIST", "random init"]
    assert float(second["ft"]) == pytest.approx(kendalltau(digits["scores"]["LogME"], digits["fine-tuned"]).statistic, abs=1e-6)
    assert float(second["probe"]) == pytest.approx(kendalltau(digits["scores"]["LogME"], digits["probe"]).statistic, abs=1e-6)
    assert second["best"] == "KMNIST"


def bad(**changes):
    targets = json.loads(json.dumps(TARGETS))
    for key, value in changes.items():
        target, field = key.split("__")
        targets[target][field.replace("_", "-")] = value
    return targets


@pytest.mark.parametrize("call, message", [
    (lambda: source_selection_explorer({}, SOURCES), "targets must be a non-empty dict"),
    (lambda: source_selection_explorer(TARGETS, "MNIST"), "sources must be a list"),
    (lambda: source_selection_explorer(TARGETS, ["a", "a", "b", "c"]), "at least 2 distinct names"),
    (lambda: source_selection_explorer({"usps": {"scores": {}}}, SOURCES), "exactly the keys"),
    (lambda: source_selection_explorer(bad(usps__scores={}), SOURCES), "non-empty dict"),
    (lambda: source_selection_explorer(bad(digits__scores={"LEEP": [0] * 4}), SOURCES), "the same scores"),
    (lambda: source_selection_explorer(bad(usps__fine_tuned=[0.9, 0.8]), SOURCES), "one value per source"),
    (lambda: source_selection_explorer(bad(usps__probe=[0.9, 0.8, 1.5, 0.1]), SOURCES), r"fractions in \[0, 1\]"),
    (lambda: source_selection_explorer(bad(usps__probe=[0.9, float("nan"), 0.5, 0.1]), SOURCES), "finite"),
    (lambda: source_selection_explorer(bad(usps__scores={"probe": [1, 2, 3, 4]}, digits__scores={"probe": [1, 2, 3, 4]}), SOURCES),
     "must differ from"),
])
def test_bad_input_source_selection_explorer(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
