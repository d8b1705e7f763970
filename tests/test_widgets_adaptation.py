"""Chapter 6's client-side panel: feature projections through training (tlbook.widgets.adaptation)."""
import json
import re

import pytest
import torch

from conftest import in_browser
from tlbook.widgets.adaptation import projection_explorer

RUNS = {"a": torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.0, 0.0], [0.5, 1.0]]]),
        "b": torch.zeros(2, 3, 2)}
DOMAINS = [0, 1, 1]


def payload(html_text, element_id):
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', html_text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_projection_explorer_embeds_scaled_points():
    out = projection_explorer(RUNS, DOMAINS, [0, 100], domain_names=("MNIST", "USPS"), element_id="p1")
    data = payload(out.data, "p1")
    assert data["runs"]["a"][0] == [[0, 0], [1000, 1000], [500, 0]] and data["domains"] == DOMAINS
    assert data["steps"] == ["0", "100"] and data["names"] == ["MNIST", "USPS"]
    assert not re.search(r"\b(src|href)\s*=", out.data) and "fetch(" not in out.data


@pytest.mark.parametrize("runs, domains, steps, match", [
    ({}, DOMAINS, [0, 1], "non-empty dict"),
    ({"a": torch.zeros(2, 3)}, DOMAINS, [0, 1], r"\(T, N, 2\)"),
    ({"a": torch.zeros(2, 3, 2), "b": torch.zeros(2, 4, 2)}, DOMAINS, [0, 1], "same T and N"),
    (RUNS, [0, 1], [0, 1], "domains must be"),
    (RUNS, [0, 2, 1], [0, 1], "domains must be"),
    (RUNS, DOMAINS, [0], "name the 2 checkpoints"),
    ({"a": torch.full((2, 3, 2), float("nan"))}, DOMAINS, [0, 1], "finite"),
])
def test_bad_input_projection_explorer(runs, domains, steps, match):
    with pytest.raises((ValueError, TypeError), match=match):
        projection_explorer(runs, domains, steps)


def test_projection_explorer_moves_the_points_with_the_slider_in_the_browser(chromium):
    out = projection_explorer(RUNS, DOMAINS, [0, 100], element_id="p2")
    first, second, label = in_browser(chromium, out.data, """
      var root = document.getElementById("p2"), s = root.querySelector(".tlbook-slider");
      var at = function () { return Array.from(root.querySelectorAll("circle.tlbook-dot")).map(function (c) { return [+c.getAttribute("cx"), +c.getAttribute("cy")]; }); };
      var first = at(); s.value = 1; s.dispatchEvent(new Event("input")); var second = at();
      var result = [first, second, root.querySelector(".tlbook-step").textContent];""")
    # 300-pixel square at a 10-pixel margin, y pointing up
    assert first == [[10, 310], [310, 10], [160, 310]] and second == [[310, 10], [10, 310], [160, 10]]
    assert label == "step 100"
