"""Where and how things run: device, precision, seeds, quick vs full mode, and the run record.

Every chapter starts with ``tl.setup()`` and ends with ``tl.report()``; between the two, the
trainers ask this module for the device and the precision, so no chapter hard-codes ``.cuda()``;
sections are timed with ``with tl.timed("2.3 schedules"):``, and figures carry ``tl.stamp()``.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import numbers
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

QUICK_ENV = "TLBOOK_QUICK"
DEVICE_ENV = "TLBOOK_DEVICE"
_TRUE = {"1", "true", "yes", "on"}


def is_quick() -> bool:
    """True when ``TLBOOK_QUICK`` is set to 1/true/yes/on (CI and fast checks); full mode otherwise."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


_MISSING = object()  # None is a valid size ("all"), so "not given" needs its own marker


def pick(full=_MISSING, quick=_MISSING):
    """Return ``quick`` in quick mode and ``full`` otherwise (any types, ``None`` included).

    Chapters size their experiments with it, so both modes run the same code paths:
    ``epochs = tl.pick(full=10, quick=1)``. Both must be given, whichever mode runs now.
    """
    missing = [name for name, value in (("full", full), ("quick", quick)) if value is _MISSING]
    if missing:
        raise TypeError(f"tl.pick needs both sizes, {' and '.join(missing)} is missing: "
                        "write e.g. tl.pick(full=10, quick=1).")
    return quick if is_quick() else full


