#!/usr/bin/env bash
# The book on a lent GPU machine, in one call of the device tool (15 minutes of device time per
# session: this script stays within GPU_CHECK_BUDGET, 540 s by default). Stage what it needs first,
# on this side: scripts/gpu_prepare.sh, then give the device tool
#     carry=[".cache/gpu"], timeout_s=600, command="bash scripts/gpu_check.sh"
# Stages, each with a time limit; one that fails or runs out of time is recorded and the next runs:
#   1. install the carried wheels (Jupyter's kernel and client, ipywidgets) into a temporary folder
#   2. benchmarks/bench_loop.py: tl.fit against a DataLoader loop (alone on the machine)
#   3. every chapter notebook under book/ in full mode, executed with nbclient, all at once (up to 8;
#      GPU_CHECK_JOBS) until the budget is spent
#      (Chapter 7 stops at section 7.3: its 87 MiB sentence encoder cannot travel within the 64 MiB the
#      device tool carries, so its row reports the cells done before that)
# Writes to $OUT/gpu_check/ (./artifacts/gpu_check without $OUT): RESULTS.md (what, device, seconds,
# status), bench.log, run.log (everything printed) and notebooks.tar.gz (the executed notebooks, one
# file: the device tool brings back at most 8).
#
# GPU_CHECK_DRY=1 rehearses it on a machine without a GPU: a one-epoch benchmark with small widths,
# the notebooks in quick mode, one at a time, a budget of 1800 s.
# Other settings: GPU_CHECK_STAGES (default "bench notebooks"), GPU_CHECK_NOTEBOOKS (paths, default
# every book/*.ipynb), GPU_CHECK_BUDGET (s), GPU_CHECK_JOBS, GPU_CHECK_THREADS (per kernel),
# GPU_CHECK_PYTHON (default python3), GPU_STAGE (default .cache/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${GPU_CHECK_PYTHON:-python3}
stage=${GPU_STAGE:-.cache/gpu}
dry=${GPU_CHECK_DRY:-0}
stages=" ${GPU_CHECK_STAGES:-bench notebooks} "
if [[ -n ${GPU_CHECK_NOTEBOOKS:-} ]]; then
    read -r -a notebooks <<< "$GPU_CHECK_NOTEBOOKS"
