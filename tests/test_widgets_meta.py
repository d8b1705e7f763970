"""Tests of Chapter 3's client-side panel (tlbook.widgets.meta.sinusoid_panel): what it embeds, how it
refuses bad input, and that a headless browser draws it with no kernel and no network."""
import json
import re

import pytest
import torch

from conftest import dump_dom

meta_widgets = pytest.importorskip("tlbook.widgets.meta", reason="tlbook.widgets is not a package yet")
sinusoid_panel = meta_widgets.sinusoid_panel

X = torch.linspace(-5, 5, 11)
TRUTH = torch.stack([torch.sin(X), 2 * torch.sin(X - 1)])                       # 2 tasks
SUPPORT = [(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.84])), (torch.tensor([2.0]), torch.tensor([1.68]))]
FITS = {"MAML": torch.zeros(2, 4, 11), "pretrained": torch.ones(2, 4, 11)}      # 3 steps


def payload(text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_panel_embeds_the_fits_and_needs_no_network():
    text = sinusoid_panel(X, TRUTH, SUPPORT, FITS, element_id="s1", title="</script>t").data
    data = payload(text, "s1")
    assert data["steps"] == 3 and list(data["fits"]) == ["MAML", "pretrained"]
    assert len(data["fits"]["MAML"]) == 2 and len(data["fits"]["MAML"][0]) == 4 and len(data["x"]) == 11
    assert data["support"][1] == [[2.0], [pytest.approx(1.68)]]
    assert "</script>t" not in text.split("<script")[0], "the title must be escaped"
    assert not re.search(r"\b(src|href)\s*=", text) and "fetch(" not in text
    assert set(re.findall(r"https?://[^\s\"']+", text)) <= {"http://www.w3.org/2000/svg"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=torch.zeros(1)), "x must be a 1-d grid"),
    (dict(truth=torch.zeros(2, 5)), r"truth must be \(tasks, 11\)"),
    (dict(fits={}), "fits must be a non-empty dict"),
    (dict(fits={"a": torch.zeros(2, 4, 11), "b": torch.zeros(2, 3, 11)}), r"fits\['b'\] must be"),
    (dict(support=SUPPORT[:1]), "one \\(x, y\\) pair per task"),
    (dict(support=[(torch.zeros(2), torch.zeros(3)), SUPPORT[1]]), "2 x values but 3 y values"),
    (dict(task_names=["one"]), "task_names must name each of the 2"),
    (dict(fits={"a": torch.full((2, 4, 11), float("nan"))}), "finite"),
])
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    args = dict(x=X, truth=TRUTH, support=SUPPORT, fits=FITS) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        sinusoid_panel(**args)


def test_panel_draws_in_the_browser(chromium):
    text = sinusoid_panel(X, TRUTH, SUPPORT, FITS, element_id="s2", title="sines").data
    dom = dump_dom(chromium, text)
    assert dom.count("<polyline") == 4, "axis, truth and two fits"
    assert dom.count("<circle") == 2 and dom.count("<option") == 2
    assert "after 0 step(s), on the drawn grid: MAML: MSE" in dom and "pretrained: MSE" in dom
