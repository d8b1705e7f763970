#!/usr/bin/env bash
# Execute notebooks in place in FULL mode and store their outputs and widget state, so that the
# book (built with execute_notebooks: off) shows them, widgets included.
#   scripts/execute_notebooks.sh                 # every notebook under book/
#   scripts/execute_notebooks.sh book/tour.ipynb # just these
# Environment: TLBOOK_DATA defaults to ../shared/data when that folder exists; TLBOOK_QUICK is
# unset (stored outputs are always full mode); TIMEOUT (seconds per cell, default none).
# Afterwards each notebook is checked: no error outputs, and no absolute path of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || python=python3

unset TLBOOK_QUICK
if [[ -z "${TLBOOK_DATA:-}" && -d ../shared/data ]]; then
    export TLBOOK_DATA=$(cd ../shared/data && pwd)
fi

if [[ $# -eq 0 ]]; then
    mapfile -t notebooks < <(find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
else
    notebooks=("$@")
fi
[[ ${#notebooks[@]} -gt 0 ]] || { echo "no notebooks to execute"; exit 0; }

"$python" - "${notebooks[@]}" <<'PY'
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, "scripts")
from tidy_notebook import drop_finished_bars  # finished tqdm bars would render as blank boxes

timeout = int(os.environ.get("TIMEOUT", "0")) or None
# Strings that must not end up in a committed notebook: where this checkout and $HOME are.
leaks = {os.getcwd(), os.path.dirname(os.getcwd()), os.path.expanduser("~")} - {"/", ""}
failed = []
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    print(f"executing {path} (full mode) ...", flush=True)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
        store_widget_state=True,
        record_timing=False,
    )
    try:
        client.execute()
    except Exception as err:  # keep the partial outputs so the error can be read in the notebook
        failed.append(f"{path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    drop_finished_bars(nb)
    nbformat.write(nb, path)
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: error output {out.get('ename')}: {out.get('evalue')}")
    text = nbformat.writes(nb)
    for leak in sorted(leaks):
        if re.search(re.escape(leak) + r"(?=[/\"'\s])", text):
            problems.append(f"an absolute path of this machine ({leak}) appears in the stored notebook")
    for p in problems:
        failed.append(f"{path}: {p}")
    print(f"  done in {time.perf_counter() - start:.0f} s" + ("" if not problems else f", {len(problems)} problem(s)"), flush=True)
if failed:
    print("\n".join(["FAILED:"] + failed), file=sys.stderr)
    sys.exit(1)
PY
