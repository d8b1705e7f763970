"""Drop finished progress bars from a stored notebook, so the rendered book shows no blank boxes.

A tqdm bar with ``leave=False`` hides itself when it finishes (its layout's ``visibility`` becomes
``'hidden'``), but the notebook still stores its output, and the static page reserves an empty box for
it. This removes those outputs and the widget state nothing displays any more; every other output and
widget is kept as it was. Run by ``scripts/execute_notebooks.sh`` after each execution; by hand:

    python scripts/tidy_notebook.py book/*.ipynb
"""
import re
import sys

import nbformat

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def _models(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})


def _is_finished_bar(model_id: str, models: dict) -> bool:
    model = models.get(model_id)
    if not model or model.get("model_name") != "HBoxModel":
        return False
    layout = models.get(str(model["state"].get("layout", "")).replace("IPY_MODEL_", ""), {})
    return layout.get("state", {}).get("visibility") == "hidden"


def drop_finished_bars(nb) -> int:
    """Remove hidden progress-bar outputs and unreferenced widget state in place; returns how many bars."""
    models = _models(nb)
    dropped = 0
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not (VIEW in o.get("data", {}) and _is_finished_bar(o["data"][VIEW]["model_id"], models))]
        dropped += len(outputs) - len(kept)
        if cell.get("cell_type") == "code":
            cell["outputs"] = kept
    if models:
        # Keep the state that the remaining views reach (children, layouts, styles), nothing else.
        reached, todo = set(), [o["data"][VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", []) if VIEW in o.get("data", {})]
        while todo:
            model_id = todo.pop()
            if model_id in reached or model_id not in models:
                continue
            reached.add(model_id)
            todo.extend(re.findall(r"IPY_MODEL_(\w+)", str(models[model_id]["state"])))
        for model_id in set(models) - reached:
            del models[model_id]
        if not models:
            del nb.metadata["widgets"]
    return dropped


if __name__ == "__main__":
    for path in sys.argv[1:]:
        nb = nbformat.read(path, as_version=4)
        count = drop_finished_bars(nb)
        nbformat.write(nb, path)
        print(f"{path}: {count} finished progress bar(s) dropped")
