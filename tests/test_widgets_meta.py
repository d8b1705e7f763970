"""Tests of Chapter 3's client-side panels (tlbook.widgets.meta.sinusoid_panel and episode_viewer): what they
embed, how they refuse bad input, and that a headless browser draws them with no kernel and no network."""
import base64
import io
import json
import re

import pytest
import torch

from conftest import dump_dom, in_browser

meta_widgets = pytest.importorskip("tlbook.widgets.meta", reason="tlbook.widgets is not a package yet")
sinusoid_panel = meta_widgets.sinusoid_panel
episode_viewer = meta_widgets.episode_viewer

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


# The episode viewer: E=3 episodes of 5-way 1-shot, 4 queries each, two methods.
GEN = torch.Generator().manual_seed(0)
SHOTS = torch.rand(3, 5, 1, 8, 8, generator=GEN)
QUERIES = torch.rand(3, 4, 8, 8, generator=GEN)
QUERY_LABELS = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1], [2, 2, 2, 2]])
PREDS = {"protonet": torch.tensor([[0, 1, 2, 0], [4, 3, 0, 1], [1, 1, 1, 2]]), "pretrained": torch.zeros(3, 4, dtype=torch.long)}
PNG = "data:image/png;base64,"


def decode_png(uri: str):
    from PIL import Image

    assert uri.startswith(PNG)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(PNG):])))
    assert image.mode == "L", "an 8-bit greyscale PNG"
    return torch.tensor(list(image.tobytes()), dtype=torch.int64).reshape(image.height, image.width)


def test_png_data_uri_decodes_to_the_same_grey_levels():
    pytest.importorskip("PIL")
    image = torch.rand(7, 11, generator=GEN, dtype=torch.float64)
    image[0, :4] = torch.tensor([0.0, 1.0, 0.5 / 255, 254.5 / 255])  # the ends and two rounding halves
    expected = torch.round(image * 255).long()                           # round half to even, like the widget
    assert torch.equal(decode_png(meta_widgets._png_data_uri(image)), expected)
    assert torch.equal(decode_png(meta_widgets._png_data_uri(torch.ones(1, 1))), torch.tensor([[255]]))


def test_episode_viewer_embeds_the_episodes_as_png_and_needs_no_network():
    pytest.importorskip("PIL")
    text = episode_viewer(SHOTS, QUERIES, QUERY_LABELS, PREDS, element_id="ev1", title="</script>t").data
    data = payload(text, "ev1")
    assert data["episode_names"] == ["test episode 0", "test episode 1", "test episode 2"]
    assert data["support_labels"] == [[0, 1, 2, 3, 4]] * 3 and data["query_labels"] == QUERY_LABELS.tolist()
    assert list(data["predictions"]) == ["protonet", "pretrained"] and data["predictions"]["protonet"] == PREDS["protonet"].tolist()
    assert [len(e) for e in data["support_images"]] == [5] * 3 and [len(e) for e in data["query_images"]] == [4] * 3
    assert torch.equal(decode_png(data["support_images"][1][2]), torch.round(SHOTS[1, 2, 0].double() * 255).long())
    assert torch.equal(decode_png(data["query_images"][2][3]), torch.round(QUERIES[2, 3].double() * 255).long())
    assert "</script>t" not in text.split("<script")[0], "the title must be escaped"
    # Every image is inside the page: no src/href but data URIs, no fetch, no URL.
    assert all(v.startswith(PNG) for v in re.findall(r"\b(?:src|href)\s*=\s*[\"']?([^\s\"'>]+)", text))
    assert "fetch(" not in text and not re.search(r"https?://", text)


def test_episode_viewer_stays_small_for_a_chapter_sized_set_of_episodes():
    # 20 episodes of 5-way 1-shot with 15 queries at 28 x 28, four methods, images of sparse strokes like Omniglot's.
    # (Uniform noise does not compress: the same call with torch.rand images is about 490 KB.)
    g = torch.Generator().manual_seed(1)
    shots, queries = ((torch.rand(20, n, 1, 28, 28, generator=g) < 0.1).float() for n in (5, 15))
    labels = torch.randint(0, 5, (20, 15), generator=g)
    preds = {m: torch.randint(0, 5, (20, 15), generator=g) for m in ("a", "b", "c", "d")}
    text = episode_viewer(shots, queries, labels, preds, element_id="ev2").data
    assert len(text) < 150_000, f"{len(text)} characters"   # about 103 KB


