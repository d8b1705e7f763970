"""Tests of tlbook.widgets: what the client-side explorer emits (and computes, in a headless browser),
and the live panel driven from Python the way a reader's click drives it, with a tiny distillation run.

The tests that need a browser have names ending in ``in_the_browser``; ``make widgets7`` runs the
others under ipywidgets 7 (what Colab ships) with ``-k "not in_the_browser"`` and sets
``TLBOOK_EXPECT_IPYWIDGETS=7`` so that a wrong import path cannot pass unnoticed.
"""
import json
import os
import re

import ipywidgets as widgets
import pytest
import torch

import tlbook as tl
from conftest import dump_dom, in_browser

LOGITS = torch.tensor([[4.0, 1.0, -2.0, 0.5], [0.0, 0.0, 3.0, -1.0]])


def test_the_expected_ipywidgets_is_imported():
    expected = os.environ.get("TLBOOK_EXPECT_IPYWIDGETS")
    if not expected:
        pytest.skip("TLBOOK_EXPECT_IPYWIDGETS is not set (make widgets7 sets it)")
    assert widgets.__version__.split(".")[0] == expected, (widgets.__version__, widgets.__file__)


def payload(html_text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}-data">(.*?)</script>', html_text, re.S)
    assert match, "the data block is missing"
    return json.loads(match.group(1))


def test_explorer_embeds_the_logits_and_needs_no_network():
    out = tl.widgets.softmax_explorer(LOGITS, images=torch.rand(2, 1, 5, 5), titles=["a", "b"],
                                      class_names=list("wxyz"), temperatures=(0.5, 40), start=2.0, element_id="t1")
    text = out.data
    data = payload(text, "t1")
    assert data["logits"] == LOGITS.tolist() and data["titles"] == ["a", "b"] and data["classes"] == list("wxyz")
    assert data["logT"] == pytest.approx([torch.log(torch.tensor(v)).item() for v in (0.5, 40.0, 2.0)])
    assert data["images"]["height"] == 5 and len(data["images"]["values"][0]) == 25
    assert '<input class="tlbook-t" type="range"' in text and "<script>" in text
    # Nothing is fetched: no src/href attributes, no fetch or import; the only URL is the SVG namespace name.
    assert not re.search(r"\b(src|href)\s*=", text) and "fetch(" not in text and "import(" not in text
    assert set(re.findall(r"https?://[^\s\"']+", text)) <= {"http://www.w3.org/2000/svg"}


def test_explorer_escapes_script_endings_and_checks_its_arguments():
    out = tl.widgets.softmax_explorer(LOGITS, titles=["</script><b>x", "ok"], element_id="t2")
    assert payload(out.data, "t2")["titles"][0] == "</script><b>x"
    with pytest.raises(ValueError, match=r"logits must be \(N, K\)"):
        tl.widgets.softmax_explorer(torch.zeros(3))
    with pytest.raises(ValueError, match="titles must name the 2 examples"):
        tl.widgets.softmax_explorer(LOGITS, titles=["only one"])
    with pytest.raises(ValueError, match="class_names must name the 4 classes"):
        tl.widgets.softmax_explorer(LOGITS, class_names=["a"])
    with pytest.raises(ValueError, match="0 < T_min < T_max"):
        tl.widgets.softmax_explorer(LOGITS, temperatures=(5, 1))
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        tl.widgets.softmax_explorer(LOGITS, images=torch.zeros(3, 1, 4, 4))


def test_explorer_computes_softmax_at_temperature_in_the_browser(chromium):
    start = 3.0
    out = tl.widgets.softmax_explorer(LOGITS, temperatures=(0.5, 50), start=start, element_id="t3")
    dom = dump_dom(chromium, out.data)
    drawn = [float(p) for p in re.findall(r'<rect[^>]*data-p="([0-9.]+)"', dom)]
    expected = (LOGITS[0] / start).softmax(0).tolist()  # the first example is shown first
    assert drawn == pytest.approx(expected, abs=1e-4)
    assert "T = 3.00" in dom


# --- the live panel, driven from Python ------------------------------------------------------------


def test_run_panel_calls_the_function_with_the_controls_values():
    calls = []
    panel = tl.widgets.RunPanel(lambda width, temperature: calls.append((width, temperature)) or width * temperature,
                                dict(width=widgets.Dropdown(options=[10, 30], value=10),
                                     temperature=widgets.FloatSlider(value=1.0, min=0.5, max=20)))
    panel.controls["width"].value, panel.controls["temperature"].value = 30, 4.0
    panel.button.click()
    assert calls == [(30, 4.0)] and panel.results == [120.0] and not panel.button.disabled
    with pytest.raises(TypeError, match="controls must be ipywidgets value widgets"):
        tl.widgets.RunPanel(lambda x: x, dict(x=3))


