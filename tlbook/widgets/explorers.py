"""Client-side explorers: plain HTML with inline JavaScript over embedded data; they work in the static book."""
from __future__ import annotations

import math
import uuid

import torch
from IPython.display import HTML

from ..checks import real_number
from ._html import _numbers, _render

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
    z = _numbers(logits, "logits")
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with N >= 1 and K >= 2, got shape {tuple(z.shape)}.")
    n, k = z.shape
    titles = [f"example {i}" for i in range(n)] if titles is None else [str(t) for t in titles]
    class_names = [str(c) for c in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(titles) != n:
        raise ValueError(f"titles must name the {n} examples (one per row of logits), got {len(titles)}.")
    if len(class_names) != k:
        raise ValueError(f"class_names must name the {k} classes (one per column of logits), got {len(class_names)}.")
    if not isinstance(temperatures, (list, tuple)) or len(temperatures) != 2:
        raise TypeError(f"temperatures must be a pair (T_min, T_max) with 0 < T_min < T_max, got {temperatures!r}.")
    t_min, t_max = (real_number(t, "temperatures") for t in temperatures)
    if not 0 < t_min < t_max:
        raise ValueError(f"temperatures must be (T_min, T_max) with 0 < T_min < T_max, got {temperatures}.")
    start = real_number(start, "start")
    if not t_min <= start <= t_max:
        raise ValueError(f"start={start} must lie in the slider's range [{t_min}, {t_max}].")
    pixels = None
    if images is not None:
        x = _numbers(images, "images").float()
        if x.ndim != 4 or x.shape[0] != n or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, C, H, W) with N = {n} and C in (1, 3), got shape {tuple(x.shape)}.")
        # uint8 grey levels, channels last: the browser's ImageData wants RGBA bytes per pixel.
        values = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(n, -1).tolist()
        pixels = {"height": x.shape[2], "width": x.shape[3], "channels": x.shape[1], "values": values}
    data = {
        "logits": [[round(v, 5) for v in row] for row in z.tolist()],
        "titles": titles,
        "classes": class_names,
        "logT": [math.log(t_min), math.log(t_max), math.log(start)],
        "images": pixels,
    }
    return _render(_EXPLORER_TEMPLATE, data, element_id or f"tlbook-softmax-{uuid.uuid4().hex[:10]}")


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
{{SCRIPT_HEAD}}
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


