"""The book's datasets: where each comes from, how it is decoded and split, and derived domains.

:func:`load_dataset` gives the book's datasets (:data:`DATASETS`) as :class:`~tlbook.data.ImageData`
on the device. With ``$TLBOOK_DATA`` set it reads offline copies from that folder and never
downloads; otherwise torchvision downloads from the official sources. Both ways check the md5 of
every file before reading it (:mod:`tlbook.files`).
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .cache import load_weights, save_atomic
from .data import ImageData
from .files import DATA_ENV, _link_or_copy, _md5_error, _missing_error, _prepare_lock, _stage, _work_dir, data_root


# --- Datasets ----------------------------------------------------------------------------------
#
# Every loader produces CPU tensors once per process (kept in ``_MEMO``); ``load_dataset`` hands out
# copies on the device (where files come from: :mod:`tlbook.files`). The real torchvision dataset
# classes decode MNIST, KMNIST and USPS.

DATASETS = {
    "mnist": "MNIST handwritten digits, 28x28 grey; official splits: train 60000 / test 10000.",
    "mnist-inverted": "MNIST with inverted intensities (1 - x); same images and splits as mnist.",
    "mnist-rotated": "MNIST rotated by 45 degrees (bilinear, zero fill); same images and splits as mnist.",
    "mnist-m": "MNIST-M-style colour digits: |photo patch - digit| over random patches of scikit-image's "
    "bundled photos (Ganin & Lempitsky 2015 used BSDS500); 3 channels only; same splits as mnist.",
    "kmnist": "Kuzushiji-MNIST, 10 hiragana, 28x28 grey; the book uses the official TEST set only, split "
    "(stratified, fixed seed) into train 8000 (a pool to draw labels from) / test 2000.",
    "usps": "USPS digits, 16x16 grey; the LIBSVM test file usps.t.bz2 (2007 images) only, split "
    "(stratified, fixed seed) into train 1000 / test 1007.",
    "digits": "scikit-learn's 8x8 digits (the UCI optdigits test part, 1797 images, 17 grey levels), split "
    "(stratified, fixed seed) into train 1297 / test 500.",
    "omniglot": "Omniglot characters, 105x105 binary (strokes = 1), one class per character, 20 drawings each; "
    "'background' = the union of the official background_small1 + small2 sets (8 alphabets, as both contain "
    "Latin and Greek; 242 characters, 4840 images), 'evaluation' = the 20 official evaluation alphabets "
    "(659 characters, 13180 images).",
}

SPLITS = {
    "mnist": ("train", "test"),
    "mnist-inverted": ("train", "test"),
    "mnist-rotated": ("train", "test"),
    "mnist-m": ("train", "test"),
    "kmnist": ("train", "test"),
    "usps": ("train", "test"),
    "digits": ("train", "test"),
    "omniglot": ("background", "evaluation"),
}

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# The official kmnist_classmap.csv, class index -> hiragana (o, ki, su, tsu, na, ha, ma, ya, re, wo).
KMNIST_CLASSES = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")

# Fixed seed of the book's own train/test splits (kmnist, usps, digits): the same for every reader.
SPLIT_SEED = 0
# Test sizes of those splits; the rest of each file is the train split.
_TEST_SIZES = {"kmnist": 2000, "usps": 1007, "digits": 500}
# Angle of the mnist-rotated domain, in degrees (counter-clockwise).
ROTATION_DEGREES = 45.0
# Seeds of the mnist-m patches, different per split so train and test get different patches.
_BLEND_SEEDS = {"train": 0, "test": 1}

_OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
# Each part of a split is one zip; where two files are listed, either will do (same PNGs inside).
_OMNIGLOT_PARTS = {
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
}
_OMNIGLOT_SIDE = 105
# Bump when the decoded-file format changes, so an old cache file is not misread.
_OMNIGLOT_CACHE_VERSION = 1

# scikit-image's bundled colour photographs (they ship inside the package, so no download).
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

_MEMO: dict = {}


def load_dataset(name: str, split: str = "train", device=None, size: int = 28, channels: int = 1) -> ImageData:
    """Load a dataset split as tensors on ``device``.

    Args:
        name: one of :data:`DATASETS` (``'mnist'``, ``'mnist-inverted'``, ``'mnist-rotated'``,
            ``'mnist-m'``, ``'kmnist'``, ``'usps'``, ``'digits'``, ``'omniglot'``).
        split: ``'train'`` or ``'test'``; ``'background'`` or ``'evaluation'`` for Omniglot.
        device: where the tensors go; default :func:`tlbook.runtime.device`.
        size: side of the returned images; other native sizes are resized with antialiased
            bilinear interpolation (MNIST 28, USPS 16, digits 8, Omniglot 105).
        channels: 1, or 3 to repeat grey images (to pair MNIST with the colour ``'mnist-m'``,
            which only exists with 3 channels).

    Returns:
        :class:`ImageData` with ``images (N, channels, size, size)`` float32 in ``[0, 1]`` and
        ``labels (N,)`` int64. Split sizes: mnist and the mnist-* domains 60000 / 10000;
        kmnist 8000 / 2000 (both from the official KMNIST test set); usps 1000 / 1007 (both from
        LIBSVM's usps.t.bz2); digits 1297 / 500; omniglot background 4840 (242 characters of
        8 alphabets: background_small1 + small2, which share Latin and Greek), evaluation 13180
        (659 characters of 20 alphabets).

    The first call per (name, split, size) reads the files (seconds); later calls in the same
    process copy from memory. Each call returns new tensors, so editing them in place is safe.
    """
    if name not in DATASETS:
        from .models import unknown_name_error

        raise unknown_name_error("dataset", name, DATASETS)
    if split not in SPLITS[name]:
        raise ValueError(f"Unknown split {split!r} of {name!r}. Valid splits: {', '.join(map(repr, SPLITS[name]))}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    if name == "mnist-m" and channels != 3:
        raise ValueError(
            "mnist-m is a colour dataset: pass channels=3 (and load the MNIST source with channels=3 too, "
            "so both domains have the same shape)."
        )
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    from .runtime import device as default_device

    dev = default_device() if device is None else torch.device(device)
    data = _load_cpu(name, split, int(size))
    if channels == 3 and data.images.shape[1] == 1:
        images = data.images.to(dev).repeat(1, 3, 1, 1)
    else:
        # copy=True: on the CPU a plain .to() would hand out the memo's own tensor.
        images = data.images.to(dev, copy=True)
    return ImageData(images, data.labels.to(dev, copy=True), data.classes, data.name)


def _load_cpu(name: str, split: str, size: int) -> ImageData:
    """The split on the CPU at ``size``, native channels; memoised per data folder and cache folder."""
    key = (name, split, size, os.environ.get(DATA_ENV), str(_work_dir()))
    if key not in _MEMO:
        _MEMO[key] = _LOADERS[name](split, size)
    return _MEMO[key]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, h, w)`` uint8 or float -> ``(N, C, size, size)`` float32 in ``[0, 1]``.

    Antialiased bilinear, so shrinking (Omniglot 105 -> 28) averages strokes instead of dropping them.
    Works in chunks to keep the float copy of a large uint8 set small.
    """
    n, c, h, w = images.shape
    out = torch.empty(n, c, size, size, dtype=torch.float32)
    for start in range(0, n, 4096):
        chunk = images[start : start + 4096]
        chunk = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
        if (h, w) != (size, size):
            chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + len(chunk)] = chunk.clamp_(0, 1)
    return out


