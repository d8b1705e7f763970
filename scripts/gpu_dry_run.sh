#!/usr/bin/env bash
# Rehearse scripts/gpu_check.sh here before spending device time, as the device tool would run it:
# in a copy of the working tree with the staged folder beside it, under a Python that has only the
# packages the GPU machine has (per KINDS.md: linked from .venv, so no Jupyter), installing wheels
# staged for this machine's Python, with GPU_CHECK_DRY=1 (tiny benchmark, notebooks in quick mode).
#   scripts/gpu_dry_run.sh                                  # results in artifacts/gpu_check/
#   GPU_CHECK_NOTEBOOKS="book/tour.ipynb" scripts/gpu_dry_run.sh
# Needs a system python3 of the same minor version as .venv's (for its compiled packages).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv_python=$root/.venv/bin/python
pyver=$("$venv_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
bare=${BARE_PYTHON:-/usr/bin/python$pyver}
[[ -x $bare ]] || { echo "no $bare: set BARE_PYTHON to a Python $pyver without Jupyter" >&2; exit 1; }
sim=$(mktemp -d)
trap 'rm -rf "$sim"' EXIT

# The working tree as the device tool sends it: tracked files and untracked ones git does not ignore.
mkdir -p "$sim/tree"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$sim/tree"
GPU_STAGE=$sim/tree/.cache/gpu GPU_PYTHON_VERSION=$pyver scripts/gpu_prepare.sh | grep -v '^device tool'

# The GPU machine's packages, in .venv's versions: every distribution KINDS.md lists, linked.
"$venv_python" - "$sim/site" "${KINDS_MD:-../.library/device/KINDS.md}" <<'PY'
import importlib.metadata as md
import os
import re
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

site, kinds = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
there = {canonicalize_name(n.strip()) for n in re.search(r"nvidia-h200: their image.*?Packages: (.*?)\.\n", kinds, re.S).group(1).split(",")}
site.mkdir()
for dist in md.distributions():
    if canonicalize_name(dist.metadata["Name"]) not in there or not dist.files:
        continue
    for top in {f.parts[0] for f in dist.files if not f.parts[0].startswith("..")}:
        source, target = Path(dist.locate_file(top)), site / top
        if source.exists() and not target.exists():
            os.symlink(source, target)
PY

cd "$sim/tree"
env -u VIRTUAL_ENV PATH="/usr/local/bin:/usr/bin:/bin" PYTHONPATH="$sim/site" GPU_CHECK_PYTHON="$bare" \
    GPU_CHECK_DRY=1 OUT="${OUT:-$root/artifacts}" bash scripts/gpu_check.sh
