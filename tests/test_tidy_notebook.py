"""scripts/tidy_notebook.py: finished (hidden) progress bars leave the stored notebook, nothing else does."""
import importlib.util
from pathlib import Path

import nbformat

spec = importlib.util.spec_from_file_location("tidy_notebook", Path(__file__).parents[1] / "scripts" / "tidy_notebook.py")
tidy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tidy)


def view(model_id):
    return nbformat.v4.new_output("display_data", data={tidy.VIEW: {"model_id": model_id, "version_major": 2}})


def hbox(layout, children=()):
    return {"model_name": "HBoxModel", "state": {"layout": f"IPY_MODEL_{layout}", "children": [f"IPY_MODEL_{c}" for c in children]}}


def layout(visibility):
    return {"model_name": "LayoutModel", "state": {"visibility": visibility}}


def test_hidden_bars_and_their_state_go_and_everything_else_stays():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("run()")
    text = nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.9\n")
    cell.outputs = [view("bar"), text, view("panel"), view("missing")]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("text")]
    nb.metadata["widgets"] = {tidy.STATE: {"state": {
        "bar": hbox("barlayout", ["barhtml"]), "barlayout": layout("hidden"), "barhtml": {"model_name": "HTMLModel", "state": {}},
        "panel": hbox("panellayout", ["button"]), "panellayout": layout(None), "button": {"model_name": "ButtonModel", "state": {}},
    }, "version_major": 2, "version_minor": 0}}
    assert tidy.drop_finished_bars(nb) == 1
    assert cell.outputs == [text, view("panel"), view("missing")]
    assert set(tidy._models(nb)) == {"panel", "panellayout", "button"}


def test_a_notebook_whose_only_widgets_were_bars_loses_its_widget_metadata():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("fit()")]
    nb.cells[0].outputs = [view("bar")]
    nb.metadata["widgets"] = {tidy.STATE: {"state": {"bar": hbox("l"), "l": layout("hidden")}}}
    assert tidy.drop_finished_bars(nb) == 1 and nb.cells[0].outputs == [] and "widgets" not in nb.metadata
