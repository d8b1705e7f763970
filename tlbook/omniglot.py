"""Omniglot's files: the official zips of PNG drawings, checked, decoded once and cached as packed bits.

Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic program
induction", Science 2015. :func:`tlbook.load_dataset` (``'omniglot'``) unpacks and resizes what
:func:`packed` returns; where the zips come from is decided as for every dataset (:mod:`tlbook.files`).
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
import torch

from .cache import load_weights, save_atomic
from .files import _md5_error, _missing_error, _prepare_lock, _work_dir, data_root

URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
# Each part of a split is one zip; where two files are listed, either will do (same PNGs inside).
_PARTS = {
    "background": [
        [("images_background_small1.zip", "e704a628b5459e08445c13499850abc4")],
        [("images_background_small2.zip", "b75a71a51d3b13f821f212756fe481fd")],
    ],
    "evaluation": [
        [
            ("images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),  # the official zip
            # the same 13180 PNGs in a repacked zip (the offline copy in shared/data)
            ("images_evaluation_repacked.zip", "38b7d089f6fde29684a527400983af18"),
        ]
    ],
    # Lake et al.'s 20 within-alphabet one-shot runs (python/one-shot-classification/all_runs.zip)
    "runs": [[("all_runs.zip", "e8996daecdf12afeeb4a53a179f06b19")]],
}
_URLS = {"runs": URL + "one-shot-classification/"}
SIDE = 105
# Bump when the decoded-file format changes, so an old cache file is not misread.
CACHE_VERSION = 1


def _checked_zips(split: str) -> list:
    """Paths of the checked zips that make up an Omniglot split, downloading them when allowed."""
    from torchvision.datasets.utils import check_integrity, download_url

    root, work = data_root(), _work_dir() / "omniglot-py"
    folders = ([root / "omniglot", root / "omniglot-py"] if root is not None else []) + [work]
    paths, missing = [], []
    for alternatives in _PARTS[split]:
        found = next(
            ((f / name, md5) for name, md5 in alternatives for f in folders if (f / name).is_file()), None
        )
        if found is None and root is None:
            name, md5 = alternatives[0]
            download_url(_URLS.get(split, URL) + name, work, name, md5)  # checks the md5
            found = (work / name, md5)
        if found is None:
            missing.append(" or ".join(name for name, _ in alternatives))
            continue
        path, md5 = found
        if not check_integrity(path, md5):
            raise _md5_error(path, md5, _URLS.get(split, URL) + alternatives[0][0])
        paths.append(path)
    if missing:
        raise _missing_error("Omniglot", missing, folders, _URLS.get(split, URL))
    return paths


def _decode(zips: list) -> dict:
    """Read every PNG of the zips: strokes packed as bits, one label per character.

    Returns ``{'bits': (N, ceil(105*105/8)) uint8, 'labels': (N,) int64, 'classes': ['Alphabet/characterNN', ...]}``,
    sorted by class and file name. Packed bits keep the cache file small (the PNGs are 1-bit).
    """
    from PIL import Image

    entries = []  # (class name, file name, zip index, member)
    for z, path in enumerate(zips):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                parts = member.split("/")
                if member.endswith(".png") and "__MACOSX" not in parts and len(parts) >= 3:
                    entries.append((f"{parts[-3]}/{parts[-2]}", parts[-1], z, member))
    # small1 and small2 both contain Latin and Greek (byte-identical files): keep each drawing once.
    entries = sorted({(c, f): (c, f, z, m) for c, f, z, m in entries}.values())
    classes = sorted({e[0] for e in entries})
    index = {c: k for k, c in enumerate(classes)}
    pixels = SIDE * SIDE
    bits = np.empty((len(entries), (pixels + 7) // 8), dtype=np.uint8)
    archives = [zipfile.ZipFile(p) for p in zips]
    try:
        for i, (_, _, z, member) in enumerate(entries):
            with Image.open(io.BytesIO(archives[z].read(member))) as img:
                grey = np.asarray(img.convert("L"))
            if grey.shape != (SIDE, SIDE):
                raise ValueError(f"{zips[z]}:{member} is {grey.shape}, expected 105x105; is this the Omniglot zip?")
            # The PNGs draw black strokes on white; invert so strokes are 1 on 0, like MNIST.
            bits[i] = np.packbits((grey < 128).reshape(-1))
    finally:
        for a in archives:
            a.close()
    labels = torch.tensor([index[e[0]] for e in entries], dtype=torch.long)
    return {"bits": torch.from_numpy(bits), "labels": labels, "classes": classes, "version": CACHE_VERSION}


def packed(split: str) -> dict:
    """The decoded split (see :func:`_decode`), from the cache file or decoded from the zips and cached."""
    # Decoding 19k PNGs takes seconds, so the result is cached once per split; every size reuses it.
    path = cache_path(split)
    with _prepare_lock(f"omniglot-{split}"):  # another process may be decoding it right now
        if path.exists():
            return load_weights(path)
        entry = _decode(_checked_zips(split))
        save_atomic(entry, path)
    return entry


def cache_path(split: str):
    """Where the decoded split is cached: in the data working folder, named with :data:`CACHE_VERSION`."""
    return _work_dir() / f"omniglot-{split}-v{CACHE_VERSION}.pt"


def one_shot_runs(size: int = 28) -> list:
    """Lake et al.'s 20 one-shot classification runs, each a 20-way within-alphabet task.

    Lake, Salakhutdinov & Tenenbaum (2015): in each run, 20 characters of one evaluation alphabet are
    shown once each (drawn by one person) and 20 new drawings of the same characters (by another
    person) are to be matched to them; people err on 4.5% of the test drawings, their Bayesian
    program learning on 3.3%. Returns a list of 20 dicts ``{'train_images' (20, 1, size, size),
    'test_images' (20, 1, size, size) float32 in [0, 1] (strokes are 1), 'test_labels' (20,) int64}``:
    test drawing ``i`` shows the character of ``train_images[test_labels[i]]``. Read from
    ``$TLBOOK_DATA/omniglot/all_runs.zip`` offline, or downloaded and checked (md5) otherwise.
    """
    from PIL import Image

    from .checks import whole_number
    from .datasets import _resize

    size = whole_number(size, "size")
    (path,) = _checked_zips("runs")
    runs = []
    with zipfile.ZipFile(path) as archive:

        def read(member):
            with Image.open(io.BytesIO(archive.read(member))) as img:
                grey = np.asarray(img.convert("L"))
            return torch.from_numpy((grey < 128).astype(np.float32))[None]  # black strokes -> 1

        for r in range(1, 21):
            lines = archive.read(f"run{r:02d}/class_labels.txt").decode().split()
            tests, trains = lines[0::2], lines[1::2]  # "runXX/test/itemNN.png runXX/training/classMM.png"
            classes = sorted(set(trains))
            train = torch.stack([read(m) for m in classes])
            test = torch.stack([read(m) for m in tests])
            labels = torch.tensor([classes.index(m) for m in trains], dtype=torch.long)
            runs.append({"train_images": _resize(train, size), "test_images": _resize(test, size), "test_labels": labels})
    return runs
