"""A live panel: ipywidgets controls and a button that call a plain Python function (needs a kernel)."""
from __future__ import annotations

import ipywidgets as widgets

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
        if not isinstance(controls, dict):
            raise TypeError(
                f"controls must be a dict {{name: widget}}, one ipywidgets control per keyword argument of run, "
                f"got {type(controls).__name__}; e.g. dict(width=widgets.IntSlider(value=16, min=4, max=64))."
            )
        bad = [name for name, w in controls.items()
               if not (isinstance(name, str) and name.isidentifier() and isinstance(w, widgets.ValueWidget))]
        if bad:
            raise TypeError(f"controls must be ipywidgets value widgets (sliders, dropdowns, ...) keyed by run's "
                            f"argument names; not: {bad}.")
        if not isinstance(description, str):
            raise TypeError(f"description must be a string (the button's label), got {type(description).__name__}.")
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