# --- Loaders: split -> ImageData on the CPU at the requested size ---


def _stratified_test_index(labels: torch.Tensor, n_test: int, seed: int) -> torch.Tensor:
    """Indices of a stratified random test set of ``n_test`` examples, sorted.

    Each class gives its proportional share; the shares are rounded by largest remainder so they
    sum exactly to ``n_test``. Drawn with a CPU generator, so every machine gets the same split.
    """
    counts = torch.bincount(labels)
    share = counts.double() * n_test / len(labels)
    take = share.floor().long()
    # Hand the leftover examples to the classes with the largest fractional parts (ties: lower class).
    extra = n_test - int(take.sum())
    order = torch.argsort(share - take, descending=True, stable=True)
    take[order[:extra]] += 1
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for k in range(len(counts)):
        members = (labels == k).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=gen)[: int(take[k])]])
    return torch.sort(torch.cat(picked)).values


def _book_split(name: str, split: str, read) -> tuple:
    """The book's fixed train/test split of a single-file dataset: ``(images, labels)`` of ``split``.

    ``read()`` returns the whole file as ``(images (N, 1, h, w), labels (N,))``; it runs once per
    process, since both splits come from the same file.
    """
    key = (name, "whole file", os.environ.get(DATA_ENV), str(_work_dir()))
    if key not in _MEMO:
        _MEMO[key] = read()
    images, labels = _MEMO[key]
    in_test = torch.zeros(len(labels), dtype=torch.bool)
    in_test[_stratified_test_index(labels, _TEST_SIZES[name], SPLIT_SEED)] = True
    keep = in_test if split == "test" else ~in_test
    return images[keep], labels[keep]


