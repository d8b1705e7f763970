"""Where and how things run: device, precision, seeds, quick vs full mode, and the run record.

Every chapter starts with ``tl.setup()`` and ends with ``tl.report()``; between the two, the
trainers ask this module for the device and the precision, so no chapter hard-codes ``.cuda()``.
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

QUICK_ENV = "TLBOOK_QUICK"
DEVICE_ENV = "TLBOOK_DEVICE"
_TRUE = {"1", "true", "yes", "on"}


def is_quick() -> bool:
    """True when ``TLBOOK_QUICK`` is set to 1/true/yes/on (CI and fast checks); full mode otherwise."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


def pick(full, quick):
    """Return ``quick`` in quick mode and ``full`` otherwise.

    Chapters size their experiments with it, so both modes run the same code paths:
    ``epochs = tl.pick(full=10, quick=1)``.
    """
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
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def precision(dev: torch.device | None = None) -> str:
    """The mixed-precision mode used on ``dev``: ``'bf16'``, ``'fp16'`` or ``'fp32'``.

    bf16 autocast needs tensor cores that do bf16 (compute capability >= 8: A100, H100, L4).
    A T4 (7.5) has fp16 tensor cores only, and fp16's narrow range needs a gradient scaler.
    The CPU stays in fp32: CPU autocast is slower than fp32 for these small convolutions.
    """
    dev = device() if dev is None else torch.device(dev)
    if dev.type == "cuda":
        major, _ = torch.cuda.get_device_capability(dev)
        return "bf16" if major >= 8 else "fp16"
    return "fp32"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(dev: torch.device | None = None, mode: str | None = None):
    """A context manager running the forward pass in the precision :func:`precision` picks."""
    dev = device() if dev is None else torch.device(dev)
    mode = precision(dev) if mode is None else mode
    if mode == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[mode])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats on the same device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_name(dev: torch.device | None = None) -> str:
    """A human-readable name of the device, e.g. ``'NVIDIA H100 80GB HBM3'`` or the CPU model."""
    dev = device() if dev is None else torch.device(dev)
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
    return f"CPU: {name} ({torch.get_num_threads()} threads)"


@dataclass
class RunInfo:
    """What a chapter's stored outputs were produced with; printed by :func:`setup` and :func:`report`."""

    device: str
    device_name: str
    precision: str
    mode: str
    torch_version: str
    seed: int
    started: float = field(default_factory=time.perf_counter)

    def lines(self) -> list[str]:
        return [
            f"device    : {self.device} ({self.device_name})",
            f"precision : {self.precision}",
            f"mode      : {self.mode} ({QUICK_ENV}={'1' if self.mode == 'quick' else 'unset'})",
            f"torch     : {self.torch_version}",
            f"seed      : {self.seed}",
        ]


_current: RunInfo | None = None


def setup(seed: int = 0, verbose: bool = True) -> RunInfo:
    """Start a chapter: seed everything, pick device and precision, print them, start the clock."""
    global _current
    seed_everything(seed)
    dev = device()
    _current = RunInfo(
        device=str(dev),
        device_name=device_name(dev),
        precision=precision(dev),
        mode="quick" if is_quick() else "full",
        torch_version=torch.__version__,
        seed=seed,
    )
    if verbose:
        print("\n".join(_current.lines()))
    return _current


def report() -> dict:
    """End a chapter: print (and return) device, precision, mode, torch version and wall time since :func:`setup`."""
    info = _current if _current is not None else setup(verbose=False)
    wall = time.perf_counter() - info.started
    record = {
        "device": info.device,
        "device_name": info.device_name,
        "precision": info.precision,
        "mode": info.mode,
        "torch": info.torch_version,
        "seed": info.seed,
        "wall_time_s": round(wall, 1),
    }
    print("\n".join(info.lines() + [f"wall time : {wall / 60:.1f} min ({wall:.0f} s)"]))
    return record
