"""Client-side panel of Chapter 6 (domain adaptation): feature projections through training.

Plain HTML with inline JavaScript and the points embedded as JSON, like the other client-side panels:
it works in the static rendered book, in Jupyter and on Colab, with no kernel and no network.
"""
from __future__ import annotations

import uuid

from ._html import _numbers, _render


def projection_explorer(runs: dict, domains, steps, domain_names=("source", "target"), title: str | None = None,
                        element_id: str | None = None):
    """2-D projections of source and target features at each checkpoint of one or more runs.

    A menu picks the run, a slider the checkpoint; each point is one example, coloured by its domain.
    Every run keeps one pair of axes over all its checkpoints, so movement between frames is real.

    Args:
        runs: ``{name: (T, N, 2) coordinates}``: ``T`` checkpoints of ``N`` projected examples (e.g. PCA
            of the features at each checkpoint), the same ``T`` and ``N`` for every run.
        domains: ``(N,)`` 0 for source and 1 for target examples.
        steps: ``T`` labels of the checkpoints (e.g. training steps).
        domain_names: the legend's names of domains 0 and 1.
        title: a heading above the controls.
        element_id: id of the outer ``<div>`` (default: a random one).

    Returns:
        An ``IPython.display.HTML``.
    """
    if not isinstance(runs, dict) or not runs:
        raise TypeError(f"runs must be a non-empty dict {{name: (T, N, 2) coordinates}}, got {type(runs).__name__}.")
    coords = {str(k): _numbers(v, f"runs[{k!r}]") for k, v in runs.items()}
    shapes = {tuple(c.shape) for c in coords.values()}
    first = next(iter(coords.values()))
    if len(shapes) != 1 or first.ndim != 3 or first.shape[2] != 2 or min(first.shape) < 1:
        raise ValueError(f"every run must be (T, N, 2) with the same T and N, got shapes {sorted(shapes)}.")
    t, n, _ = first.shape
    d = _numbers(domains, "domains")
    if tuple(d.shape) != (n,) or not bool(((d == 0) | (d == 1)).all()):
        raise ValueError(f"domains must be (N,) = ({n},) zeros (source) and ones (target), got shape {tuple(d.shape)}.")
    steps = [str(s) for s in steps]
    if len(steps) != t:
        raise ValueError(f"steps must name the {t} checkpoints, got {len(steps)} labels.")
    if len(domain_names) != 2:
        raise ValueError(f"domain_names must be two names (source, target), got {domain_names!r}.")

    def scaled(c):  # to [0, 1] per run, over all its checkpoints: one pair of axes per run
        lo, hi = c.amin((0, 1)), c.amax((0, 1))
        return ((c - lo) / (hi - lo).clamp_min(1e-12)).mul(1000).round().int().tolist()

    data = {"runs": {k: scaled(c) for k, c in coords.items()}, "domains": d.int().tolist(), "steps": steps,
            "names": [str(x) for x in domain_names], "title": title or ""}
    return _render(_PROJECTION_TEMPLATE, data, element_id or f"tlbook-projection-{uuid.uuid4().hex[:10]}")


_PROJECTION_TEMPLATE = """
<div id="{{ID}}" class="tlbook-projection" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-title" style="font-weight: bold; margin-bottom: 0.3em;"></div>
  <div style="display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>run <select class="tlbook-run"></select></label>
    <label>checkpoint <input class="tlbook-slider" type="range" min="0" step="1" style="width: 12em; vertical-align: middle;"></label>
    <span class="tlbook-step" style="font-family: monospace; font-weight: bold;"></span>
  </div>
  <svg class="tlbook-chart" width="360" height="320"></svg>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var menu = root.querySelector(".tlbook-run"), slider = root.querySelector(".tlbook-slider");
  var svg = root.querySelector(".tlbook-chart"), NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#4878d0", "#ee854a"], S = 300, M = 10;
  root.querySelector(".tlbook-title").textContent = data.title;
  Object.keys(data.runs).forEach(function (name) {
    var o = document.createElement("option"); o.value = name; o.textContent = name; menu.appendChild(o);
  });
  slider.max = data.steps.length - 1;
  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    for (var a in attrs) node.setAttribute(a, attrs[a]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  svg.appendChild(el("rect", {x: M - 4, y: M - 4, width: S + 8, height: S + 8, fill: "none", stroke: "#ccc"}));
  var dots = data.domains.map(function (d) {
    var c = el("circle", {r: 2.5, fill: COLORS[d], "fill-opacity": 0.6, "class": "tlbook-dot tlbook-domain-" + d});
    svg.appendChild(c); return c;
  });
  data.names.forEach(function (name, d) {
    svg.appendChild(el("circle", {cx: M + 8, cy: M + 10 + 16 * d, r: 4, fill: COLORS[d]}));
    svg.appendChild(el("text", {x: M + 16, y: M + 14 + 16 * d, "font-size": 11, fill: "currentColor"}, name));
  });
  function draw() {
    var frame = data.runs[menu.value][+slider.value];
    root.querySelector(".tlbook-step").textContent = "step " + data.steps[+slider.value];
    frame.forEach(function (p, i) {
      dots[i].setAttribute("cx", (M + S * p[0] / 1000).toFixed(1));
      dots[i].setAttribute("cy", (M + S * (1 - p[1] / 1000)).toFixed(1));
    });
  }
  menu.addEventListener("change", draw);
  slider.addEventListener("input", draw);
  slider.value = 0; draw();
})();
</script>
"""
