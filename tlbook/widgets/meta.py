"""Client-side panels of Chapter 3 (meta-learning): plain HTML, inline JavaScript, data embedded as JSON."""
from __future__ import annotations

import base64
import html
import struct
import zlib

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


def _png_data_uri(image) -> str:
    """A 2-d image of grey levels in ``[0, 1]`` as a ``data:image/png;base64,...`` URI (8-bit greyscale, ``round(255 x)``).

    Written with zlib and struct only, so the page carries its images inside it (no file, no URL, no imaging library).
    """
    import torch

    pixels = (torch.as_tensor(image, dtype=torch.float64).clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"an image must be 2-d (H, W) with H, W >= 1, got shape {tuple(pixels.shape)}.")
    height, width = pixels.shape
    # Each scanline starts with its filter byte; 0 (none) keeps the writer trivial and costs little on strokes.
    raw = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), pixels], 1).numpy().tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grey_images(value, name: str):
    """``(E, N, H, W)`` or ``(E, N, 1, H, W)`` grey levels in ``[0, 1]`` as ``(E, N, H, W)`` float64, or a clear error."""
    try:
        t = _numbers(value, name)
    except ValueError as err:  # a NaN or inf is as undrawable as a value outside [0, 1]; say it the same way
        raise ValueError(f"{name} must be in [0, 1]; pass them as displayed ({err})") from None
    if t.ndim == 5 and t.shape[2] == 1:
        t = t[:, :, 0]
    if t.ndim != 4 or min(t.shape) < 1:
        raise ValueError(f"{name} must be (episodes, n, H, W) or (episodes, n, 1, H, W) grey images, got shape {tuple(t.shape)}.")
    if bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError(f"{name} must be in [0, 1]; pass them as displayed (got values from {t.min().item():.4g} "
                         f"to {t.max().item():.4g}; e.g. undo the normalisation, or x.clamp(0, 1) if that is what you mean).")
    return t


def _class_indices(value, name: str, shape: tuple, n_classes: int | None = None, hint: str = ""):
    """``value`` as an int64 tensor of ``shape`` with entries in ``[0, n_classes)``, or a clear error."""
    import torch

    try:
        t = torch.as_tensor(value).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be integer class indices (a tensor, an array or nested lists), got {type(value).__name__}: {err}") from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices, got dtype {t.dtype}; pass e.g. logits.argmax(-1) or labels.long().")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (episodes, n) = {tuple(shape)} to match the images, got {tuple(t.shape)}.")
    t = t.long()
    if n_classes is not None and bool(((t < 0) | (t >= n_classes)).any()):
        raise ValueError(f"{name} must be class indices in [0, {n_classes}), got values from {t.min().item()} to {t.max().item()}{hint}.")
    return t


_EPISODE_TEMPLATE = """<div id="{{ID}}" class="tlbook-episode-viewer" style="font-family:sans-serif;font-size:13px;max-width:760px">
<div style="font-weight:bold;margin:4px 0">{{TITLE}}</div>
<label>episode <select class="episode"></select></label>
<label style="margin-left:1em">method <select class="method"></select></label>
<div style="margin:6px 0 2px">support set</div>
<div class="support" style="display:flex;flex-wrap:wrap;gap:6px"></div>
<div style="margin:8px 0 2px">queries (green frame: right, red: wrong)</div>
<div class="queries" style="display:flex;flex-wrap:wrap;gap:6px"></div>
<div class="score" style="font-weight:bold;margin-top:6px"></div>
<div class="all-methods" style="font-size:90%;color:#444"></div>
<noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var episode = root.querySelector(".episode"), method = root.querySelector(".method"), methods = Object.keys(data.predictions);
  function options(select, names) {
    names.forEach(function (n, i) { var o = document.createElement("option"); o.value = i; o.textContent = n; select.appendChild(o); });
  }
  options(episode, data.episode_names); options(method, methods);
  function cell(uri, caption, border, cls) {
    var c = document.createElement("div"), img = document.createElement("img"), t = document.createElement("div");
    c.className = cls; c.style.cssText = "text-align:center;padding:2px;border:3px solid " + border;
    img.setAttribute("src", uri); img.width = 56; img.height = 56; img.alt = caption;
    img.style.cssText = "display:block;image-rendering:pixelated;background:#fff";
    t.textContent = caption; t.style.fontSize = "11px"; c.appendChild(img); c.appendChild(t); return c;
  }
  function right(m, e) {
    var n = 0; data.predictions[m][e].forEach(function (p, q) { if (p === data.query_labels[e][q]) n++; }); return n;
  }
  function percent(a, n) { return Math.round(100 * a / n) + "%"; }
  function draw() {
    var e = +episode.value, m = methods[+method.value], Q = data.query_labels[e].length;
    var support = root.querySelector(".support"), queries = root.querySelector(".queries");
    while (support.firstChild) support.removeChild(support.firstChild);
    while (queries.firstChild) queries.removeChild(queries.firstChild);
    data.support_images[e].forEach(function (uri, s) { support.appendChild(cell(uri, "class " + data.support_labels[e][s], "#fff", "shot")); });
    data.query_images[e].forEach(function (uri, q) {
      var p = data.predictions[m][e][q], y = data.query_labels[e][q], ok = p === y;
      queries.appendChild(cell(uri, "pred " + p + " \\u00b7 true " + y, ok ? "#2ca02c" : "#d62728", ok ? "query right" : "query wrong"));
    });
    var a = right(m, e);
    root.querySelector(".score").textContent = m + ": " + a + " of " + Q + " right (" + percent(a, Q) + ")";
    root.querySelector(".all-methods").textContent = "on this episode: " + methods.map(function (k) {
      var r = right(k, e); return k + " " + r + "/" + Q + " (" + percent(r, Q) + ")";
    }).join(" \\u00b7 ");
  }
  episode.addEventListener("change", draw); method.addEventListener("change", draw);
  draw();
})();
</script>"""


