"""Trained models cached on disk, keyed by the configuration that made them.

Chapters pretrain their source models themselves (no weights are downloaded). Training one takes
seconds on a GPU and a minute or two on a laptop, so the result is kept: the key is a hash of the
configuration (architecture, data, epochs, seed, tlbook version, mode), writes are atomic (a
temporary file renamed into place, so an interrupted run leaves no half-written file) and loads use
``torch.load(weights_only=True)``, which never runs code from the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

CACHE_ENV = "TLBOOK_CACHE"


def cache_dir() -> Path:
    """Where tlbook keeps downloaded data and trained models: ``$TLBOOK_CACHE`` or ``~/.cache/tlbook``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tlbook"


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration dict (key order does not matter)."""
    try:
        text = json.dumps(config, sort_keys=True, default=str)
    except TypeError as err:  # pragma: no cover - default=str makes almost anything serialisable
        raise TypeError(f"cache configuration must be JSON-serialisable: {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_atomic(obj, path) -> Path:
    """``torch.save(obj, path)`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_weights(path, map_location=None):
    """Load a file written by :func:`save_atomic` with ``weights_only=True`` (tensors, dicts, lists, numbers)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No cached file at {path}.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(
            f"Could not read {path} ({type(err).__name__}: {err}). Delete it and run again to rebuild it."
        ) from err


def cached_model(config: dict, build, train, name: str = "model", verbose: bool = True):
    """Return the model described by ``config``, trained once and cached on disk.

    Args:
        config: everything that determines the trained weights (JSON-able); part of the key,
            together with tlbook's version and the run mode (quick/full).
        build: ``build() -> nn.Module``, the untrained architecture.
        train: ``train(model) -> history dict``, called only when the cache has no entry.
        name: file-name prefix, e.g. ``'mnist-cnn'``.

    Returns:
        ``(model, info)``: the trained model in eval mode on the runtime device, and ``{'history', 'path', 'cached'}``.
    """
    from . import __version__
    from .runtime import device, is_quick

    full_config = {"config": config, "tlbook": __version__, "quick": is_quick()}
    path = cache_dir() / "models" / f"{name}-{config_key(full_config)}.pt"
    model = build()
    if path.exists():
        entry = load_weights(path, map_location="cpu")
        model.load_state_dict(entry["state_dict"])
        model.to(device())
        if verbose:
            print(f"loaded cached {name} from $TLBOOK_CACHE/models/{path.name}")
        model.eval()
        return model, {"history": entry.get("history", {}), "path": path, "cached": True}
    history = train(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_atomic({"state_dict": state, "history": _plain(history), "config": json.dumps(full_config, default=str)}, path)
    if verbose:
        print(f"trained {name} and cached it at $TLBOOK_CACHE/models/{path.name}")
    model.to(device()).eval()
    return model, {"history": history, "path": path, "cached": False}


def _plain(history):
    """Keep only what ``weights_only`` loading accepts: numbers, strings, lists, dicts."""
    if isinstance(history, dict):
        return {str(k): _plain(v) for k, v in history.items()}
    if isinstance(history, (list, tuple)):
        return [_plain(v) for v in history]
    if isinstance(history, (int, float, str, bool)) or history is None:
        return history
    if torch.is_tensor(history):
        return history.detach().cpu()
    return str(history)
