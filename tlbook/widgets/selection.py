"""Client-side panel of Chapter 7's first case (choosing a source before training): plain HTML and
JavaScript with the data embedded, so it works in the static book, with no kernel and no network.

* :func:`source_selection_explorer`: pick a target and a transferability score; the page ranks the
  sources by the score beside their measured fine-tuned and linear-probe accuracy and computes
  Kendall's tau-b between the score and each accuracy (as ``scipy.stats.kendalltau`` does).
"""
from __future__ import annotations

import uuid

from IPython.display import HTML

from ._html import _numbers, _render


def source_selection_explorer(targets: dict, sources, title: str | None = None, element_id: str | None = None) -> HTML:
    """Pick a target and a score; see each source's scores beside its real accuracy, ranked by the score.

    Args:
        targets: ``{target: {"scores": {score: (S,)}, "fine-tuned": (S,), "probe": (S,)}}``: per target,
            one value per source for each transferability score (higher = better expected transfer)
            and the measured accuracies (e.g. means over seeds). Every target has the same score names.
        sources: ``S >= 2`` source names, in the order of the values.
        title: a line above the table.
        element_id: id of the outer ``<div>`` (default: a random one).

    Returns:
        An ``IPython.display.HTML``: a target selector, a score selector, the sources ranked by the
        score, and Kendall's tau-b of the score against fine-tuned and against probe accuracy, with
        the accuracy lost by taking the score's first choice instead of the best source.
    """
    if isinstance(sources, str) or not hasattr(sources, "__len__"):
        raise TypeError(f"sources must be a list of source names, got {type(sources).__name__}.")
    sources = [str(s) for s in sources]
    if len(sources) < 2 or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be at least 2 distinct names, got {sources}.")
    if not isinstance(targets, dict) or not targets:
        raise TypeError("targets must be a non-empty dict {target: {'scores': {...}, 'fine-tuned': (S,), 'probe': (S,)}}, "
                        f"got {type(targets).__name__}.")
    score_names, table = None, {}
    for target, entry in targets.items():
        if not isinstance(entry, dict) or set(entry) != {"scores", "fine-tuned", "probe"}:
            raise ValueError(f"targets[{target!r}] must be a dict with exactly the keys 'scores', 'fine-tuned' and 'probe', "
                             f"got {sorted(entry) if isinstance(entry, dict) else type(entry).__name__}.")
        scores = entry["scores"]
        if not isinstance(scores, dict) or not scores:
            raise ValueError(f"targets[{target!r}]['scores'] must be a non-empty dict {{score name: (S,) values}}.")
        if score_names is None:
            score_names = [str(s) for s in scores]
        elif [str(s) for s in scores] != score_names:
            raise ValueError(f"every target needs the same scores in the same order: {score_names}, "
                             f"but targets[{target!r}] has {list(scores)}.")
        if {"fine-tuned", "probe"} & set(score_names):
            raise ValueError(f"score names must differ from 'fine-tuned' and 'probe', got {score_names}.")
        columns = [(str(s), scores[s], f"targets[{target!r}]['scores'][{s!r}]") for s in scores]
        columns += [(k, entry[k], f"targets[{target!r}][{k!r}]") for k in ("fine-tuned", "probe")]
        values = {}
        for key, value, where in columns:
            v = _numbers(value, where)
            if tuple(v.shape) != (len(sources),):
                raise ValueError(f"{where} must have one value per source ({len(sources)}), got shape {tuple(v.shape)}.")
            values[key] = [round(x, 6) for x in v.tolist()]
        if any(not 0 <= a <= 1 for k in ("fine-tuned", "probe") for a in values[k]):
            raise ValueError(f"targets[{target!r}] accuracies must be fractions in [0, 1].")
        table[str(target)] = values
    data = {"sources": sources, "scores": score_names, "targets": table, "title": title or ""}
    return _render(_TEMPLATE, data, element_id or f"tlbook-selection-{uuid.uuid4().hex[:10]}")


_TEMPLATE = """
<div id="{{ID}}" class="tlbook-selection" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-title" style="font-weight: bold; margin-bottom: 0.3em;"></div>
  <div style="display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>target <select class="tlbook-target"></select></label>
    <label>rank sources by <select class="tlbook-score"></select></label>
  </div>
  <table class="tlbook-table" style="border-collapse: collapse; font-family: monospace;"></table>
  <div class="tlbook-result" style="margin-top: 0.4em;"></div>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var targetBox = root.querySelector(".tlbook-target"), scoreBox = root.querySelector(".tlbook-score");
  var table = root.querySelector(".tlbook-table"), result = root.querySelector(".tlbook-result");
  root.querySelector(".tlbook-title").textContent = data.title;
  Object.keys(data.targets).forEach(function (t) { targetBox.add(new Option(t, t)); });
  data.scores.forEach(function (s) { scoreBox.add(new Option(s, s)); });
  function sign(v) { return v > 0 ? 1 : (v < 0 ? -1 : 0); }
  function kendall(x, y) {  // tau-b, as scipy.stats.kendalltau
    var c = 0, tx = 0, ty = 0, n0 = 0;
    for (var i = 0; i < x.length; i++) for (var j = i + 1; j < x.length; j++) {
      var a = sign(x[i] - x[j]), b = sign(y[i] - y[j]);
      n0 += 1; c += a * b; if (a === 0) tx += 1; if (b === 0) ty += 1;
    }
    var d = Math.sqrt((n0 - tx) * (n0 - ty));
    return d > 0 ? c / d : NaN;
  }
  function cell(row, text, bold) {
    var c = row.insertCell(); c.textContent = text; c.style.padding = "1px 0.7em";
    if (bold) c.style.fontWeight = "bold";
    return c;
  }
  function draw() {
    var t = data.targets[targetBox.value], s = scoreBox.value, score = t[s];
    var order = data.sources.map(function (_, i) { return i; }).sort(function (a, b) { return score[b] - score[a]; });
    table.innerHTML = "";
    var head = table.insertRow();
    ["#", "source"].concat(data.scores, ["fine-tuned", "probe"]).forEach(function (h) { cell(head, h, h === s); });
    var ft = t["fine-tuned"], best = ft.indexOf(Math.max.apply(null, ft));
    order.forEach(function (i, rank) {
      var row = table.insertRow(); row.className = "tlbook-row";
      cell(row, String(rank + 1)); cell(row, data.sources[i]).className = "tlbook-source";
      data.scores.forEach(function (name) { cell(row, t[name][i].toFixed(3), name === s); });
      cell(row, (100 * ft[i]).toFixed(1) + " %", i === best); cell(row, (100 * t.probe[i]).toFixed(1) + " %");
    });
    var tauFt = kendall(score, ft), tauProbe = kendall(score, t.probe), top = order[0];
    var lost = 100 * (ft[best] - ft[top]);
    result.setAttribute("data-tau-finetuned", tauFt.toFixed(6));
    result.setAttribute("data-tau-probe", tauProbe.toFixed(6));
    result.setAttribute("data-top", data.sources[top]);
    result.setAttribute("data-best", data.sources[best]);
    result.textContent = "Kendall's tau of " + s + " against fine-tuned accuracy " + tauFt.toFixed(2) +
      ", against probe accuracy " + tauProbe.toFixed(2) + ". " + s + " picks " + data.sources[top] +
      (top === best ? ", the best source." : "; the best is " + data.sources[best] + " (" + lost.toFixed(1) + " points more).");
  }
  targetBox.addEventListener("change", draw);
  scoreBox.addEventListener("change", draw);
  draw();
})();
</script>
"""