def grid_explorer(
    values,
    axes,
    baselines: dict | None = None,
    value_name: str = "accuracy",
    series_name: str = "result",
    title: str | None = None,
    element_id: str | None = None,
) -> HTML:
    """Results on a grid of two settings, explored in the browser: one setting on the x axis, a slider for the other.

    The reader chooses which setting is the x axis; a slider picks a value of the other. The chart
    shows the mean over repeats with min-max whiskers, and a table below it gives the same numbers.
    The y axis is fixed over the whole grid, so moving the slider compares like with like. Works in
    the static rendered book (the results are embedded; plain JavaScript, no network).

    Args:
        values: ``(S, A, B)`` array-like: ``S`` repeats (seeds) of a result at every pair of the
            first setting's ``A`` values and the second setting's ``B`` values.
        axes: ``[(name_a, labels_a), (name_b, labels_b)]``: the two settings and their value labels.
        baselines: optional ``{name: (S, B) array-like}``: reference results that depend on the second
            setting only (e.g. training from scratch at each label count); drawn dashed.
        value_name: what the values are (the y axis label).
        series_name: the legend's name for ``values`` (baselines are named by their keys).
        title: a heading above the controls.
        element_id: id of the outer ``<div>`` (default: a random one).

    Returns:
        An ``IPython.display.HTML``.
    """
    v = _numbers(values, "values")
    if v.ndim != 3 or min(v.shape) < 1:
        raise ValueError(f"values must be (S, A, B): repeats x first setting x second setting, got shape {tuple(v.shape)}.")
    if not isinstance(axes, (list, tuple)) or len(axes) != 2 or any(not isinstance(a, (list, tuple)) or len(a) != 2 for a in axes):
        raise ValueError("axes must be two (name, labels) pairs, e.g. [('freeze depth', [0, 1, 2]), ('labels per class', [1, 10])].")
    (name_a, labels_a), (name_b, labels_b) = axes
    labels_a, labels_b = [str(x) for x in labels_a], [str(x) for x in labels_b]
    if (len(labels_a), len(labels_b)) != tuple(v.shape[1:]):
        raise ValueError(f"axes have {len(labels_a)} x {len(labels_b)} labels but values has a {v.shape[1]} x {v.shape[2]} grid.")
    base = {}
    if baselines is not None and not isinstance(baselines, dict):
        raise TypeError(f"baselines must be a dict {{name: (S, B) values}}, got {type(baselines).__name__}.")
    for name, b in (baselines or {}).items():
        b = _numbers(b, f"baseline {name!r}")
        if b.ndim != 2 or b.shape[1] != v.shape[2]:
            raise ValueError(f"baseline {name!r} must be (S, {v.shape[2]}) (repeats x {name_b}), got shape {tuple(b.shape)}.")
        base[str(name)] = b

    def summary(t):  # (S, ...) -> mean, min, max lists; not rounded here, so the page shows what Python prints
        return [t.mean(0).flatten().tolist(), t.amin(0).flatten().tolist(), t.amax(0).flatten().tolist()]

    data = {
        "axes": [[str(name_a), labels_a], [str(name_b), labels_b]],
        "grid": summary(v),             # flattened (A, B), row-major
        "repeats": v.shape[0],
        "baselines": {name: summary(b) for name, b in base.items()},
        "valueName": value_name,
        "seriesName": series_name,
        "title": title or "",
    }
    return _render(_GRID_TEMPLATE, data, element_id or f"tlbook-grid-{uuid.uuid4().hex[:10]}")


