"""Tests of tlbook.widgets.zeroshot (Chapter 7's zero-shot panel): what it embeds, what it computes in a
headless browser (against tl.zeroshot.generalised_accuracy on the same predictions), and its argument checks.

Tests that need a browser end in ``in_the_browser`` (``make widgets7`` deselects them).
"""
import json
import math
import re

import pytest
import torch

import tlbook as tl
from conftest import in_browser
from tlbook.widgets.zeroshot import zero_shot_explorer

K, METHODS = 6, ["A", "B"]
UNSEEN = [[1, 4], [0, 5]]


def predictions(seed=0, n=120):
    """Labels (n,) and predictions (S, M, P, n) with seen-class predictions thinning out as the shift grows."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    out = torch.empty(len(UNSEEN), len(METHODS), 3, n, dtype=torch.long)
    for s in range(len(UNSEEN)):
        for m in range(len(METHODS)):
            for p in range(3):
                right = torch.rand(n, generator=g) < 0.6 + 0.1 * p
                out[s, m, p] = torch.where(right, labels, torch.randint(0, K, (n,), generator=g))
    return labels, out


def confusion_of(labels, predicted):
    return torch.bincount(labels * K + predicted, minlength=K * K).view(K, K)


def panel_inputs(seed=0):
    labels, predicted = predictions(seed)
    confusion = torch.stack([torch.stack([torch.stack([confusion_of(labels, predicted[s, m, p]) for p in range(3)])
                                          for m in range(len(METHODS))]) for s in range(len(UNSEEN))])
    shifts = [[[0.0, 0.5, math.inf] for _ in METHODS] for _ in UNSEEN]
    return labels, predicted, confusion, shifts


def payload(html_text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', html_text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_panel_embeds_its_data_and_needs_no_network():
    _, _, confusion, shifts = panel_inputs()
    text = zero_shot_explorer(confusion, UNSEEN, shifts, METHODS, chosen=[[1, 0], [2, 1]], element_id="zs1").data
    data = payload(text, "zs1")
    assert data["confusion"] == confusion.tolist() and data["unseen"] == UNSEEN
    assert data["shifts"][0][0] == [0.0, 0.5, None]   # inf travels as null: "unseen classes only"
    assert not re.search(r"\b(src|href)\s*=", text) and "fetch(" not in text and "import(" not in text
    assert not re.findall(r"https?://[^\s\"']+", text)


def test_panel_reads_accuracy_like_generalised_accuracy_in_the_browser(chromium):
    labels, predicted, confusion, shifts = panel_inputs()
    out = zero_shot_explorer(confusion, UNSEEN, shifts, METHODS, chosen=[[1, 0], [2, 1]], element_id="zs2")
    shown = in_browser(chromium, out.data, """
      var root = document.getElementById("zs2"), r = root.querySelector(".tlbook-result");
      var split = root.querySelector(".tlbook-split"), method = root.querySelector(".tlbook-method"), slider = root.querySelector(".tlbook-shift");
      var read = function () { return [+split.value, +method.value, +slider.value].concat(
        ["seen", "unseen", "harmonic", "to-seen"].map(function (k) { return +r.getAttribute("data-" + k); })); };
      var out = [read()];                                                            // starts at split 0, method A, its chosen shift
      slider.value = 0; slider.dispatchEvent(new Event("input")); out.push(read());
      split.value = 1; split.dispatchEvent(new Event("change")); out.push(read());    // a new split jumps to its chosen shift
      method.value = 1; method.dispatchEvent(new Event("change")); out.push(read());
      slider.value = 2; slider.dispatchEvent(new Event("input"));
      root.querySelector(".tlbook-chosen").click(); out.push(read());
      out.push(root.querySelectorAll(".tlbook-confusion tr").length);
      var result = out;""")
    assert shown[-1] == K + 1                                  # a header row and one row per class
    assert [row[:3] for row in shown[:-1]] == [[0, 0, 1], [0, 0, 0], [1, 0, 2], [1, 1, 1], [1, 1, 1]]
    for s, m, p, seen, unseen, harmonic, to_seen in shown[:-1]:
        want = tl.zeroshot.generalised_accuracy(predicted[s, m, p], labels, UNSEEN[s])
        assert [seen, unseen, harmonic] == pytest.approx([want["seen"], want["unseen"], want["harmonic"]], abs=1e-4)
        is_unseen = torch.isin(labels, torch.tensor(UNSEEN[s]))
        taken = ~torch.isin(predicted[s, m, p][is_unseen], torch.tensor(UNSEEN[s]))
        assert to_seen == pytest.approx(taken.double().mean().item(), abs=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda c, s: zero_shot_explorer(c[0], UNSEEN, s, METHODS), r"confusion must be \(S, M, P, K, K\)"),
    (lambda c, s: zero_shot_explorer(c - 1, UNSEEN, s, METHODS), "counts"),
    (lambda c, s: zero_shot_explorer(c * 0.5, UNSEEN, s, METHODS), "counts"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN[:1], s, METHODS), "unseen must be a list of 2"),
    (lambda c, s: zero_shot_explorer(c, [[1], [9]], s, METHODS), r"unseen\[1\] must name"),
    (lambda c, s: zero_shot_explorer(c, [[1], list(range(K))], s, METHODS), r"unseen\[1\] must name"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, [[[0.0, 1.0] for _ in METHODS] for _ in UNSEEN], METHODS), "shifts must be"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, [[[1.0, 0.5, 2.0] for _ in METHODS] for _ in UNSEEN], METHODS), "increase"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, [[[0.0, float("nan"), 2.0] for _ in METHODS] for _ in UNSEEN], METHODS), "shifts must be"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, "no", METHODS), "shifts must be numbers"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, s, ["A"]), "methods must name the 2"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, s, METHODS, chosen=[[0, 3], [0, 0]]), "chosen must be"),
    (lambda c, s: zero_shot_explorer(c, UNSEEN, s, METHODS, class_names=["x"]), "class_names must name the 6"),
    (lambda c, s: zero_shot_explorer(torch.zeros_like(c), UNSEEN, s, METHODS), "no test images"),
])
def test_bad_input_zero_shot_explorer(call, message):
    _, _, confusion, shifts = panel_inputs()
    with pytest.raises((ValueError, TypeError), match=message):
        call(confusion, shifts)