def test_the_chapters_controls_work_in_this_ipywidgets():
    """The controls the chapters build, as they build them (also run under ipywidgets 7: make widgets7)."""
    seen = []
    shown = widgets.interactive(lambda index, example, T, alpha: seen.append((index, example, T, alpha)),
                                index=widgets.IntSlider(value=2, min=0, max=9, description="test image"),
                                example=widgets.Dropdown(options=[("first", 0), ("second", 1)], description="test digit",
                                                         layout=widgets.Layout(width="28em")),
                                T=widgets.FloatLogSlider(value=4.0, base=10, min=-0.3, max=1.7, step=0.01, description="T"),
                                alpha=widgets.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="α"))
    shown.children[1].value = 1  # what a reader's choice in the dropdown does
    assert seen and seen[-1] == (2, 1, pytest.approx(4.0), 0.5)


def stripes(n, seed):
    """Two classes of noisy stripes (horizontal or vertical), learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    rows = (torch.arange(8) % 2).float()[:, None].expand(8, 8)
    protos = torch.stack([rows, rows.T])[:, None]
    images = (protos[labels] + 0.4 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1)
    return tl.ImageData(images, labels, ("h", "v"), "stripes")


def test_distil_now_panel_trains_when_its_button_is_clicked():
    """The chapter's panel in miniature: a teacher, and a click that distils a student of the chosen width."""
    train, test = stripes(256, seed=0), stripes(256, seed=1)
    teacher = tl.make_model("mlp", num_classes=2, image_size=8, hidden=(32,), seed=0)
    tl.fit(teacher, train, steps=30, progress=False)
    with_teacher = train.with_columns(teacher_logits=tl.predict(teacher, train))

    def distil_now(temperature, alpha, width, steps):
        student = tl.make_model("mlp", num_classes=2, image_size=8, hidden=(width,), seed=0)

        def step(model, batch):
            images, labels, teacher_logits = batch
            return tl.distillation_loss(model(images), teacher_logits, labels, temperature, alpha)

        history = tl.fit(student, with_teacher, step, steps=steps, batch_size=64, progress=False)
        return dict(width=width, steps=history["step"][-1], accuracy=tl.evaluate(student, test))

    panel = tl.widgets.RunPanel(distil_now, dict(
        temperature=widgets.FloatLogSlider(value=4.0, base=10, min=0, max=1.7),
        alpha=widgets.FloatSlider(value=0.9, min=0, max=1),
        width=widgets.Dropdown(options=[4, 16], value=4),
        steps=widgets.IntSlider(value=5, min=5, max=50)), description="distil now")
    panel.controls["width"].value, panel.controls["steps"].value = 16, 20
    panel.button.click()
    assert len(panel.results) == 1, "the click produced no result (the run raised; see the log)"
    result = panel.results[0]
    assert result["width"] == 16 and result["steps"] == 20
    assert result["accuracy"] > 0.8, f"a distilled student should learn the stripes, got {result}"


# --- the grid explorer -----------------------------------------------------------------------------


GRID = torch.tensor([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [[0.3, 0.4, 0.5], [0.6, 0.7, 0.8]]])  # (2 seeds, 2, 3)
AXES = [("depth", [0, 3]), ("k", [1, 10, 100])]


