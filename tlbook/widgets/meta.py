"""Client-side panels of Chapter 3 (meta-learning): plain HTML, inline JavaScript, data embedded as JSON."""
from __future__ import annotations

import html

from ._html import _numbers, _render

_SINUSOID_TEMPLATE = """<div id="{{ID}}" class="tlbook-sinusoid-panel" style="font-family:sans-serif;max-width:760px">
<div style="font-weight:bold;margin:4px 0">{{TITLE}}</div>
<label>test task <select class="task"></select></label>
<label style="margin-left:1em">steps <input class="steps" type="range" min="0" step="1" value="0" style="vertical-align:middle"></label>
<span class="readout" style="margin-left:.5em"></span>
<svg class="plot" viewBox="0 0 720 300" width="100%" style="border:1px solid #ddd;background:#fff"></svg>
<div class="mse" style="font-size:90%"></div>
</div>
{{SCRIPT_HEAD}}
  var svgNS = "http://www.w3.org/2000/svg";
  var svg = root.querySelector(".plot"), select = root.querySelector(".task"), slider = root.querySelector(".steps");
  var methods = Object.keys(data.fits), colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
  slider.max = data.steps;
  data.truth.forEach(function (_, t) { var o = document.createElement("option"); o.value = t; o.textContent = data.task_names[t]; select.appendChild(o); });
  var xmin = Math.min.apply(null, data.x), xmax = Math.max.apply(null, data.x), ymin = -data.ylim, ymax = data.ylim;
  function px(x) { return 40 + (x - xmin) / (xmax - xmin) * 660; }
  function py(y) { return 280 - (Math.max(ymin, Math.min(ymax, y)) - ymin) / (ymax - ymin) * 260; }
  function line(ys, color, width, dash) {
    var p = document.createElementNS(svgNS, "polyline");
    p.setAttribute("points", data.x.map(function (x, i) { return px(x) + "," + py(ys[i]); }).join(" "));
    p.setAttribute("fill", "none"); p.setAttribute("stroke", color); p.setAttribute("stroke-width", width);
    if (dash) p.setAttribute("stroke-dasharray", dash);
    svg.appendChild(p);
  }
  function text(x, y, s, color) {
    var e = document.createElementNS(svgNS, "text"); e.setAttribute("x", x); e.setAttribute("y", y);
    e.setAttribute("font-size", "12"); e.setAttribute("fill", color || "#000"); e.textContent = s; svg.appendChild(e);
  }
  function draw() {
    var t = +select.value, s = +slider.value;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    line(data.x.map(function () { return 0; }), "#ccc", 1);
    line(data.truth[t], "#000", 2.5);
    var report = [];
    methods.forEach(function (m, j) {
      var fit = data.fits[m][t][s];
      line(fit, colors[j % colors.length], 2, j ? "6,3" : null);
      var mse = 0; for (var i = 0; i < fit.length; i++) { mse += Math.pow(fit[i] - data.truth[t][i], 2); }
      report.push(m + ": MSE " + (mse / fit.length).toFixed(2));
      text(50, 20 + 15 * j, m, colors[j % colors.length]);
    });
    text(50, 20 + 15 * methods.length, "true function", "#000");
    data.support[t][0].forEach(function (x, i) {
      var c = document.createElementNS(svgNS, "circle"); c.setAttribute("cx", px(x)); c.setAttribute("cy", py(data.support[t][1][i]));
      c.setAttribute("r", 5); c.setAttribute("fill", "#d62728"); svg.appendChild(c);
    });
    root.querySelector(".readout").textContent = s + (s === 1 ? " step" : " steps");
    root.querySelector(".mse").textContent = "after " + s + " step(s), on the drawn grid: " + report.join("; ");
  }
  select.addEventListener("change", draw); slider.addEventListener("input", draw);
  draw();
})();
</script>"""


def sinusoid_panel(x, truth, support, fits: dict, element_id: str = "sinusoid-panel", title: str = "",
                   task_names=None, ylim: float = 6.0):
    """A slider over adaptation steps and a selector over test tasks, drawing precomputed fits in the browser.

    Args:
        x: ``(P,)`` the grid the curves are drawn on.
        truth: ``(T, P)`` each task's true function on the grid (a list of ``(P,)`` works too).
        support: ``T`` pairs ``(x_support (K,), y_support (K,))``, drawn as points.
        fits: method name -> ``(T, S + 1, P)``: the fit on the grid after 0..S steps.
        element_id: the panel's HTML id, unique in the page. title: shown above. task_names: ``T`` labels.
        ylim: the y axis runs from ``-ylim`` to ``ylim``.
    """
    import torch

    grid = _numbers(x, "x")
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"x must be a 1-d grid of at least 2 points, got shape {tuple(grid.shape)}.")
    true = _numbers(torch.stack([torch.as_tensor(t) for t in truth]) if isinstance(truth, (list, tuple)) else truth, "truth")
    if true.ndim != 2 or true.shape[1] != len(grid):
        raise ValueError(f"truth must be (tasks, {len(grid)}) to match x, got {tuple(true.shape)}.")
    n_tasks = true.shape[0]
    if not isinstance(fits, dict) or not fits:
        raise TypeError("fits must be a non-empty dict method name -> (tasks, steps + 1, points) values.")
    curves, steps = {}, None
    for name, value in fits.items():
        f = _numbers(torch.stack([torch.as_tensor(v) for v in value]) if isinstance(value, (list, tuple)) else value, f"fits[{name!r}]")
        if f.ndim != 3 or f.shape[0] != n_tasks or f.shape[2] != len(grid) or (steps is not None and f.shape[1] != steps + 1):
            raise ValueError(f"fits[{name!r}] must be (tasks={n_tasks}, steps + 1, points={len(grid)}) like the others, "
                             f"got {tuple(f.shape)}.")
        steps = f.shape[1] - 1
        curves[str(name)] = [[[round(v, 4) for v in row] for row in task] for task in f.tolist()]
    if len(support) != n_tasks:
        raise ValueError(f"support must hold one (x, y) pair per task ({n_tasks}), got {len(support)}.")
    points = []
    for i, pair in enumerate(support):
        sx, sy = (_numbers(v, f"support[{i}]").flatten() for v in pair)
        if len(sx) != len(sy):
            raise ValueError(f"support[{i}] has {len(sx)} x values but {len(sy)} y values.")
        points.append([sx.tolist(), sy.tolist()])
    names = list(task_names) if task_names is not None else [f"test task {t}" for t in range(n_tasks)]
    if len(names) != n_tasks:
        raise ValueError(f"task_names must name each of the {n_tasks} tasks, got {len(names)}.")
    data = dict(x=[round(v, 4) for v in grid.tolist()], truth=[[round(v, 4) for v in row] for row in true.tolist()],
                support=points, fits=curves, steps=steps, ylim=float(ylim), task_names=[str(n) for n in names])
    template = _SINUSOID_TEMPLATE.replace("{{TITLE}}", html.escape(str(title)))
    return _render(template, data, element_id)
