"""Interactive panels for the chapters, in two kinds.

* **Client-side** (:func:`softmax_explorer`): plain HTML with inline JavaScript and the data embedded as
  JSON. It computes in the reader's browser, so it works in the static rendered book with no kernel
  and no network (no CDN, no external library), as well as in Jupyter and on Colab.
* **Live** (:class:`RunPanel`): ipywidgets controls and a button that call a plain Python function.
  It needs a running kernel; the rendered book shows the output of the run stored with the notebook.
"""
from __future__ import annotations

import html
import json
import math
import uuid

import ipywidgets as widgets
import torch
from IPython.display import HTML


def softmax_explorer(
    logits,
    images=None,
    titles=None,
    class_names=None,
    temperatures=(0.5, 50.0),
    start: float = 1.0,
    element_id: str | None = None,
) -> HTML:
    """A temperature slider over ``softmax(z / T)`` of some logits, computed in the browser.

    The reader picks an example and moves a (logarithmic) slider for ``T``; the bars show
    ``softmax(z / T)`` for that example, with a tick at the ``T = 1`` probabilities, and a readout gives
    the entropy. Nothing is precomputed per ``T``: the logits are embedded and the page does the
    arithmetic, so every ``T`` in the range is exact.

    Args:
        logits: ``(N, K)`` array-like (tensor or nested lists), one row per example.
        images: optional ``(N, C, H, W)`` with ``C`` 1 or 3 and values in ``[0, 1]``, drawn beside the bars.
        titles: ``N`` names for the examples (default ``'example i'``).
        class_names: ``K`` bar labels (default ``'0'..'K-1'``).
        temperatures: ``(T_min, T_max)`` of the slider, ``0 < T_min < T_max``.
        start: the slider's first position, inside the range.
        element_id: id of the outer ``<div>`` (default: a random one, so several explorers can share a page).

    Returns:
        An ``IPython.display.HTML``; display it (or leave it as a cell's last value).
    """
    z = torch.as_tensor(logits, dtype=torch.float64).detach().cpu()
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with N >= 1 and K >= 2, got shape {tuple(z.shape)}.")
    n, k = z.shape
    titles = [f"example {i}" for i in range(n)] if titles is None else [str(t) for t in titles]
    class_names = [str(c) for c in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(titles) != n:
        raise ValueError(f"titles must name the {n} examples (one per row of logits), got {len(titles)}.")
    if len(class_names) != k:
        raise ValueError(f"class_names must name the {k} classes (one per column of logits), got {len(class_names)}.")
    t_min, t_max = (float(t) for t in temperatures)
    if not 0 < t_min < t_max:
        raise ValueError(f"temperatures must be (T_min, T_max) with 0 < T_min < T_max, got {temperatures}.")
    if not t_min <= start <= t_max:
        raise ValueError(f"start={start} must lie in the slider's range [{t_min}, {t_max}].")
    pixels = None
    if images is not None:
        x = torch.as_tensor(images, dtype=torch.float32).detach().cpu()
        if x.ndim != 4 or x.shape[0] != n or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, C, H, W) with N = {n} and C in (1, 3), got shape {tuple(x.shape)}.")
        # uint8 grey levels, channels last: the browser's ImageData wants RGBA bytes per pixel.
        pixels = {
            "height": x.shape[2],
            "width": x.shape[3],
            "channels": x.shape[1],
            "values": (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(n, -1).tolist(),
        }
    data = {
        "logits": [[round(v, 5) for v in row] for row in z.tolist()],
        "titles": titles,
        "classes": class_names,
        "logT": [math.log(t_min), math.log(t_max), math.log(start)],
        "images": pixels,
    }
    uid = element_id or f"tlbook-softmax-{uuid.uuid4().hex[:10]}"
    # "</" would end the <script> element early; "<\/" is the same JSON string.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return HTML(_EXPLORER_TEMPLATE.replace("{{ID}}", html.escape(uid, quote=True)).replace("{{DATA}}", payload))


_EXPLORER_TEMPLATE = """
<div id="{{ID}}" class="tlbook-softmax" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div style="display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>example <select class="tlbook-example"></select></label>
    <label>temperature T <input class="tlbook-t" type="range" step="any" style="width: 16em; vertical-align: middle;"></label>
    <span class="tlbook-readout" style="font-family: monospace;"></span>
  </div>
  <div style="display: flex; gap: 1em; align-items: flex-end;">
    <canvas class="tlbook-image" style="width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid #999; display: none;"></canvas>
    <svg class="tlbook-bars" height="170" style="overflow: visible;"></svg>
  </div>
  <noscript>This panel needs JavaScript.</noscript>
</div>
<script type="application/json" id="{{ID}}-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("{{ID}}");
  var data = JSON.parse(document.getElementById("{{ID}}-data").textContent);
  var select = root.querySelector(".tlbook-example"), slider = root.querySelector(".tlbook-t");
  var readout = root.querySelector(".tlbook-readout"), svg = root.querySelector(".tlbook-bars");
  var canvas = root.querySelector(".tlbook-image"), NS = "http://www.w3.org/2000/svg";
  var K = data.classes.length, W = 34, H = 130, TOP = 16;

  function softmax(z, T) {           // max subtracted first: exp never overflows, even at small T
    var m = Math.max.apply(null, z), e = z.map(function (v) { return Math.exp((v - m) / T); });
    var s = e.reduce(function (a, b) { return a + b; }, 0);
    return e.map(function (v) { return v / s; });
  }
  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    for (var a in attrs) node.setAttribute(a, attrs[a]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  data.titles.forEach(function (t, i) {
    var o = document.createElement("option"); o.value = i; o.textContent = t; select.appendChild(o);
  });
  slider.min = data.logT[0]; slider.max = data.logT[1]; slider.value = data.logT[2];
  svg.setAttribute("width", K * W);

  function drawImage(i) {
    if (!data.images) return;
    var im = data.images, px = im.values[i], ctx = canvas.getContext("2d");
    canvas.width = im.width; canvas.height = im.height; canvas.style.display = "block";
    var out = ctx.createImageData(im.width, im.height);
    for (var p = 0; p < im.width * im.height; p++) {
      for (var c = 0; c < 3; c++) out.data[4 * p + c] = px[p * im.channels + (im.channels === 3 ? c : 0)];
      out.data[4 * p + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  function draw() {
    var i = +select.value, T = Math.exp(+slider.value), z = data.logits[i];
    var p = softmax(z, T), p1 = softmax(z, 1);
    var entropy = -p.reduce(function (a, q) { return a + (q > 0 ? q * Math.log2(q) : 0); }, 0);
    readout.textContent = "T = " + T.toFixed(2) + " \u00b7 entropy " + entropy.toFixed(2) + " bits (uniform: " + Math.log2(K).toFixed(2) + ")";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    for (var k = 0; k < K; k++) {
      var h = H * p[k], x = k * W;
      svg.appendChild(el("rect", {x: x + 4, y: TOP + H - h, width: W - 8, height: h, fill: "#4878d0", "data-p": p[k].toFixed(4)}));
      svg.appendChild(el("line", {x1: x + 2, x2: x + W - 2, y1: TOP + H - H * p1[k], y2: TOP + H - H * p1[k], stroke: "#d65f5f", "stroke-width": 2}));
      svg.appendChild(el("text", {x: x + W / 2, y: TOP + H - h - 3, "text-anchor": "middle", "font-size": 10, fill: "currentColor"}, p[k].toFixed(2)));
      svg.appendChild(el("text", {x: x + W / 2, y: TOP + H + 14, "text-anchor": "middle", "font-size": 12, fill: "currentColor"}, data.classes[k]));
    }
    svg.appendChild(el("line", {x1: 0, x2: K * W, y1: TOP + H, y2: TOP + H, stroke: "currentColor"}));
    svg.appendChild(el("text", {x: 0, y: 8, "font-size": 10, fill: "#d65f5f"}, "red tick: softmax(z) at T = 1"));
    drawImage(i);
  }
  select.addEventListener("change", draw);
  slider.addEventListener("input", draw);
  draw();
})();
</script>
"""


class RunPanel(widgets.VBox):
    """Controls, a button and an output area that call a plain Python function: ``run(**values)``.

    ``controls`` maps the keyword arguments of ``run`` to ipywidgets controls (sliders, dropdowns);
    the button calls ``run`` with their current values, inside the panel's output area, so what it
    prints, plots or shows as a progress bar appears under the button. The result of each run is
    appended to ``panel.results``. Nothing here needs a browser: a test sets the controls' ``value``
    and calls ``panel.button.click()``.

    Args:
        run: ``run(**values) -> result``; any return value (e.g. a dict of numbers).
        controls: ``{name: widget}``, one control per keyword argument of ``run``.
        description: the button's label.
    """

    def __init__(self, run, controls: dict, description: str = "Run"):
        if not callable(run):
            raise TypeError(f"run must be a function run(**values), got {type(run).__name__}.")
        bad = [name for name, w in controls.items() if not isinstance(w, widgets.ValueWidget)]
        if bad:
            raise TypeError(f"controls must be ipywidgets value widgets (sliders, dropdowns, ...); not: {bad}.")
        self.run = run
        self.controls = dict(controls)
        self.button = widgets.Button(description=description, button_style="primary", icon="play")
        self.output = widgets.Output()
        self.results = []
        super().__init__([widgets.HBox([*self.controls.values(), self.button], layout=widgets.Layout(flex_flow="row wrap")),
                          self.output])
        self.button.on_click(self._on_click)

    def values(self) -> dict:
        """The controls' current values, ``{name: value}``."""
        return {name: w.value for name, w in self.controls.items()}

    def _on_click(self, _button=None):
        # Disabled while running, so a second click cannot start a run on top of this one.
        self.button.disabled = True
        try:
            with self.output:
                self.output.clear_output(wait=True)
                self.results.append(self.run(**self.values()))
        finally:
            self.button.disabled = False