def _load_mnist(split: str, size: int) -> ImageData:
    from torchvision.datasets import MNIST

    root = _work_dir()
    with _prepare_lock("MNIST"):
        _stage("MNIST", MNIST.resources, root / "MNIST" / "raw", ["mnist", "MNIST/raw"], MNIST.mirrors[0])
        # download=True: with the staged files present (md5 checked) torchvision only extracts them.
        ds = MNIST(root, train=split == "train", download=True)
    return ImageData(_resize(ds.data[:, None], size), ds.targets.long(), DIGIT_CLASSES, f"mnist/{split}")


def _read_kmnist_test() -> tuple:
    from torchvision.datasets import KMNIST

    class KMNISTTestOnly(KMNIST):
        # torchvision's KMNIST fetches all four files, but only the test ones exist offline,
        # so the book's KMNIST task is built from the official test set alone.
        resources = [r for r in KMNIST.resources if r[0].startswith("t10k")]

        @property
        def raw_folder(self) -> str:  # the same folder as torchvision's KMNIST, not the subclass name
            return os.path.join(self.root, "KMNIST", "raw")

        @property
        def processed_folder(self) -> str:
            return os.path.join(self.root, "KMNIST", "processed")

    root = _work_dir()
    with _prepare_lock("KMNIST"):
        _stage("KMNIST", KMNISTTestOnly.resources, root / "KMNIST" / "raw", ["kmnist", "KMNIST/raw"], KMNIST.mirrors[0])
        ds = KMNISTTestOnly(root, train=False, download=True)
    return ds.data[:, None], ds.targets.long()  # (10000, 1, 28, 28) uint8, (10000,)


def _load_kmnist(split: str, size: int) -> ImageData:
    images, labels = _book_split("kmnist", split, _read_kmnist_test)
    return ImageData(_resize(images, size), labels, KMNIST_CLASSES, f"kmnist/{split}")


def _read_usps_test() -> tuple:
    from torchvision.datasets import USPS
    from torchvision.datasets.utils import check_integrity, download_url

    url, filename, md5 = USPS.split_list["test"]
    root = _work_dir()
    with _prepare_lock("USPS"):
        if data_root() is not None:
            _stage("USPS", [(filename, md5)], root, ["usps", "."], url)
        elif not check_integrity(root / filename, md5):
            # torchvision's USPS reads an existing file without checking it; download_url checks the md5.
            download_url(url, root, filename, md5)
        ds = USPS(root, train=False, download=True)
    return torch.from_numpy(ds.data)[:, None], torch.tensor(ds.targets, dtype=torch.long)  # (2007, 1, 16, 16) uint8


def _load_usps(split: str, size: int) -> ImageData:
    images, labels = _book_split("usps", split, _read_usps_test)
    return ImageData(_resize(images, size), labels, DIGIT_CLASSES, f"usps/{split}")


