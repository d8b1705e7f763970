"""Client-side panels of Chapter 4 (model fusion): plain HTML and JavaScript with the data embedded,
so they work in the static book, with no kernel and no network.

* :func:`interpolation_explorer`: a slider ``alpha`` along precomputed interpolation curves
  (loss and accuracy of ``(1 - alpha) theta_A + alpha theta_B`` for several pairs of models).
* :func:`ensemble_builder`: tick members of an ensemble; the page averages their stored
  probabilities and computes accuracy, mean pairwise disagreement and expected calibration error.
"""
from __future__ import annotations

import base64
import uuid

import torch
from IPython.display import HTML

from ._html import _numbers, _render


def interpolation_explorer(alphas, curves: dict, title: str | None = None, element_id: str | None = None) -> HTML:
    """A slider over ``alpha`` with the loss and accuracy curves of linear interpolations between models.

    Args:
        alphas: ``(P,)`` increasing values in ``[0, 1]`` at which the curves were measured, ``P >= 2``.
        curves: ``{name: {"accuracy": (P,), "loss": (P,)}}``, one entry per pair of models
            (e.g. same init, different init, weight-matched); at least one.
        title: a line above the chart.
        element_id: id of the outer ``<div>`` (default: a random one).

    Returns:
        An ``IPython.display.HTML``: a metric selector, the chart with a marker at the chosen
        ``alpha`` and a readout of every curve's value there.
    """
    a = _numbers(alphas, "alphas")
    if a.ndim != 1 or len(a) < 2 or bool((a < 0).any()) or bool((a > 1).any()) or bool((a[1:] <= a[:-1]).any()):
        raise ValueError(f"alphas must be (P,) increasing values in [0, 1] with P >= 2, got {a.tolist()[:8]}.")
    if not isinstance(curves, dict) or not curves:
        raise TypeError(f"curves must be a non-empty dict {{name: {{'accuracy': (P,), 'loss': (P,)}}}}, got {type(curves).__name__}.")
    series = {}
    for name, curve in curves.items():
        if not isinstance(curve, dict) or set(curve) != {"accuracy", "loss"}:
            raise ValueError(f"curves[{name!r}] must be a dict with exactly the keys 'accuracy' and 'loss', "
                             f"got {sorted(curve) if isinstance(curve, dict) else type(curve).__name__}.")
        values = {}
        for metric in ("accuracy", "loss"):
            v = _numbers(curve[metric], f"curves[{name!r}][{metric!r}]")
            if tuple(v.shape) != (len(a),):
                raise ValueError(f"curves[{name!r}][{metric!r}] must have one value per alpha ({len(a)}), "
                                 f"got shape {tuple(v.shape)}.")
            values[metric] = [round(x, 5) for x in v.tolist()]
        series[str(name)] = values
    data = {"alphas": [round(x, 5) for x in a.tolist()], "curves": series, "title": title or ""}
    return _render(_INTERPOLATION_TEMPLATE, data, element_id or f"tlbook-interp-{uuid.uuid4().hex[:10]}")


