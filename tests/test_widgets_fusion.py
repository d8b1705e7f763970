"""Tests of tlbook.widgets.fusion (Chapter 4's client-side panels): what they embed, what they compute in a
headless browser (against the same computation in Python), and their argument checks.

Tests that need a browser end in ``in_the_browser`` (``make widgets7`` deselects them).
"""
import json
import re

import pytest
import torch

import tlbook as tl
from conftest import in_browser
from tlbook.widgets.fusion import ensemble_builder, interpolation_explorer, quantise_probabilities

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
CURVES = {"same init": {"accuracy": [0.9, 0.89, 0.88, 0.89, 0.9], "loss": [0.3, 0.31, 0.33, 0.31, 0.3]},
          "different init": {"accuracy": [0.9, 0.7, 0.5, 0.7, 0.9], "loss": [0.3, 0.8, 1.5, 0.8, 0.3]}}


def member_probs(m=4, n=60, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = (2 * torch.randn(m, n, k, generator=g)).softmax(-1)
    labels = torch.randint(0, k, (n,), generator=g)
    return probs, labels


def payload(html_text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', html_text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_panels_embed_their_data_and_need_no_network():
    for out, element_id in ((interpolation_explorer(ALPHAS, CURVES, title="t", element_id="ie1"), "ie1"),
                            (ensemble_builder(*member_probs(), element_id="eb1"), "eb1")):
        text = out.data
        data = payload(text, element_id)
        assert data and "<script>" in text
        assert not re.search(r"\b(src|href)\s*=", text) and "fetch(" not in text and "import(" not in text
        assert set(re.findall(r"https?://[^\s\"']+", text)) <= {"http://www.w3.org/2000/svg"}
    assert payload(interpolation_explorer(ALPHAS, CURVES, element_id="ie2").data, "ie2")["curves"] == CURVES


def expected_readout(probs, labels, chosen, bins=15):
    """What the page must show: the same numbers from the stored (quantised, renormalised) probabilities."""
    q = quantise_probabilities(probs).double()
    p = q / q.sum(-1, keepdim=True)
    avg = p[chosen].mean(0)
    conf, pred = avg.max(-1)
    acc = (pred == labels).double().mean().item()
    ece = tl.fusion.expected_calibration_error(avg, labels, bins=bins).item()
    tops = p.argmax(-1)
    pairs = [(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1:]]
    dis = sum((tops[a] != tops[b]).double().mean().item() for a, b in pairs) / len(pairs)
    return acc, dis, ece


def test_ensemble_builder_computes_accuracy_disagreement_and_ece_in_the_browser(chromium):
    probs, labels = member_probs()
    out = ensemble_builder(probs, labels, names=list("abcd"), start=[0, 2], element_id="eb2")
    first, second = in_browser(chromium, out.data, """
      var root = document.getElementById("eb2"), r = root.querySelector(".tlbook-result");
      var read = function () { return ["members", "accuracy", "disagreement", "ece"].map(function (k) { return r.getAttribute("data-" + k); }); };
      var first = read();
      root.querySelector(".tlbook-all").click();
      var result = [first, read()];""")
    for shown, chosen in ((first, [0, 2]), (second, [0, 1, 2, 3])):
        assert int(shown[0]) == len(chosen)
        assert [float(v) for v in shown[1:]] == pytest.approx(expected_readout(probs, labels, chosen), abs=1e-4)


def test_interpolation_explorer_moves_with_the_slider_in_the_browser(chromium):
    out = interpolation_explorer(ALPHAS, CURVES, element_id="ie3")
    first, second = in_browser(chromium, out.data, """
      var root = document.getElementById("ie3"), s = root.querySelector(".tlbook-alpha");
      var read = function () { return Array.from(root.querySelectorAll(".tlbook-acc")).map(function (c) { return c.textContent; }); };
      var first = read(); s.value = 4; s.dispatchEvent(new Event("input"));
      var result = [first, read()];""")
    assert first == ["accuracy 0.8800", "accuracy 0.5000"]   # the slider starts at the midpoint
    assert second == ["accuracy 0.9000", "accuracy 0.9000"]


@pytest.mark.parametrize("call, message", [
    (lambda: interpolation_explorer([0.0], CURVES), "alphas must be"),
    (lambda: interpolation_explorer([0.5, 0.2, 1.0, 0.7, 0.9], CURVES), "increasing"),
    (lambda: interpolation_explorer(ALPHAS, {}), "curves must be a non-empty dict"),
    (lambda: interpolation_explorer(ALPHAS, {"x": {"accuracy": [1] * 5}}), "exactly the keys"),
    (lambda: interpolation_explorer(ALPHAS, {"x": {"accuracy": [1] * 4, "loss": [1] * 5}}), "one value per alpha"),
    (lambda: interpolation_explorer(ALPHAS, {"x": {"accuracy": [float("nan")] * 5, "loss": [1] * 5}}), "finite"),
    (lambda: ensemble_builder(torch.rand(3, 4), torch.zeros(3, dtype=torch.long)), r"probs must be \(M, N, K\)"),
    (lambda: ensemble_builder(torch.rand(2, 3, 4), torch.zeros(3, dtype=torch.long)), "must be probabilities"),
    (lambda: ensemble_builder(member_probs()[0], torch.zeros(7, dtype=torch.long)), "labels must be an integer tensor"),
    (lambda: ensemble_builder(member_probs()[0], torch.full((60,), 9)), r"labels must be in \[0, K\)"),
    (lambda: ensemble_builder(*member_probs(), names=["a"]), "names must name the 4 members"),
    (lambda: ensemble_builder(*member_probs(), start=[5]), "start must be member indices"),
    (lambda: ensemble_builder(*member_probs(), bins=0), "bins must be a whole number"),
])
def test_bad_input_fusion_panels(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