def device() -> torch.device:
    """The device to compute on: ``TLBOOK_DEVICE`` if set, else CUDA, then Apple MPS, then CPU."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        try:
            dev = torch.device(requested)
        except RuntimeError as err:
            raise ValueError(
                f"{DEVICE_ENV}={requested!r} is not a device torch knows; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'."
            ) from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{DEVICE_ENV}={requested!r} but torch sees no CUDA GPU; unset it to use the CPU.")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"{DEVICE_ENV}={requested!r} but torch sees {torch.cuda.device_count()} GPU(s); "
                               "use 'cuda' or 'cuda:0'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _as_device(dev) -> torch.device:
    """``dev`` as a torch.device (``None``: :func:`device`), or a ValueError naming it."""
    if dev is None:
        return device()
    try:
        return torch.device(dev)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"dev={dev!r} is not a device torch knows; pass e.g. 'cpu', 'cuda' or tl.device().") from err


def precision(dev: torch.device | None = None) -> str:
    """The mixed-precision mode used on ``dev``: ``'bf16'``, ``'fp16'`` or ``'fp32'``.

    bf16 autocast needs tensor cores that do bf16 (compute capability >= 8: A100, H100, L4).
    A T4 (7.5) has fp16 tensor cores only, and fp16's narrow range needs a gradient scaler.
    The CPU stays in fp32: CPU autocast is slower than fp32 for these small convolutions.
    """
    dev = _as_device(dev)
    if dev.type == "cuda":
        major, _ = torch.cuda.get_device_capability(dev)
        return "bf16" if major >= 8 else "fp16"
    return "fp32"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(dev: torch.device | None = None, mode: str | None = None):
    """A context manager running the forward pass in the precision :func:`precision` picks."""
    dev = _as_device(dev)
    mode = precision(dev) if mode is None else mode
    if mode not in ("fp32", *_DTYPES):
        raise ValueError(f"mode={mode!r} is not a precision; use 'bf16', 'fp16', 'fp32' or None (tl.precision(dev)).")
    if mode == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[mode])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats on the same device; seed: int in [0, 2**64)."""
    # bool is an int to Python, but seed=True is a slip, not a seed.
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be a whole number, got {seed!r} ({type(seed).__name__}); use e.g. seed=0.")
    if not 0 <= seed < 2**64:  # torch.manual_seed's range
        raise ValueError(f"seed must be in [0, 2**64), got {seed}; use e.g. seed=0.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_name(dev: torch.device | None = None) -> str:
    """A human-readable name of the device, e.g. ``'NVIDIA H100 80GB HBM3'`` or the CPU model."""
    dev = _as_device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU: {name} ({threads} thread{'s' if threads != 1 else ''})"


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder *args``'s output, or None without git, outside a repository, or after 3 s."""
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _tlbook_commit() -> str:
    """The commit tlbook is imported from: ``'<sha>'``, ``'<sha>+dirty'`` or ``'unknown'``.

    A checkout: ``git rev-parse HEAD``, plus ``+dirty`` when the package's own files differ from it
    (``git status --porcelain -- tlbook``: an edited notebook does not make the helpers dirty).
    A ``pip install git+...``: the commit pip recorded in the distribution's ``direct_url.json``.
    """
    package = Path(__file__).resolve().parent
    # Only if git tracks this very package: a venv inside some other repository must not report that repository.
    if _git(package, "ls-files", "--error-unmatch", Path(__file__).name) is not None:
        head = _git(package, "rev-parse", "HEAD")
        if head:
            return head + ("+dirty" if _git(package, "status", "--porcelain", "--", ".") else "")
    try:
        direct_url = importlib.metadata.distribution("tlbook").read_text("direct_url.json")
        return json.loads(direct_url)["vcs_info"]["commit_id"]
    except (importlib.metadata.PackageNotFoundError, TypeError, KeyError, ValueError):
        return "unknown"


@dataclass
class RunInfo:
    """What a chapter's stored outputs were produced with; printed by :func:`setup` and :func:`report`.

    ``seed`` is None when :func:`setup` was never called (nothing was seeded); ``sections`` maps
    each :func:`timed` name to its seconds.
    """

    device: str
    device_name: str
    precision: str
    mode: str
    torch_version: str
    seed: int | None
    started: float = field(default_factory=time.perf_counter)
    tlbook_version: str = "unknown"
    tlbook_commit: str = "unknown"
    numpy_version: str = np.__version__
    python_version: str = field(default_factory=platform.python_version)
    sections: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        commit = self.tlbook_commit[:10] + ("+dirty" if self.tlbook_commit.endswith("+dirty") else "")
        width = max(map(len, self.sections), default=0)
        sections = [f"{'sections  :' if i == 0 else '':11} {name:{width}} {seconds:7.1f} s"
                    for i, (name, seconds) in enumerate(self.sections.items())]
        return [
            f"device    : {self.device} ({self.device_name})",
            f"precision : {self.precision}",
            f"mode      : {self.mode} ({QUICK_ENV}={'1' if self.mode == 'quick' else 'unset'})",
            f"seed      : {'not set (tl.setup() was not called)' if self.seed is None else self.seed}",
            f"tlbook    : {self.tlbook_version} (commit {commit})",
            f"torch     : {self.torch_version}",
            f"numpy     : {self.numpy_version}",
            f"python    : {self.python_version}",
        ] + sections


_current: RunInfo | None = None


def _new_run(seed: int | None) -> RunInfo:
    from . import __version__  # at call time: the package imports this module before it is complete

    dev = device()
    return RunInfo(device=str(dev), device_name=device_name(dev), precision=precision(dev),
                   mode="quick" if is_quick() else "full", torch_version=torch.__version__, seed=seed,
                   tlbook_version=__version__, tlbook_commit=_tlbook_commit())


def _run() -> RunInfo:
    """The current run; without :func:`setup`, one is started here, unseeded (seeding now would change results)."""
    global _current
    if _current is None:
        _current = _new_run(seed=None)
    return _current


def setup(seed: int = 0, verbose: bool = True) -> RunInfo:
    """Start a chapter: seed everything, pick device and precision, print them, start the clock.

    A new run forgets the sections timed before it.
    """
    global _current
    seed_everything(seed)
    _current = _new_run(int(seed))
    if verbose:
        print("\n".join(_current.lines()))
    return _current


def _synchronize() -> None:
    # GPU work is queued, not done, when Python moves on: wait for it so a section's time includes it.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.synchronize()


def timed(name: str):
    """Time a section of a chapter into the current run; :func:`report` prints the sections.

    ``with tl.timed("5.7 CNN students"): ...``. A name timed twice (a loop, a re-run cell) adds up;
    a section that raises is not recorded. Queued GPU work is waited for at both ends, so the
    seconds are the section's own. Works without :func:`setup` (the run starts at the first section).
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string naming the section, got {name!r}; "
                        'e.g. tl.timed("2.3 schedules").')
    return _timed(_run(), name)


@contextlib.contextmanager
def _timed(run: RunInfo, name: str):
    _synchronize()
    start = time.perf_counter()
    yield
    _synchronize()
    run.sections[name] = run.sections.get(name, 0.0) + time.perf_counter() - start


def report() -> dict:
    """End a chapter: print and return what produced its outputs and how long it took.

    Keys: device, device_name, precision, mode, torch, seed, wall_time_s (since :func:`setup`),
    tlbook (version), tlbook_commit (see ``_tlbook_commit``), numpy, python, and sections
    (``{name: seconds}`` from :func:`timed`, in the order first timed).
    """
    info = _run()
    wall = time.perf_counter() - info.started
    record = {
        "device": info.device,
        "device_name": info.device_name,
        "precision": info.precision,
        "mode": info.mode,
        "torch": info.torch_version,
        "seed": info.seed,
        "wall_time_s": round(wall, 1),
        "tlbook": info.tlbook_version,
        "tlbook_commit": info.tlbook_commit,
        "numpy": info.numpy_version,
        "python": info.python_version,
        "sections": {name: round(seconds, 2) for name, seconds in info.sections.items()},
    }
    print("\n".join(info.lines() + [f"wall time : {wall / 60:.1f} min ({wall:.0f} s)"]))
    return record


def stamp() -> str:
    """One line saying what produced a result, for figures (``tl.plots.stamp(fig)``) and tables.

    e.g. ``'CPU: AMD EPYC 7B13 (2 threads) · fp32 · full mode · seed 0'``.
    """
    run = _run()
    seed = "unseeded" if run.seed is None else f"seed {run.seed}"
    return f"{run.device_name} · {run.precision} · {run.mode} mode · {seed}"