_INTERPOLATION_TEMPLATE = """
<div id="{{ID}}" class="tlbook-interp" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-title" style="font-weight: bold; margin-bottom: 0.3em;"></div>
  <div style="display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>show <select class="tlbook-metric"><option value="accuracy">accuracy</option><option value="loss">loss</option></select></label>
    <label>&alpha; <input class="tlbook-alpha" type="range" min="0" step="1" style="width: 16em; vertical-align: middle;"></label>
    <span class="tlbook-alpha-value" style="font-family: monospace;"></span>
  </div>
  <svg class="tlbook-chart" width="460" height="230" style="overflow: visible;"></svg>
  <table class="tlbook-readout" style="border-collapse: collapse; margin-top: 0.4em; font-family: monospace;"></table>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var NS = "http://www.w3.org/2000/svg", COLORS = ["#2ca02c", "#d62728", "#1f77b4", "#9467bd", "#ff7f0e"];
  var metric = root.querySelector(".tlbook-metric"), slider = root.querySelector(".tlbook-alpha");
  var svg = root.querySelector(".tlbook-chart"), table = root.querySelector(".tlbook-readout");
  var label = root.querySelector(".tlbook-alpha-value"), names = Object.keys(data.curves);
  var W = 400, H = 180, L = 50, T = 10;
  root.querySelector(".tlbook-title").textContent = data.title;
  slider.max = data.alphas.length - 1; slider.value = Math.floor((data.alphas.length - 1) / 2);
  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    for (var a in attrs) node.setAttribute(a, attrs[a]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function draw() {
    var m = metric.value, i = +slider.value, alpha = data.alphas[i];
    var all = [].concat.apply([], names.map(function (n) { return data.curves[n][m]; }));
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (hi - lo < 1e-9) { hi = lo + 1; }
    var x = function (a) { return L + W * a; }, y = function (v) { return T + H * (1 - (v - lo) / (hi - lo)); };
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.appendChild(el("line", {x1: L, x2: L + W, y1: T + H, y2: T + H, stroke: "currentColor"}));
    svg.appendChild(el("line", {x1: L, x2: L, y1: T, y2: T + H, stroke: "currentColor"}));
    [lo, (lo + hi) / 2, hi].forEach(function (v) {
      svg.appendChild(el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "currentColor"}, v.toFixed(3)));
    });
    [0, 0.5, 1].forEach(function (a) {
      svg.appendChild(el("text", {x: x(a), y: T + H + 14, "text-anchor": "middle", "font-size": 10, fill: "currentColor"}, a.toFixed(1)));
    });
    svg.appendChild(el("text", {x: L + W / 2, y: T + H + 28, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, "alpha: (1 - alpha) A + alpha B"));
    svg.appendChild(el("line", {x1: x(alpha), x2: x(alpha), y1: T, y2: T + H, stroke: "#888", "stroke-dasharray": "4 3"}));
    names.forEach(function (n, k) {
      var v = data.curves[n][m];
      var pts = data.alphas.map(function (a, j) { return x(a).toFixed(1) + "," + y(v[j]).toFixed(1); }).join(" ");
      svg.appendChild(el("polyline", {points: pts, fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 2}));
      svg.appendChild(el("circle", {cx: x(alpha), cy: y(v[i]), r: 4, fill: COLORS[k % COLORS.length]}));
    });
    label.textContent = "alpha = " + alpha.toFixed(2);
    table.innerHTML = "";
    names.forEach(function (n, k) {
      var row = table.insertRow(), swatch = row.insertCell(), nameCell = row.insertCell(), acc = row.insertCell(), loss = row.insertCell();
      swatch.innerHTML = "<span style='display:inline-block;width:1.2em;height:0.3em;background:" + COLORS[k % COLORS.length] + "'></span>";
      nameCell.textContent = n; nameCell.style.paddingRight = "1em";
      acc.textContent = "accuracy " + data.curves[n].accuracy[i].toFixed(4); acc.className = "tlbook-acc"; acc.style.paddingRight = "1em";
      loss.textContent = "loss " + data.curves[n].loss[i].toFixed(3); loss.className = "tlbook-loss";
    });
  }
  metric.addEventListener("change", draw);
  slider.addEventListener("input", draw);
  draw();
})();
</script>
"""


def quantise_probabilities(probs) -> torch.Tensor:
    """``(M, N, K)`` probabilities as the builder stores them: ``round(255 p)`` as uint8 (what the page reads)."""
    return (_numbers(probs, "probs").clamp(0, 1) * 255).round().to(torch.uint8)


def ensemble_builder(probs, labels, names=None, start=None, bins: int = 15, element_id: str | None = None) -> HTML:
    """Tick members of an ensemble; the page averages their probabilities and reports accuracy,
    mean pairwise disagreement (the fraction of examples on which two members' top classes differ,
    averaged over pairs) and the expected calibration error (equal-width confidence bins, as
    :func:`tlbook.fusion.expected_calibration_error`).

    The probabilities are stored as ``round(255 p)`` bytes (base64) and each row renormalised in the
    page, so the numbers can differ from the full-precision ones in the third decimal.

    Args:
        probs: ``(M, N, K)`` probabilities of ``M`` members on ``N`` examples (rows sum to 1).
        labels: ``(N,)`` integer labels in ``[0, K)``.
        names: ``M`` member names (default ``'member i'``).
        start: indices of the members ticked at first (default: all).
        bins: confidence bins of the ECE, ``>= 1``.
        element_id: id of the outer ``<div>`` (default: a random one).
    """
    p = _numbers(probs, "probs")
    if p.ndim != 3 or min(p.shape) < 1 or p.shape[2] < 2:
        raise ValueError(f"probs must be (M, N, K) member probabilities with K >= 2, got shape {tuple(p.shape)}.")
    if bool((p < 0).any()) or bool(((p.sum(-1) - 1).abs() > 1e-3).any()):
        raise ValueError("probs must be probabilities (each row >= 0 and summing to 1); for logits pass logits.softmax(-1).")
    m, n, k = p.shape
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or tuple(labels.shape) != (n,):
        raise ValueError(f"labels must be an integer tensor of shape (N,) = ({n},), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}.")
    if bool(((labels < 0) | (labels >= k)).any()):
        raise ValueError(f"labels must be in [0, K) = [0, {k}).")
    names = [f"member {i}" for i in range(m)] if names is None else [str(x) for x in names]
    if len(names) != m:
        raise ValueError(f"names must name the {m} members, got {len(names)}.")
    start = list(range(m)) if start is None else [int(i) for i in start]
    if any(not 0 <= i < m for i in start):
        raise ValueError(f"start must be member indices in [0, {m}), got {start}.")
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1, got {bins!r}.")
    q = quantise_probabilities(p)
    data = {"m": m, "n": n, "k": k, "bins": bins, "names": names, "start": start,
            "labels": labels.cpu().tolist(), "probs": base64.b64encode(q.numpy().tobytes()).decode("ascii")}
    return _render(_BUILDER_TEMPLATE, data, element_id or f"tlbook-ensemble-{uuid.uuid4().hex[:10]}")