_GRID_TEMPLATE = """
<div id="{{ID}}" class="tlbook-grid" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-title" style="font-weight: bold; margin-bottom: 0.3em;"></div>
  <div style="display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>x axis <select class="tlbook-xaxis"></select></label>
    <label><span class="tlbook-slider-name"></span> <input class="tlbook-slider" type="range" min="0" step="1" style="width: 12em; vertical-align: middle;"></label>
    <span class="tlbook-slider-value" style="font-family: monospace; font-weight: bold;"></span>
  </div>
  <svg class="tlbook-chart" width="460" height="250" style="overflow: visible;"></svg>
  <div style="overflow-x: auto;"><table class="tlbook-table" style="font-family: monospace; font-size: 12px; border-collapse: collapse; margin-top: 0.3em;"></table></div>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var xaxis = root.querySelector(".tlbook-xaxis"), slider = root.querySelector(".tlbook-slider");
  var svg = root.querySelector(".tlbook-chart"), table = root.querySelector(".tlbook-table");
  var NS = "http://www.w3.org/2000/svg", L = 52, R = 150, T = 10, B = 40, W = 460, H = 250;
  var NB = data.axes[1][1].length, COLORS = ["#d65f5f", "#6acc64", "#956cb4", "#8c613c"];
  root.querySelector(".tlbook-title").textContent = data.title;

  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    for (var a in attrs) node.setAttribute(a, attrs[a]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  var all = data.grid[1].concat(data.grid[2]);
  Object.keys(data.baselines).forEach(function (n) { all = all.concat(data.baselines[n][1], data.baselines[n][2]); });
  var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), pad = 0.05 * (hi - lo || 1);
  lo -= pad; hi += pad;
  function y(v) { return T + (H - T - B) * (hi - v) / (hi - lo); }
  data.axes.forEach(function (axis, i) {
    var o = document.createElement("option"); o.value = i; o.textContent = axis[0]; xaxis.appendChild(o);
  });

  // The series at the slider's position: {mean, min, max} per x value.
  function series(onX, at) {
    var pick = function (s) {
      return onX === 0 ? data.axes[0][1].map(function (_, a) { return s[a * NB + at]; })
                       : data.axes[1][1].map(function (_, b) { return s[at * NB + b]; });
    };
    return {mean: pick(data.grid[0]), min: pick(data.grid[1]), max: pick(data.grid[2])};
  }
  function setup() {
    var onX = +xaxis.value, other = 1 - onX;
    slider.max = data.axes[other][1].length - 1;
    if (+slider.value > +slider.max) slider.value = slider.max;
    root.querySelector(".tlbook-slider-name").textContent = data.axes[other][0];
  }
  function draw() {
    var onX = +xaxis.value, other = 1 - onX, at = +slider.value, labels = data.axes[onX][1], n = labels.length;
    root.querySelector(".tlbook-slider-value").textContent = data.axes[other][0] + " = " + data.axes[other][1][at];
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    function x(i) { return L + (n === 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); }
    for (var t = 0; t <= 4; t++) {   // y grid and ticks
      var v = lo + (hi - lo) * t / 4;
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#ddd"}));
      svg.appendChild(el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "currentColor"}, v.toFixed(3)));
    }
    labels.forEach(function (lab, i) {
      svg.appendChild(el("text", {x: x(i), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, lab));
    });
    svg.appendChild(el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12, fill: "currentColor"}, data.axes[onX][0]));
    svg.appendChild(el("text", {x: 12, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12, fill: "currentColor",
                                transform: "rotate(-90 12 " + (T + H - B) / 2 + ")"}, data.valueName));
    var rows = [[data.axes[onX][0]].concat(labels)];
    function line(s, color, dashed, name, cls) {
      var pts = s.mean.map(function (m, i) { return x(i) + "," + y(m); }).join(" ");
      svg.appendChild(el("polyline", {points: pts, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dashed ? "5,4" : "none"}));
      s.mean.forEach(function (m, i) {
        svg.appendChild(el("line", {x1: x(i), x2: x(i), y1: y(s.min[i]), y2: y(s.max[i]), stroke: color}));
        svg.appendChild(el("circle", {cx: x(i), cy: y(m), r: 3.5, fill: color, "class": cls, "data-mean": m.toFixed(5)}));
      });
      var ly = T + 14 + 16 * (rows.length - 1);
      svg.appendChild(el("line", {x1: W - R + 12, x2: W - R + 30, y1: ly - 4, y2: ly - 4, stroke: color, "stroke-width": 2, "stroke-dasharray": dashed ? "5,4" : "none"}));
      svg.appendChild(el("text", {x: W - R + 34, y: ly, "font-size": 11, fill: "currentColor"}, name));
      rows.push([name].concat(s.mean.map(function (m, i) { return m.toFixed(3) + " [" + s.min[i].toFixed(3) + ", " + s.max[i].toFixed(3) + "]"; })));
    }
    line(series(onX, at), "#4878d0", false, data.seriesName, "tlbook-point");
    Object.keys(data.baselines).forEach(function (name, j) {
      var b = data.baselines[name], s;
      if (onX === 1) s = {mean: b[0], min: b[1], max: b[2]};
      else s = {mean: labels.map(function () { return b[0][at]; }), min: labels.map(function () { return b[1][at]; }),
                max: labels.map(function () { return b[2][at]; })};
      line(s, COLORS[j % COLORS.length], true, name, "tlbook-baseline");
    });
    table.innerHTML = "";
    rows.forEach(function (r, i) {
      var tr = document.createElement("tr");
      r.forEach(function (c) {
        var td = document.createElement(i === 0 ? "th" : "td");
        td.textContent = c; td.style.padding = "1px 8px"; td.style.whiteSpace = "nowrap"; td.style.textAlign = "right"; tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    var cap = document.createElement("caption");
    cap.textContent = data.valueName + ", mean [min, max] over " + data.repeats + " repeat(s), " + data.axes[other][0] + " = " + data.axes[other][1][at];
    cap.style.captionSide = "bottom"; cap.style.textAlign = "left"; table.appendChild(cap);
  }
  xaxis.addEventListener("change", function () { setup(); draw(); });
  slider.addEventListener("input", draw);
  setup(); slider.value = 0; draw();
})();
</script>
"""