@pytest.mark.parametrize("kwargs, message", [
    (dict(support_images=torch.zeros(3, 5, 8)), r"support_images must be \(episodes, n, H, W\).*got shape \(3, 5, 8\)"),
    (dict(query_images=torch.zeros(2, 4, 8, 8)), r"query_images must be \(episodes=3, queries, 8, 8\).*got \(2, 4, 8, 8\)"),
    (dict(query_images=torch.zeros(3, 4, 8, 9)), r"query_images must be .*got \(3, 4, 8, 9\)"),
    (dict(query_labels=torch.zeros(3, 5, dtype=torch.long)), r"query_labels must have shape .* \(3, 4\) .*got \(3, 5\)"),
    (dict(query_labels=QUERY_LABELS + 1), r"query_labels must be class indices in \[0, 5\).*pass support_labels"),
    (dict(query_labels=QUERY_LABELS.float()), "query_labels must be integer class indices, got dtype torch.float32"),
    (dict(query_labels=[[0.5] * 4] * 3), "query_labels must be integer class indices"),
    (dict(predictions={}), "predictions must be a non-empty dict"),
    (dict(predictions=[0, 1]), "predictions must be a non-empty dict"),
    (dict(predictions={"a": -QUERY_LABELS}), r"predictions\['a'\] must be class indices in \[0, 5\)"),
    (dict(predictions={"a": torch.zeros(3, 3, dtype=torch.long)}), r"predictions\['a'\] must have shape .*got \(3, 3\)"),
    (dict(support_images=SHOTS * 2), r"support_images must be in \[0, 1\]; pass them as displayed"),
    (dict(query_images=QUERIES - 0.5), r"query_images must be in \[0, 1\]; pass them as displayed"),
    (dict(query_images=QUERIES.clone().index_put_((torch.tensor(0),), torch.tensor(float("nan")))),
     r"images must be in \[0, 1\]; pass them as displayed"),
    (dict(episode_names=["one", "two"]), "episode_names must name each of the 3 episodes, got 2"),
    (dict(support_labels=torch.zeros(3, 4, dtype=torch.long)), r"support_labels must have shape .*\(3, 5\)"),
    (dict(support_labels=torch.tensor([[0, 0, 1, 1, 3]] * 3)), "episode 0 lacks some of the classes 0..3"),
])
def test_episode_viewer_refuses_bad_input_with_a_clear_message(kwargs, message):
    args = dict(support_images=SHOTS, query_images=QUERIES, query_labels=QUERY_LABELS, predictions=PREDS) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        episode_viewer(**args)


def test_episode_viewer_takes_several_shots_with_support_labels():
    shots = torch.tensor([[0, 1, 2, 3, 4]] * 3).repeat_interleave(2, 1)   # 5-way 2-shot: (3, 10)
    text = episode_viewer(SHOTS.repeat_interleave(2, 1), QUERIES, QUERY_LABELS, PREDS, element_id="ev3", support_labels=shots).data
    data = payload(text, "ev3")
    assert data["support_labels"] == shots.tolist() and len(data["support_images"][0]) == 10


def test_episode_viewer_draws_and_follows_the_selectors_in_the_browser(chromium):
    text = episode_viewer(SHOTS, QUERIES, QUERY_LABELS, PREDS, element_id="ev4", title="episodes").data
    dom = dump_dom(chromium, text)
    assert dom.count("<img") == 5 + 4 and dom.count("<option") == 3 + 2
    assert dom.count('class="query right"') == 3 and dom.count('class="query wrong"') == 1
    right = {m: (p == QUERY_LABELS).sum(1).tolist() for m, p in PREDS.items()}   # per episode
    assert right == {"protonet": [3, 3, 1], "pretrained": [1, 1, 0]}
    assert "protonet: 3 of 4 right (75%)" in dom and "pretrained 1/4 (25%)" in dom and "class 4" in dom
    assert "pred 0 \u00b7 true 3" in dom
    # The browser decodes every PNG (the load event waits for the images the panel made while the page was parsed).
    decoded = dump_dom(chromium, text + """<script>window.addEventListener("load", function () {
      var p = document.createElement("pre"); p.id = "decoded"; document.body.appendChild(p);
      p.textContent = Array.from(document.querySelectorAll("#ev4 img")).filter(function (i) { return i.naturalWidth === 8; }).length; });</script>""")
    assert '<pre id="decoded">9</pre>' in decoded
    shown = in_browser(chromium, text, """
      var root = document.getElementById("ev4"), e = root.querySelector(".episode"), m = root.querySelector(".method");
      var read = function () { return [root.querySelector(".score").textContent, root.querySelectorAll(".query.wrong").length,
        Array.from(root.querySelectorAll("img")).every(function (i) { return i.getAttribute("src").indexOf("data:image/png;base64,") === 0; })]; };
      e.value = 2; e.dispatchEvent(new Event("change")); var first = read();
      m.value = 1; m.dispatchEvent(new Event("change"));
      var result = [first, read(), root.querySelector(".all-methods").textContent];""")
    assert shown[0] == ["protonet: 1 of 4 right (25%)", 3, True]
    assert shown[1] == ["pretrained: 0 of 4 right (0%)", 4, True]
    assert shown[2] == "on this episode: protonet 1/4 (25%) \u00b7 pretrained 0/4 (0%)"
