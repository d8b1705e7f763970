"""What every client-side panel shares: the data embedded as JSON, the script head, and filling a template."""
from __future__ import annotations

import html
import json

import torch
from IPython.display import HTML



# Every client-side panel embeds its data as JSON beside its markup and starts its script the same way.
_SCRIPT_HEAD = """<script type="application/json" id="{{ID}}-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("{{ID}}");
  var data = JSON.parse(document.getElementById("{{ID}}-data").textContent);"""


def _numbers(value, name: str) -> torch.Tensor:
    """``value`` (tensor, array or nested lists) as a float64 CPU tensor of finite numbers, or a clear error."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be numbers (a tensor, an array or nested lists), got {type(value).__name__}: {err}") from None
    bad = ~torch.isfinite(t)
    if bad.any():
        where = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name} must be finite numbers, got {t[where].item()} at index {list(where)} "
                         f"({int(bad.sum())} non-finite in all); a NaN or inf cannot be drawn: check what made them.")
    return t


def _render(template: str, data: dict, element_id: str) -> HTML:
    """Fill a panel template: its script head, the element id and the data as JSON."""
    # "</" would end the <script> element early; "<\/" is the same JSON string.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    text = template.replace("{{SCRIPT_HEAD}}", _SCRIPT_HEAD)
    return HTML(text.replace("{{ID}}", html.escape(element_id, quote=True)).replace("{{DATA}}", payload))