def episode_viewer(support_images, query_images, query_labels, predictions: dict, element_id: str = "episode-viewer",
                   title: str = "", episode_names=None, support_labels=None):
    """A selector over few-shot test episodes and a selector over methods: the support set, then each query with the
    chosen method's prediction (green frame right, red wrong), and every method's accuracy on the episode.

    The images travel inside the page as PNG data URIs (about 0.2-1.2 KB each at 28 x 28, the least for clean strokes,
    the most for noise), so it works in the static book with no kernel and no network.

    Args:
        support_images: ``(E, S, H, W)`` or ``(E, S, 1, H, W)`` grey levels in ``[0, 1]``, drawn as given
            (``0`` black, ``1`` white: pass ``1 - x`` for white strokes on black to draw them dark on white).
        query_images: ``(E, Q, H, W)`` or ``(E, Q, 1, H, W)``, the same ``H, W``.
        query_labels: ``(E, Q)`` integer classes in ``[0, C)``.
        predictions: method name -> ``(E, Q)`` predicted classes in ``[0, C)``; at least one method.
        element_id: the panel's HTML id, unique in the page. title: shown above. episode_names: ``E`` labels
            (default ``'test episode i'``).
        support_labels: ``(E, S)`` integer classes of the support images. Default ``arange(S)`` in every episode:
            one shot per class, ordered by class (``C = S``). With more shots pass them; ``C`` is then their
            largest value + 1 and every episode's support must hold each class.
    """
    import torch

    support = _grey_images(support_images, "support_images")
    query = _grey_images(query_images, "query_images")
    n_episodes, n_shots = support.shape[:2]
    if query.shape[0] != n_episodes or query.shape[2:] != support.shape[2:]:
        raise ValueError(f"query_images must be (episodes={n_episodes}, queries, {support.shape[2]}, {support.shape[3]}) "
                         f"to match support_images {tuple(support.shape)}, got {tuple(query.shape)}.")
    n_queries = query.shape[1]
    if support_labels is None:
        shots = torch.arange(n_shots).expand(n_episodes, n_shots)
    else:
        shots = _class_indices(support_labels, "support_labels", (n_episodes, n_shots))
        if bool((shots < 0).any()):
            raise ValueError(f"support_labels must be class indices >= 0, got {shots.min().item()}.")
    n_classes = int(shots.max()) + 1
    missing = [e for e in range(n_episodes) if len(set(shots[e].tolist())) != n_classes]
    if missing:
        raise ValueError(f"support_labels: episode {missing[0]} lacks some of the classes 0..{n_classes - 1}; "
                         f"every episode's support must hold each class at least once.")
    # Without support_labels the classes are the support's positions, so a larger label usually means several shots.
    hint = f"; with several shots per class pass support_labels (episodes, {n_shots})" if support_labels is None else ""
    labels = _class_indices(query_labels, "query_labels", (n_episodes, n_queries), n_classes, hint)
    if not isinstance(predictions, dict) or not predictions:
        raise TypeError(f"predictions must be a non-empty dict method name -> (episodes, queries) = ({n_episodes}, {n_queries}) "
                        f"predicted classes, got {predictions!r:.60}.")
    chosen = {str(name): _class_indices(p, f"predictions[{name!r}]", (n_episodes, n_queries), n_classes, hint).tolist()
              for name, p in predictions.items()}
    names = list(episode_names) if episode_names is not None else [f"test episode {e}" for e in range(n_episodes)]
    if len(names) != n_episodes:
        raise ValueError(f"episode_names must name each of the {n_episodes} episodes, got {len(names)}.")
    data = dict(support_images=[[_png_data_uri(img) for img in ep] for ep in support],
                query_images=[[_png_data_uri(img) for img in ep] for ep in query],
                support_labels=shots.tolist(), query_labels=labels.tolist(), predictions=chosen,
                episode_names=[str(n) for n in names])
    template = _EPISODE_TEMPLATE.replace("{{TITLE}}", html.escape(str(title)))
    return _render(template, data, element_id)
