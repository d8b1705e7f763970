#!/usr/bin/env bash
# Stage, on this machine, what scripts/gpu_check.sh needs on a lent GPU machine, which has no network
# and no registry, and gets only the working tree plus the ignored paths named in the device tool's
# `carry` (64 MiB in all). Everything goes into one ignored folder, .cache/gpu/:
#   data/    the dataset files the chapters read, copied from $TLBOOK_DATA (about 25 MiB; not the
#            87 MiB sentence encoder)
#   wheels/  the Python packages the GPU machine lacks (Jupyter's kernel and client, ipywidgets and
#            their needs, for Python 3.12), in the versions this checkout's .venv has
# and prints the `carry` list and the command to give the device tool. Safe to run again: files
# already staged are kept.
#   scripts/gpu_prepare.sh
# GPU_STAGE (default .cache/gpu) and GPU_PYTHON_VERSION (default 3.12) change where and for which
# Python; KINDS_MD (default the device tool's KINDS.md) is the list of packages the machine already has.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x $python ]] || python=python3
data=${TLBOOK_DATA:-../shared/data}
stage=${GPU_STAGE:-.cache/gpu}
pyver=${GPU_PYTHON_VERSION:-3.12}
kinds=${KINDS_MD:-../.library/device/KINDS.md}  # the tool library beside the checkout
[[ -d $data/mnist ]] || { echo "no dataset folder at $data: set TLBOOK_DATA to the offline data (shared/data)" >&2; exit 1; }
mkdir -p "$stage/data" "$stage/wheels"

# --- data: the files tlbook's loaders read (mnist, kmnist, usps, omniglot), in the flat layout -----
files=(mnist/train-images-idx3-ubyte.gz mnist/train-labels-idx1-ubyte.gz
       mnist/t10k-images-idx3-ubyte.gz mnist/t10k-labels-idx1-ubyte.gz
       kmnist/t10k-images-idx3-ubyte.gz kmnist/t10k-labels-idx1-ubyte.gz kmnist/kmnist_classmap.csv
       usps/usps.t.bz2
       omniglot/images_background_small1.zip omniglot/images_background_small2.zip
       omniglot/images_evaluation_repacked.zip omniglot/all_runs.zip)
for f in "${files[@]}"; do
    mkdir -p "$stage/data/$(dirname "$f")"
    # A copy, not a link: a link would travel as a link, and its target stays here.
    cmp -s "$data/$f" "$stage/data/$f" 2>/dev/null || cp "$data/$f" "$stage/data/$f"
done
sums=$(cd "$data" && pwd)/MD5SUMS
if [[ -f $sums ]]; then  # the md5s the data folder was checked with
    awk 'NR == FNR { want[$1]; next } ($2 in want)' <(printf '%s\n' "${files[@]}") "$sums" \
        | (cd "$stage/data" && md5sum --quiet -c -) || { echo "a staged data file does not match $sums" >&2; exit 1; }
fi

# --- wheels: what the chapters import (tlbook's requirements, Jupyter's kernel and client), with
# everything they need, less what the GPU machine already has -------------------------------------
"$python" - "$kinds" "$pyver" > "$stage/wheels.txt" <<'PY'
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

kinds, pyver = Path(sys.argv[1]), sys.argv[2]
# Fallback when KINDS.md is not at hand: what it listed as missing on 2026-11-17 (computed as below).
CARRY = ("asttokens comm debugpy executing fastjsonschema ipykernel ipython ipython-pygments-lexers ipywidgets "
         "jedi jsonschema jsonschema-specifications jupyter-client jupyter-core jupyterlab-widgets matplotlib-inline "
         "nbclient nbformat nest-asyncio2 parso pexpect platformdirs prompt-toolkit ptyprocess pure-eval pyzmq "
         "referencing rpds-py stack-data tornado traitlets wcwidth widgetsnbextension").split()
ROOTS = ["torch", "torchvision", "numpy", "matplotlib", "tqdm", "ipywidgets", "scikit-learn", "scikit-image",
         "pillow", "nbclient", "nbformat", "ipykernel"]
if kinds.is_file():
    text = kinds.read_text()
    listed = re.search(r"nvidia-h200: their image.*?Packages: (.*?)\.\n", text, re.S)
    there = {canonicalize_name(n.strip()) for n in listed.group(1).split(",")}
else:
    print(f"note: {kinds} not found; using the list of packages to carry from 2026-11-17", file=sys.stderr)
    there = None
marker_env = {"python_version": pyver, "python_full_version": pyver + ".3", "sys_platform": "linux",
              "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
seen, todo, carry = set(), list(ROOTS), {}
while todo:
    name = canonicalize_name(todo.pop())
    if name in seen:
        continue
    seen.add(name)
    if (name in there) if there is not None else (name not in CARRY):
        continue
    dist = md.distribution(name)  # the version this checkout's .venv has (CI's pins)
    carry[name] = dist.version
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(marker_env):
            todo.append(req.name)
print("\n".join(f"{n}=={v}" for n, v in sorted(carry.items())))
PY
# Only the wheels of this list stay: an old version left beside a new one would stop the install there.
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$stage/wheels" -r "$stage/wheels.txt" 2> >(grep -v "is ignored: it is neither" >&2)
"$python" - "$stage/wheels" "$stage/wheels.txt" <<'PY'
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

folder, wanted = Path(sys.argv[1]), set(Path(sys.argv[2]).read_text().split())
have = set()
for wheel in folder.glob("*.whl"):
    name, version, _, _ = parse_wheel_filename(wheel.name)
    pin = f"{canonicalize_name(name)}=={version}"
    if pin in wanted:
        have.add(pin)
    else:
        wheel.unlink()
if wanted - have:
    sys.exit(f"missing wheels: {sorted(wanted - have)}")
PY

# The device tool sends no .git: the commit the staged files go with, for RESULTS.md.
echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')" > "$stage/commit.txt"

size=$(du -sm "$stage" | cut -f1)
echo "staged in $stage: $(du -sh "$stage/data" | cut -f1) of data, $(ls "$stage/wheels" | wc -l) wheels ($(du -sh "$stage/wheels" | cut -f1)); ${size} MiB in all"
tree=$(git ls-files -co --exclude-standard -z | du -cm --files0-from=- 2>/dev/null | tail -1 | cut -f1)
if (( size + tree > 60 )); then
    echo "warning: the working tree (${tree} MiB) and $stage (${size} MiB) come near the device tool's 64 MiB" >&2
fi
echo "device tool: run with carry=[\"$stage\"], timeout_s=600 and command=\"bash scripts/gpu_check.sh\""
