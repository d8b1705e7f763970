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
    """A short stable hash of a JSON configuration dict (key order does not matter).

    Only what JSON writes the same way every time is allowed (numbers, strings, bools, None, lists,
    tuples, dicts with string keys): a function or an object has no stable text, and a key made of
    its ``repr`` would change every session and retrain silently.
    """
    _check_json(config, "config")
    text = json.dumps(config, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_json(value, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"cache configuration keys must be strings; {where} has the key {key!r}.")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"cache configuration {where} is a {type(value).__name__} ({value!r:.60}), which has no stable text form; "
        "put the plain values that determine it in the config instead (names, numbers, lists)."
    )


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


def save_model(model, path, **extra) -> Path:
    """Write a model's weights *and* its frozen blocks atomically (a temporary file, then a rename).

    ``state_dict()`` alone forgets which blocks :func:`tlbook.freeze` froze; this file keeps it, and
    :func:`load_model` freezes them again, BatchNorm statistics included. ``extra`` are plain values
    (numbers, strings, lists, dicts) stored beside them, e.g. the training history.
    """
    from .transfer import frozen_state

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    frozen = frozen_state(model) if hasattr(model, "block_names") else {}
    return save_atomic({"state_dict": state, "frozen": frozen, **extra}, path)


def load_model(path, model):
    """Load what :func:`save_model` wrote into ``model`` (same architecture); returns the model.

    Loaded with ``weights_only=True``. A file from another architecture is an error that says so.
    """
    _restore(model, path)
    return model


def _restore(model, path) -> dict:
    """Load weights and frozen blocks from ``path`` into ``model``; return the whole stored entry."""
    from .transfer import restore_frozen_state

    entry = load_weights(path, map_location="cpu")
    _load_state(model, entry["state_dict"], path)
    if entry.get("frozen") and hasattr(model, "block_names"):
        restore_frozen_state(model, entry["frozen"])
    return entry


def _load_state(model, state_dict, path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise RuntimeError(
            f"The cached file {Path(path).name} does not fit this model: it was saved from another architecture "
            f"({first[1].strip() if len(first) > 1 else first[0]}). The configuration that keys it does not describe "
            f"everything that shapes the model: add the missing setting (e.g. widths) to the config, or delete "
            f"{path} to retrain."
        ) from None


def cached_model(config: dict, build, train, name: str = "model", verbose: bool = True):
    """Return the model described by ``config``, trained once and cached on disk.

    Args:
        config: everything that determines the trained weights (JSON values only); part of the key,
            together with tlbook's version and the run mode (quick/full).
        build: ``build() -> nn.Module``, the untrained architecture.
        train: ``train(model) -> history dict``, called only when the cache has no entry.
        name: file-name prefix, e.g. ``'mnist-cnn'``.

    Returns:
        ``(model, info)``: the trained model in eval mode on the runtime device, and ``{'history', 'path', 'cached'}``.
        A cache hit returns the same weights, BatchNorm statistics and frozen blocks as the miss that wrote it.
    """
    from . import __version__
    from .runtime import device, is_quick

    if not callable(build) or not callable(train):
        raise TypeError("cached_model needs build() -> model and train(model) -> history functions.")
    full_config = {"config": config, "tlbook": __version__, "quick": is_quick()}
    path = cache_dir() / "models" / f"{name}-{config_key(full_config)}.pt"
    model = build()
    if path.exists():
        entry = _restore(model, path)
        model.to(device())
        if verbose:
            print(f"loaded cached {name} from $TLBOOK_CACHE/models/{path.name}")
        model.eval()
        return model, {"history": entry.get("history", {}), "path": path, "cached": True}
    history = train(model)
    save_model(model, path, history=_plain(history), config=json.dumps(full_config))
    # Return what a hit returns: the trained module keeps fit's channels_last convolution weights, whose
    # kernels round differently, so a run from an empty cache would not repeat a run from a full one.
    model = build()
    _restore(model, path)
    if verbose:
        print(f"trained {name} and cached it at $TLBOOK_CACHE/models/{path.name}")
    model.to(device()).eval()
    return model, {"history": history, "path": path, "cached": False}


def source_model(
    dataset: str = "mnist",
    arch: str = "cnn",
    *,
    train_size: int | None = None,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 128,
    labels: str = "true",
    shift: int = 0,
    channels: int = 1,
    seed: int = 0,
    verbose: bool = False,
    **arch_options,
):
    """The book's one recipe for a source model: trained once on a dataset's train split (Omniglot's:
    ``'background'``), then cached.

    Chapters that ask for the same arguments share one file; the cache key *is* these arguments,
    so a key can never drift from what was trained.

    Args:
        dataset, arch: a :data:`tlbook.DATASETS` name and a :func:`tlbook.make_model` architecture.
        train_size: train on a seeded random part of this many images of the train split
            (``tl.random_split(train, [train_size, rest], seed=0)[0]``); ``None`` = all of it.
        epochs, lr, batch_size: :func:`tlbook.fit`'s defaults otherwise (AdamW, cosine schedule).
        labels: ``'true'``, or ``'shuffled'`` (labels permuted at random: a source that memorised
            noise, Chapter 1's control).
        shift: random translation of up to ``shift`` pixels per training batch (Hinton et al.'s jitter).
        channels: image channels to load (3 to pair with colour domains).
        seed: initialisation, batch order and the label shuffle.
        **arch_options: passed to :func:`tlbook.make_model` (``widths=``, ``hidden=``, ``dropout=`` ...).

    Returns:
        ``(model, info)`` as :func:`cached_model`: the model in eval mode, ``info['history']``, ``info['cached']``.
    """
    from .checks import positive_number, seed_value, whole_number
    from .data import random_split
    from .datasets import SPLITS, load_dataset
    from .models import make_model, unknown_name_error
    from .train import fit, random_translate

    if labels not in ("true", "shuffled"):
        raise unknown_name_error("labels", labels, ["true", "shuffled"])
    recipe = dict(recipe="source_model", dataset=dataset, arch=arch, train_size=train_size,
                  epochs=whole_number(epochs, "epochs"), lr=positive_number(lr, "lr"),
                  batch_size=whole_number(batch_size, "batch_size"), labels=labels,
                  shift=whole_number(shift, "shift", minimum=0), channels=channels, seed=seed_value(seed),
                  arch_options=arch_options)
    # Train on the first split: 'train', or Omniglot's 'background' alphabets (load_dataset rejects unknown names).
    split = SPLITS[dataset][0] if isinstance(dataset, str) and dataset in SPLITS else "train"
    pool = load_dataset(dataset, split, channels=channels)
    if train_size is not None:
        train_size = whole_number(train_size, "train_size", maximum=len(pool))
        pool = random_split(pool, [train_size, len(pool) - train_size], seed=0)[0]
    if labels == "shuffled":
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 1)).to(pool.device)
        pool = pool.replace(labels=pool.labels[order], name=f"{pool.name} (labels shuffled)")
    augment = (lambda images, g: random_translate(images, shift, g)) if shift else None
    return cached_model(
        recipe,
        build=lambda: make_model(arch, num_classes=pool.num_classes, in_channels=channels, seed=seed, **arch_options),
        train=lambda m: fit(m, pool, epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, seed=seed,
                            desc=f"source: {dataset} {arch}"),
        name=f"source-{dataset}-{arch}",
        verbose=verbose,
    )


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