def _read_digits() -> tuple:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: never downloads

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float()[:, None] / 16  # (1797, 1, 8, 8), values 0..16
    return images, torch.from_numpy(bunch.target).long()


def _load_digits(split: str, size: int) -> ImageData:
    images, labels = _book_split("digits", split, _read_digits)
    return ImageData(_resize(images, size), labels, DIGIT_CLASSES, f"digits/{split}")


def _omniglot_zips(split: str) -> list:
    """Paths of the checked zips that make up an Omniglot split, downloading them when allowed."""
    from torchvision.datasets.utils import check_integrity, download_url

    root, work = data_root(), _work_dir() / "omniglot-py"
    folders = ([root / "omniglot", root / "omniglot-py"] if root is not None else []) + [work]
    paths, missing = [], []
    for alternatives in _OMNIGLOT_PARTS[split]:
        found = next(
            ((f / name, md5) for name, md5 in alternatives for f in folders if (f / name).is_file()), None
        )
        if found is None and root is None:
            name, md5 = alternatives[0]
            download_url(_OMNIGLOT_URL + name, work, name, md5)  # checks the md5
            found = (work / name, md5)
        if found is None:
            missing.append(" or ".join(name for name, _ in alternatives))
            continue
        path, md5 = found
        if not check_integrity(path, md5):
            raise _md5_error(path, md5, _OMNIGLOT_URL + alternatives[0][0])
        paths.append(path)
    if missing:
        raise _missing_error("Omniglot", missing, folders, _OMNIGLOT_URL)
    return paths