def test_grid_explorer_embeds_summaries_and_checks_its_arguments():
    out = tl.widgets.grid_explorer(GRID, AXES, baselines={"scratch": torch.tensor([[0.0, 0.1, 0.2], [0.2, 0.3, 0.4]])},
                                   value_name="acc", series_name="transfer", element_id="gx1")
    data = payload(out.data, "gx1")
    assert data["axes"] == [["depth", ["0", "3"]], ["k", ["1", "10", "100"]]] and data["repeats"] == 2
    assert data["grid"][0] == pytest.approx(GRID.mean(0).flatten().tolist())
    assert data["grid"][1] == pytest.approx(GRID.amin(0).flatten().tolist())
    assert data["baselines"]["scratch"][0] == pytest.approx([0.1, 0.2, 0.3])
    assert not re.search(r"\b(src|href)\s*=", out.data) and "fetch(" not in out.data
    with pytest.raises(ValueError, match=r"values must be \(S, A, B\)"):
        tl.widgets.grid_explorer(torch.zeros(2, 3), AXES)
    with pytest.raises(ValueError, match="2 x 3 labels but values has a 3 x 3 grid"):
        tl.widgets.grid_explorer(torch.zeros(2, 3, 3), AXES)
    with pytest.raises(ValueError, match=r"baseline 'b' must be \(S, 3\)"):
        tl.widgets.grid_explorer(GRID, AXES, baselines={"b": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="finite"):
        tl.widgets.grid_explorer(GRID * float("nan"), AXES)
    with pytest.raises(ValueError, match="two .name, labels. pairs"):
        tl.widgets.grid_explorer(GRID, AXES[:1])


def test_grid_explorer_redraws_for_the_slider_and_the_axis_in_the_browser(chromium):
    out = tl.widgets.grid_explorer(GRID, AXES, baselines={"scratch": torch.zeros(2, 3)}, element_id="gx2")
    first, second = in_browser(chromium, out.data, """
      var root = document.getElementById("gx2"), s = root.querySelector(".tlbook-slider");
      s.value = 2; s.dispatchEvent(new Event("input"));
      var first = Array.from(root.querySelectorAll("circle.tlbook-point")).map(function (c) { return c.getAttribute("data-mean"); });
      var x = root.querySelector(".tlbook-xaxis"); x.value = "1"; x.dispatchEvent(new Event("change"));
      var second = Array.from(root.querySelectorAll("circle.tlbook-point")).map(function (c) { return c.getAttribute("data-mean"); });
      var result = [first, second];""")
    means = GRID.mean(0)                                   # (depth, k)
    assert [float(v) for v in first] == pytest.approx(means[:, 2].tolist(), abs=1e-5)   # k = 100, x = depth
    # x axis now k; the slider (over depth, max 1) was clamped from 2 to the last depth
    assert [float(v) for v in second] == pytest.approx(means[1].tolist(), abs=1e-5)


# --- bad input: each error names the argument -------------------------------------------------------

NAN, INF = float("nan"), float("inf")
SLIDER = widgets.IntSlider(value=1, min=0, max=3)


@pytest.mark.parametrize("kwargs,error,names", [
    (dict(logits=[[1.0, NAN]]), ValueError, "logits must be finite"),
    (dict(logits=[[INF, 0.0], [0.0, 1.0]]), ValueError, "logits must be finite"),
    (dict(logits=[[-INF, 0.0]]), ValueError, "logits must be finite"),
    (dict(logits="4 1 -2"), TypeError, "logits must be numbers"),
    (dict(logits=LOGITS, images=torch.full((2, 1, 3, 3), NAN)), ValueError, "images must be finite"),
    (dict(logits=LOGITS, start=NAN), ValueError, "start"),
    (dict(logits=LOGITS, start="hot"), TypeError, "start"),
    (dict(logits=LOGITS, temperatures=(NAN, 5)), ValueError, "temperatures"),
    (dict(logits=LOGITS, temperatures=3), TypeError, "temperatures"),
])
def test_bad_input_to_softmax_explorer(kwargs, error, names):
    with pytest.raises(error) as err:
        tl.widgets.softmax_explorer(**kwargs)
    assert names in str(err.value)


@pytest.mark.parametrize("kwargs,error,names", [
    (dict(values=GRID.masked_fill(GRID > 0.7, NAN)), ValueError, "values must be finite"),
    (dict(values=GRID * INF), ValueError, "values must be finite"),
    (dict(baselines={"scratch": torch.tensor([[0.1, NAN, 0.3]])}), ValueError, "baseline 'scratch' must be finite"),
    (dict(baselines=[0.1, 0.2, 0.3]), TypeError, "baselines must be a dict"),
    (dict(axes="depth"), ValueError, "axes must be two"),
])
def test_bad_input_to_grid_explorer(kwargs, error, names):
    args = dict(values=GRID, axes=AXES) | kwargs
    with pytest.raises(error) as err:
        tl.widgets.grid_explorer(**args)
    assert names in str(err.value)


@pytest.mark.parametrize("kwargs,error,names", [
    (dict(run=3), TypeError, "run must be a function"),
    (dict(controls=[SLIDER]), TypeError, "controls must be a dict"),
    (dict(controls=None), TypeError, "controls must be a dict"),
    (dict(controls=dict(x=3)), TypeError, "controls must be ipywidgets value widgets"),
    (dict(controls=dict(x=widgets.Button())), TypeError, "controls must be ipywidgets value widgets"),
    (dict(controls={"two words": SLIDER}), TypeError, "controls must be ipywidgets value widgets"),
    (dict(description=7), TypeError, "description must be a string"),
])
def test_bad_input_to_run_panel(kwargs, error, names):
    args = dict(run=lambda x: x, controls=dict(x=SLIDER)) | kwargs
    with pytest.raises(error) as err:
        tl.widgets.RunPanel(**args)
    assert names in str(err.value)
