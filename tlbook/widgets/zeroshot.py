"""Client-side panel of Chapter 7's zero-shot case: plain HTML and JavaScript with the data embedded,
so it works in the static book, with no kernel and no network.

* :func:`zero_shot_explorer`: pick a seen/unseen split and a method, move the shift subtracted from the
  seen classes' scores (calibrated stacking, Chao et al. 2016) from 0 to "unseen only", and read the
  accuracy on seen and unseen test classes, their harmonic mean and the confusion matrix.
"""
from __future__ import annotations

import math
import uuid

import torch
from IPython.display import HTML

from ._html import _numbers, _render


def zero_shot_explorer(confusion, unseen, shifts, methods, chosen=None, class_names=None, title: str | None = None,
                       element_id: str | None = None) -> HTML:
    """Precomputed generalised zero-shot results, explored in the browser.

    Args:
        confusion: ``(S, M, P, K, K)`` counts: for split ``s``, method ``m`` and shift ``p``, row ``i``
            column ``j`` counts the test images of class ``i`` predicted as class ``j`` when all ``K``
            classes compete and the seen classes' scores are lowered by ``shifts[s, m, p]``.
        unseen: ``S`` lists of unseen class ids (the other classes of each split are seen).
        shifts: ``(S, M, P)`` shifts, increasing along ``P``; ``inf`` means "unseen classes only"
            (every seen score pushed below every unseen one: on unseen images, the zero-shot setting).
        methods: ``M`` method names.
        chosen: ``(S, M)`` index into ``P`` of the shift chosen on validation (marked in the panel), or None.
        class_names: ``K`` names (default ``'0'``, ``'1'``, ...).
        title: a line above the panel.
        element_id: id of the outer ``<div>`` (default: a random one).

    The page reads the per-class accuracy averaged over the seen classes and over the unseen ones
    (as :func:`tlbook.zeroshot.generalised_accuracy`) and their harmonic mean.
    """
    c = _numbers(confusion, "confusion")
    if c.ndim != 5 or c.shape[3] != c.shape[4] or c.shape[3] < 2 or min(c.shape) < 1:
        raise ValueError(f"confusion must be (S, M, P, K, K) counts with K >= 2, got shape {tuple(c.shape)}.")
    if bool((c < 0).any()) or bool((c != c.round()).any()):
        raise ValueError("confusion must hold counts (whole numbers >= 0).")
    n_splits, n_methods, n_shifts, k = c.shape[:4]
    if not isinstance(unseen, (list, tuple)) or len(unseen) != n_splits:
        raise ValueError(f"unseen must be a list of {n_splits} lists of class ids (one per split), got {unseen!r}.")
    unseen = [sorted({int(i) for i in u}) for u in unseen]
    for s, u in enumerate(unseen):
        if not u or len(u) >= k or any(not 0 <= i < k for i in u):
            raise ValueError(f"unseen[{s}] must name between 1 and {k - 1} classes in [0, {k}), got {u}.")
    rows = c.sum(-1)
    for s in range(n_splits):
        if bool((rows[s] == 0).any()):
            raise ValueError(f"split {s} has a class with no test images; every class needs some (a row of zeros).")
    try:
        sh = torch.as_tensor(shifts, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"shifts must be numbers (a tensor, an array or nested lists), got {type(shifts).__name__}: {err}") from None
    if tuple(sh.shape) != (n_splits, n_methods, n_shifts) or bool(torch.isnan(sh).any()) or bool((sh == -math.inf).any()):
        raise ValueError(f"shifts must be ({n_splits}, {n_methods}, {n_shifts}) numbers (inf allowed), got shape {tuple(sh.shape)}.")
    if n_shifts > 1 and bool((sh[..., 1:] <= sh[..., :-1]).any()):
        raise ValueError("shifts must increase along their last axis.")
    methods = [str(m) for m in methods]
    if len(methods) != n_methods:
        raise ValueError(f"methods must name the {n_methods} methods, got {len(methods)}.")
    if chosen is None:
        chosen = [[0] * n_methods for _ in range(n_splits)]
    chosen = [[int(i) for i in row] for row in chosen]
    if len(chosen) != n_splits or any(len(row) != n_methods or any(not 0 <= i < n_shifts for i in row) for row in chosen):
        raise ValueError(f"chosen must be ({n_splits}, {n_methods}) indices in [0, {n_shifts}).")
    names = [str(i) for i in range(k)] if class_names is None else [str(x) for x in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must name the {k} classes, got {len(names)}.")
    data = {"k": k, "names": names, "methods": methods, "unseen": unseen, "chosen": chosen, "title": title or "",
            "shifts": [[[None if math.isinf(v) else round(v, 4) for v in row] for row in split] for split in sh.tolist()],
            "confusion": c.long().tolist()}
    return _render(_TEMPLATE, data, element_id or f"tlbook-zeroshot-{uuid.uuid4().hex[:10]}")


_TEMPLATE = """
<div id="{{ID}}" class="tlbook-zeroshot" style="font-family: sans-serif; font-size: 13px; margin: 0.5em 0;">
  <div class="tlbook-title" style="font-weight: bold; margin-bottom: 0.3em;"></div>
  <div style="display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center; margin-bottom: 0.4em;">
    <label>unseen classes <select class="tlbook-split"></select></label>
    <label>method <select class="tlbook-method"></select></label>
    <label>shift on seen scores <input class="tlbook-shift" type="range" min="0" step="1" style="width: 14em; vertical-align: middle;"></label>
    <span class="tlbook-shift-value" style="font-family: monospace;"></span>
    <button class="tlbook-chosen" type="button">chosen on validation</button>
  </div>
  <div class="tlbook-result" style="font-family: monospace; font-size: 14px; margin-bottom: 0.4em;"></div>
  <table class="tlbook-confusion" style="border-collapse: collapse; font-family: monospace; font-size: 12px;"></table>
  <div style="font-size: 11px; margin-top: 0.3em;">rows: true digit, columns: predicted; unseen classes in orange; a cell's shade is its share of the row.</div>
  <noscript>This panel needs JavaScript.</noscript>
</div>
{{SCRIPT_HEAD}}
  var K = data.k, split = root.querySelector(".tlbook-split"), method = root.querySelector(".tlbook-method");
  var slider = root.querySelector(".tlbook-shift"), label = root.querySelector(".tlbook-shift-value");
  var result = root.querySelector(".tlbook-result"), table = root.querySelector(".tlbook-confusion");
  root.querySelector(".tlbook-title").textContent = data.title;
  data.unseen.forEach(function (u, s) {
    var o = document.createElement("option"); o.value = s; o.textContent = u.map(function (i) { return data.names[i]; }).join(", ");
    split.appendChild(o);
  });
  data.methods.forEach(function (m, i) { var o = document.createElement("option"); o.value = i; o.textContent = m; method.appendChild(o); });
  slider.max = data.shifts[0][0].length - 1;
  function toChosen() { slider.value = data.chosen[+split.value][+method.value]; draw(); }
  function draw() {
    var s = +split.value, m = +method.value, p = +slider.value, C = data.confusion[s][m][p], u = data.unseen[s];
    var shift = data.shifts[s][m][p];
    label.textContent = (shift === null ? "unseen classes only" : shift.toFixed(3)) +
      (p === data.chosen[s][m] ? " (chosen on validation)" : "");
    var seenAcc = 0, unseenAcc = 0, nSeen = 0, nUnseen = 0, toSeen = 0, unseenImages = 0;
    for (var i = 0; i < K; i++) {
      var row = 0; for (var j = 0; j < K; j++) row += C[i][j];
      var acc = C[i][i] / row;
      if (u.indexOf(i) >= 0) {
        unseenAcc += acc; nUnseen++; unseenImages += row;
        for (j = 0; j < K; j++) if (u.indexOf(j) < 0) toSeen += C[i][j];
      } else { seenAcc += acc; nSeen++; }
    }
    seenAcc /= nSeen; unseenAcc /= nUnseen;
    var H = seenAcc + unseenAcc > 0 ? 2 * seenAcc * unseenAcc / (seenAcc + unseenAcc) : 0;
    result.setAttribute("data-seen", seenAcc.toFixed(4)); result.setAttribute("data-unseen", unseenAcc.toFixed(4));
    result.setAttribute("data-harmonic", H.toFixed(4)); result.setAttribute("data-to-seen", (toSeen / unseenImages).toFixed(4));
    result.textContent = "seen " + seenAcc.toFixed(3) + " \\u00b7 unseen " + unseenAcc.toFixed(3) + " \\u00b7 H " + H.toFixed(3) +
      " \\u00b7 unseen images taken for a seen class: " + (100 * toSeen / unseenImages).toFixed(1) + "%";
    table.innerHTML = "";
    var head = table.insertRow(); head.insertCell().textContent = "";
    for (j = 0; j < K; j++) {
      var h = head.insertCell(); h.textContent = data.names[j]; h.style.padding = "1px 4px"; h.style.textAlign = "right"; h.style.minWidth = "2.6em";
      if (u.indexOf(j) >= 0) h.style.color = "#d46a00";
    }
    for (i = 0; i < K; i++) {
      var r = table.insertRow(), name = r.insertCell(), total = 0;
      for (j = 0; j < K; j++) total += C[i][j];
      name.textContent = data.names[i]; name.style.paddingRight = "4px";
      if (u.indexOf(i) >= 0) name.style.color = "#d46a00";
      for (j = 0; j < K; j++) {
        var cell = r.insertCell(), share = C[i][j] / total;
        cell.textContent = C[i][j]; cell.style.padding = "1px 4px"; cell.style.textAlign = "right"; cell.style.minWidth = "2.6em";
        cell.style.background = "rgba(" + (i === j ? "44,160,44," : "214,39,40,") + Math.min(1, share).toFixed(3) + ")";
      }
    }
  }
  split.addEventListener("change", toChosen);
  method.addEventListener("change", toChosen);
  slider.addEventListener("input", draw);
  root.querySelector(".tlbook-chosen").addEventListener("click", toChosen);
  toChosen();
})();
</script>
"""