def _decode_omniglot(zips: list) -> dict:
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
    pixels = _OMNIGLOT_SIDE * _OMNIGLOT_SIDE
    bits = np.empty((len(entries), (pixels + 7) // 8), dtype=np.uint8)
    archives = [zipfile.ZipFile(p) for p in zips]
    try:
        for i, (_, _, z, member) in enumerate(entries):
            with Image.open(io.BytesIO(archives[z].read(member))) as img:
                grey = np.asarray(img.convert("L"))
            if grey.shape != (_OMNIGLOT_SIDE, _OMNIGLOT_SIDE):
                raise ValueError(f"{zips[z]}:{member} is {grey.shape}, expected 105x105; is this the Omniglot zip?")
            # The PNGs draw black strokes on white; invert so strokes are 1 on 0, like MNIST.
            bits[i] = np.packbits((grey < 128).reshape(-1))
    finally:
        for a in archives:
            a.close()
    labels = torch.tensor([index[e[0]] for e in entries], dtype=torch.long)
    return {"bits": torch.from_numpy(bits), "labels": labels, "classes": classes, "version": _OMNIGLOT_CACHE_VERSION}


def _load_omniglot(split: str, size: int) -> ImageData:
    # Decoding 19k PNGs takes seconds, so the result is cached once per split; later sizes reuse it.
    path = _work_dir() / f"omniglot-{split}-v{_OMNIGLOT_CACHE_VERSION}.pt"
    with _prepare_lock(f"omniglot-{split}"):  # another process may be decoding it right now
        if path.exists():
            entry = load_weights(path)
        else:
            entry = _decode_omniglot(_omniglot_zips(split))
            save_atomic(entry, path)
    pixels = _OMNIGLOT_SIDE * _OMNIGLOT_SIDE
    n = len(entry["labels"])
    images = torch.empty(n, 1, size, size)
    for start in range(0, n, 2048):  # unpacked at 105x105, 2048 images take 90 MB as float
        chunk = np.unpackbits(entry["bits"][start : start + 2048].numpy(), axis=1, count=pixels)
        chunk = torch.from_numpy(chunk).view(-1, 1, _OMNIGLOT_SIDE, _OMNIGLOT_SIDE).float()
        images[start : start + len(chunk)] = _resize(chunk, size)
    return ImageData(images, entry["labels"], entry["classes"], f"omniglot/{split}")


# --- Derived domains: the same MNIST digits, a different input distribution ---


def invert(data: ImageData) -> ImageData:
    """``1 - x``: white digits on black become black on white. Images ``(N, C, H, W)`` in ``[0, 1]``."""
    return replace(data, images=1 - data.images, name=f"{data.name} inverted")


def rotate(data: ImageData, degrees: float) -> ImageData:
    """Rotate every image by ``degrees`` counter-clockwise about its centre.

    Bilinear interpolation; corners that come from outside the image are filled with 0
    (background). One batched call on ``(N, C, H, W)``; values stay in ``[0, 1]``.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    images = TF.rotate(data.images, float(degrees), interpolation=InterpolationMode.BILINEAR, fill=0.0)
    return replace(data, images=images.clamp(0, 1), name=f"{data.name} rotated {degrees:g}deg")


def _photos() -> list:
    """scikit-image's bundled colour photos as ``(3, H, W)`` float tensors in ``[0, 1]`` (all H, W >= 300)."""
    import skimage.data

    return [torch.from_numpy(getattr(skimage.data, p)()).permute(2, 0, 1).float() / 255 for p in _PHOTOS]


def blend_with_photos(data: ImageData, seed: int = 0) -> ImageData:
    """MNIST-M-style colour images: ``|patch - digit|`` with a random patch of a colour photograph.

    Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015, blend each
    MNIST digit with a random patch of a BSDS500 photo this way; here the patches come from the
    four colour photos bundled with scikit-image (astronaut, chelsea, coffee, rocket), so the
    backgrounds are less varied than in the original MNIST-M.

    Args:
        data: images ``(N, 1, H, W)`` (or ``(N, 3, H, W)``) in ``[0, 1]``, ``H, W <= 300``.
        seed: picks the photo and the patch position of every image.

    Returns:
        :class:`ImageData` with images ``(N, 3, H, W)`` in ``[0, 1]``, the same labels.
    """
    n, _, h, w = data.images.shape
    photos = _photos()
    if h > min(p.shape[1] for p in photos) or w > min(p.shape[2] for p in photos):
        raise ValueError(f"blend_with_photos needs images of at most 300x300 pixels, got {h}x{w}.")
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (n,), generator=gen)
    corner = torch.rand(n, 2, generator=gen)  # top-left corner, as a fraction of the free range
    dev = data.images.device
    out = torch.empty(n, 3, h, w, device=dev)
    for k, photo in enumerate(photos):  # a loop over the photos; the images of each go in one batch
        idx = (which == k).nonzero().squeeze(1)
        top = (corner[idx, 0] * (photo.shape[1] - h + 1)).long()
        left = (corner[idx, 1] * (photo.shape[2] - w + 1)).long()
        rows = (top[:, None] + torch.arange(h))[:, :, None]  # (m, h, 1)
        cols = (left[:, None] + torch.arange(w))[:, None, :]  # (m, 1, w)
        patches = photo[:, rows, cols].permute(1, 0, 2, 3).to(dev)  # (m, 3, h, w)
        idx = idx.to(dev)
        out[idx] = (patches - data.images[idx]).abs()
    return replace(data, images=out, name=f"{data.name} blended with photos (seed {seed})")


def _load_derived(name: str, split: str, size: int) -> ImageData:
    # The transforms act on the native 28x28 digits; the result is then resized like any dataset.
    mnist = _load_cpu("mnist", split, 28)
    if name == "mnist-inverted":
        data = invert(mnist)
    elif name == "mnist-rotated":
        data = rotate(mnist, ROTATION_DEGREES)
    else:
        data = blend_with_photos(mnist, seed=_BLEND_SEEDS[split])
    images = data.images if size == 28 else _resize(data.images, size)
    return ImageData(images, data.labels, data.classes, f"{name}/{split}")


_LOADERS = {
    "mnist": _load_mnist,
    "kmnist": _load_kmnist,
    "usps": _load_usps,
    "digits": _load_digits,
    "omniglot": _load_omniglot,
    "mnist-inverted": lambda split, size: _load_derived("mnist-inverted", split, size),
    "mnist-rotated": lambda split, size: _load_derived("mnist-rotated", split, size),
    "mnist-m": lambda split, size: _load_derived("mnist-m", split, size),
}
