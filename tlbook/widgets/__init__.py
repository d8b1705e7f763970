"""Interactive panels for the chapters, in two kinds.

* **Client-side** (every panel below but :class:`RunPanel`, e.g. :func:`grid_explorer`, :func:`episode_viewer`):
  plain HTML with inline JavaScript and the data embedded as JSON. It computes in the reader's browser, so
  it works in the static rendered book with no kernel and no network (no CDN, no external library), as
  well as in Jupyter and on Colab.
* **Live** (:class:`RunPanel`): ipywidgets controls and a button that call a plain Python function.
  It needs a running kernel; the rendered book shows the output of the run stored with the notebook.
  It uses only widgets and attributes that ipywidgets 7.6+ and 8.x both have (Colab ships 7.7).

Each panel kind lives in its own module of this package; the chapters call them as ``tl.widgets.name``.
"""
from .adaptation import projection_explorer
from .explorers import grid_explorer, softmax_explorer
from .fusion import ensemble_builder, interpolation_explorer
from .meta import episode_viewer, sinusoid_panel
from .panel import RunPanel
from .selection import source_selection_explorer
from .zeroshot import zero_shot_explorer

__all__ = [
    "RunPanel",
    "ensemble_builder",
    "episode_viewer",
    "grid_explorer",
    "interpolation_explorer",
    "projection_explorer",
    "sinusoid_panel",
    "softmax_explorer",
    "source_selection_explorer",
    "zero_shot_explorer",
]