_BUILDER_TEMPLATE = """
<div id="{{ID}}" class="tlbook-ensemble" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-members" style="display: flex; flex-wrap: wrap; gap: 0.3em 1.2em; margin-bottom: 0.5em;"></div>
  <div style="margin-bottom: 0.4em;">
    <button class="tlbook-all" type="button">all</button> <button class="tlbook-none" type="button">none</button>
  </div>
  <div class="tlbook-result" style="font-family: monospace; font-size: 14px;"></div>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var M = data.m, N = data.n, K = data.k, B = data.bins;
  var raw = atob(data.probs), P = new Float64Array(M * N * K);
  for (var r = 0; r < M * N; r++) {            // bytes back to probabilities, each row renormalised
    var s = 0;
    for (var c = 0; c < K; c++) { P[r * K + c] = raw.charCodeAt(r * K + c); s += P[r * K + c]; }
    for (c = 0; c < K; c++) P[r * K + c] = s > 0 ? P[r * K + c] / s : 1 / K;
  }
  var top = new Int32Array(M * N);
  for (r = 0; r < M * N; r++) {
    var best = 0;
    for (c = 1; c < K; c++) if (P[r * K + c] > P[r * K + best]) best = c;
    top[r] = best;
  }
  var box = root.querySelector(".tlbook-members"), result = root.querySelector(".tlbook-result"), ticks = [];
  data.names.forEach(function (name, m) {
    var correct = 0;
    for (var i = 0; i < N; i++) if (top[m * N + i] === data.labels[i]) correct++;
    var lab = document.createElement("label"), tick = document.createElement("input");
    tick.type = "checkbox"; tick.checked = data.start.indexOf(m) >= 0; tick.className = "tlbook-tick";
    lab.appendChild(tick); lab.appendChild(document.createTextNode(" " + name + " (" + (correct / N).toFixed(3) + ")"));
    box.appendChild(lab); ticks.push(tick); tick.addEventListener("change", update);
  });
  root.querySelector(".tlbook-all").addEventListener("click", function () { ticks.forEach(function (t) { t.checked = true; }); update(); });
  root.querySelector(".tlbook-none").addEventListener("click", function () { ticks.forEach(function (t) { t.checked = false; }); update(); });
  function update() {
    var chosen = [];
    ticks.forEach(function (t, m) { if (t.checked) chosen.push(m); });
    if (chosen.length === 0) { result.textContent = "tick at least one member"; result.setAttribute("data-members", "0"); return; }
    var correct = 0, gap = new Float64Array(B), avg = new Float64Array(K);
    for (var i = 0; i < N; i++) {
      for (var c = 0; c < K; c++) avg[c] = 0;
      chosen.forEach(function (m) { for (var c = 0; c < K; c++) avg[c] += P[(m * N + i) * K + c] / chosen.length; });
      var best = 0;
      for (c = 1; c < K; c++) if (avg[c] > avg[best]) best = c;
      var ok = best === data.labels[i] ? 1 : 0, conf = avg[best];
      correct += ok;
      var b = Math.min(B, Math.max(1, Math.ceil(conf * B))) - 1;  // bin b: b/B < conf <= (b+1)/B
      gap[b] += ok - conf;
    }
    var ece = 0;
    for (var b = 0; b < B; b++) ece += Math.abs(gap[b]);
    ece /= N;
    var pairs = 0, differ = 0;
    for (var x = 0; x < chosen.length; x++) for (var y = x + 1; y < chosen.length; y++) {
      var d = 0;
      for (i = 0; i < N; i++) if (top[chosen[x] * N + i] !== top[chosen[y] * N + i]) d++;
      differ += d / N; pairs++;
    }
    var acc = correct / N, dis = pairs ? differ / pairs : 0;
    result.setAttribute("data-members", String(chosen.length));
    result.setAttribute("data-accuracy", acc.toFixed(4));
    result.setAttribute("data-disagreement", dis.toFixed(4));
    result.setAttribute("data-ece", ece.toFixed(4));
    result.textContent = chosen.length + " member(s): accuracy " + acc.toFixed(3) + " \\u00b7 disagreement " +
      (pairs ? dis.toFixed(3) : "n/a (one member)") + " \\u00b7 ECE " + ece.toFixed(3) + " (" + N + " test images)";
  }
  update();
})();
</script>
"""