else
    mapfile -t notebooks < <(find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
fi
if [[ $dry == 1 ]]; then
    budget=${GPU_CHECK_BUDGET:-1800} jobs=${GPU_CHECK_JOBS:-1} mode=quick
    bench_args=(--epochs 1 --widths 4 4 4)
else
    # Every notebook at once by default: the chapters' small models leave the GPU mostly idle, and
    # one at a time would leave the last ones no time.
    budget=${GPU_CHECK_BUDGET:-540} jobs=${GPU_CHECK_JOBS:-$(( ${#notebooks[@]} < 8 ? ${#notebooks[@]} : 8 ))} mode=full
    bench_args=(--epochs 5)
fi
(( jobs >= 1 )) || jobs=1
out=${OUT:-$root/artifacts}/gpu_check
work=$(mktemp -d)
mkdir -p "$out" "$work/nb" && rm -f "$out"/*
begin=$SECONDS
left() { echo $(( budget - (SECONDS - begin) )); }
limit() { local l; l=$(( $(left) - 20 )); (( l < $1 )) || l=$1; (( l > 0 )) && echo "$l" || echo 0; }  # 20 s kept for the results
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$work/rows.tsv"; }  # what, seconds, status
status_of() { case $1 in 0) echo ok ;; 124|137) echo "timeout after $2 s" ;; *) echo "failed (exit $1)" ;; esac; }

main() {
echo "== gpu_check: $mode mode, budget $budget s, $jobs notebook(s) at a time, $(date -u '+%Y-%m-%d %H:%M UTC')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# --- 1. packages: Jupyter is missing there; the wheels came in the carried folder -------------------
t0=$SECONDS
site=$work/site
if "$py" -c "import nbclient, nbformat, ipykernel, ipywidgets, IPython" 2>/dev/null; then
    row "install wheels" 0 "skipped: already importable"
elif ls "$stage"/wheels/*.whl >/dev/null 2>&1; then
    timeout -k 5 "$(limit 120)" "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check --upgrade --target "$site" "$stage"/wheels/*.whl
    rc=$?; row "install wheels ($(ls "$stage"/wheels/*.whl | wc -l))" $((SECONDS - t0)) "$(status_of $rc $((SECONDS - t0)))"
else
    row "install wheels" 0 "failed: no wheels in $stage/wheels (run scripts/gpu_prepare.sh, carry $stage)"
fi
# tlbook from this checkout, for the benchmark and for the notebooks' kernels.
export PYTHONPATH=$site:$root${PYTHONPATH:+:$PYTHONPATH}
export TLBOOK_DATA=$root/$stage/data TLBOOK_CACHE=$work/cache PYTHONUNBUFFERED=1 JUPYTER_PLATFORM_DIRS=1 HF_HUB_OFFLINE=1
[[ -d $TLBOOK_DATA/mnist ]] || echo "warning: no data in $TLBOOK_DATA (run scripts/gpu_prepare.sh, carry $stage)"
unset TLBOOK_QUICK TLBOOK_DEVICE
[[ $dry == 1 ]] && export TLBOOK_QUICK=1
device=$("$py" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')" 2>/dev/null || echo unknown)
versions=$("$py" -c "import sys, torch; print(f'Python {sys.version.split()[0]}, torch {torch.__version__}')" 2>/dev/null)

# --- 2. the loop benchmark, alone ----------------------------------------------------------------
if [[ $stages == *" bench "* ]]; then
    echo "== benchmarks/bench_loop.py ${bench_args[*]}"
    t0=$SECONDS
    timeout -k 10 "$(limit 200)" "$py" benchmarks/bench_loop.py "${bench_args[@]}" 2>&1 | tee "$out/bench.log"
    rc=${PIPESTATUS[0]}; row "benchmarks/bench_loop.py ${bench_args[*]}" $((SECONDS - t0)) "$(status_of $rc $((SECONDS - t0)))"
fi
[[ $stages == *" notebooks "* ]] || notebooks=()

# --- 3. the notebooks ----------------------------------------------------------------------------
cat > "$work/run_notebook.py" <<'PY'
"""Execute one notebook until a deadline; save it after every cell; write a summary (json)."""
import json, os, re, sys, time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

src, dst, summary, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
nb = nbformat.read(src, as_version=4)
code_cells = sum(c.cell_type == "code" for c in nb.cells)
for cell in nb.cells:  # the stored outputs are not this run's: a cell the deadline stops shows none
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
done = []


def saved(cell_index=None, **_):
    done.append(cell_index)
    nbformat.write(nb, dst)  # what ran so far survives a kill


client = NotebookClient(
    nb, kernel_name="python3", timeout_func=lambda cell: max(1, int(deadline - time.time())),
    resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
    store_widget_state=True, record_timing=True, on_cell_executed=saved)
began, status = time.time(), "ok"
try:
    client.execute()
except CellTimeoutError:
    status = "timeout (budget spent)"
except CellExecutionError as err:
    status = f"error: {err.ename}: {err.evalue}"
except DeadKernelError:
    status = "error: the kernel died"
except Exception as err:  # kernel start-up and the like
    status = f"error: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
seconds = time.time() - began
nbformat.write(nb, dst)
text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
wall = re.findall(r"wall time\s*:\s*(.*)", text)  # tl.report()'s own record
status = re.sub(r"\s+", " ", status)[:160].replace("|", "/") + f"; {len(done)}/{code_cells} cells" + (f"; tl.report: {wall[-1]}" if wall else "")
json.dump({"seconds": round(seconds), "status": status}, open(summary, "w"))
print(f"{src}: {seconds:.0f} s, {status}", flush=True)
PY
echo "== ${#notebooks[@]} notebook(s) in $mode mode, $jobs at a time"
# The cores shared out between the kernels (torch would start a thread per core in each); a dry run
# keeps this machine's setting.
[[ $dry == 1 ]] || export OMP_NUM_THREADS=${GPU_CHECK_THREADS:-$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))}
deadline=$(( $(date +%s) + $(limit 100000) ))
for nb in "${notebooks[@]}"; do
    while (( $(jobs -rp | wc -l) >= jobs )); do wait -n; done
    name=$(basename "$nb" .ipynb)
    if (( $(limit 100000) <= 30 )); then
        echo '{"seconds": 0, "status": "not run: budget spent"}' > "$work/$name.json"; continue
    fi
    echo "executing $nb ..."
    # nbclient stops at the deadline and shuts its kernel down; timeout is the backstop.
    ( timeout -k 10 $(( deadline - $(date +%s) + 30 )) "$py" "$work/run_notebook.py" "$nb" "$work/nb/$name.ipynb" \
          "$work/$name.json" "$deadline" > "$work/$name.log" 2>&1
      rc=$?; cat "$work/$name.log"
      [[ -f $work/$name.json ]] || echo "{\"seconds\": \"?\", \"status\": \"$(status_of $rc '?')\"}" > "$work/$name.json" ) &
done
wait
for nb in "${notebooks[@]}"; do
    name=$(basename "$nb" .ipynb)
    [[ -f $work/$name.json ]] && "$py" -c "import json, sys; s = json.load(open(sys.argv[1])); print(f'{sys.argv[2]}\t{s[\"seconds\"]}\t{s[\"status\"]}')" \
        "$work/$name.json" "$nb" >> "$work/rows.tsv"
done
ls "$work"/nb/*.ipynb >/dev/null 2>&1 && tar -czf "$out/notebooks.tar.gz" -C "$work/nb" .

# --- results -------------------------------------------------------------------------------------
{
    echo "# GPU check: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "$mode mode$([[ $dry == 1 ]] && echo ' (dry run: tiny benchmark, quick notebooks)'); $device; $versions;" \
         "commit $(cat "$stage/commit.txt" 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown); notebooks $jobs at a time" \
         "(their seconds overlap when more than one); total $((SECONDS - begin)) s of a $budget s budget."
    echo
    echo "| what | device | seconds | status |"
    echo "|---|---|---|---|"
    while IFS=$'\t' read -r what secs status; do echo "| $what | $device | $secs | $status |"; done < "$work/rows.tsv"
    echo
    echo "Benchmark summary (bench.log has every epoch):"
    echo
    echo '```'
    grep -A8 '^device:' "$out/bench.log" 2>/dev/null || echo "(no summary: see bench.log)"
    echo '```'
} > "$out/RESULTS.md"
cat "$out/RESULTS.md"
}

# A pipe, not `exec > >(tee ...)`: bash's `wait` would wait for that tee too, which never ends.
main 2>&1 | tee "$out/run.log"
rm -rf "$work"
