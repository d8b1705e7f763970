"""The book's datasets: where each comes from, how it is decoded and split.

:func:`load_dataset` gives the book's datasets (:data:`DATASETS`) as :class:`~tlbook.data.ImageData`
on the device. With ``$TLBOOK_DATA`` set it reads offline copies from that folder and never
downloads; otherwise torchvision downloads from the official sources. Both ways check the md5 of
every file before reading it, extracted files included (:mod:`tlbook.files`). The derived domains
(inverted, rotated, blended with photos) are made by :mod:`tlbook.domains`.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from . import omniglot
from .checks import whole_number
from .data import ImageData
from .domains import blend_with_photos, invert, rotate
from .files import DATA_ENV, _check_extracted, _drop_damaged_extracted, _prepare_lock, _stage, _work_dir, data_root


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
    "usps-esl": "USPS digits, 16x16 grey; the ESL version (Hastie, Tibshirani & Friedman's zip.train / zip.test) "
    "that the ADDA code uses: official splits train 7291 / test 2007. Read from the HDF5 copy usps.h5 (md5 "
    "355df6b942eb766252e0340bc019b0b9, Kaggle's 'USPS dataset', needs h5py) in $TLBOOK_DATA/usps/; offline only, "
    "since that file has no official download.",
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
    "usps-esl": ("train", "test"),
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

# The ESL copy of USPS (shared/data note 2): one HDF5 file, groups train / test with data (N, 256) float32
# in [0, 1] and target (N,) int. No official host serves this file, so it is read offline only.
_USPS_ESL_FILE, _USPS_ESL_MD5 = "usps.h5", "355df6b942eb766252e0340bc019b0b9"
_USPS_ESL_SIZES = {"train": 7291, "test": 2007}

# The IDX files of MNIST and KMNIST: (archive, md5 of the archive, md5 of the file extracted from it).
# The archive md5s are torchvision's. torchvision checks an archive before extracting it but then
# only checks that the extracted file exists, so a truncated or altered extracted file would be read
# as wrong images; the extracted md5s (of the official archives' contents, `gzip -dc FILE | md5sum`)
# let tlbook catch that and have the file extracted again.
_IDX_FILES = {
    "MNIST": [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    ],
    "KMNIST": [  # the test split only: the book's KMNIST task is built from it alone
        ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7", "bf305b8cd328700fbc17f5acbc2856d2"),
        ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134", "9f55f451c0988b028eccdf7d5cc265ab"),
    ],
}


_MEMO: dict = {}


def load_dataset(name: str, split: str = "train", device=None, size: int = 28, channels: int = 1) -> ImageData:
    """Load a dataset split as tensors on ``device``.

    Args:
        name: one of :data:`DATASETS` (``'mnist'``, ``'mnist-inverted'``, ``'mnist-rotated'``,
            ``'mnist-m'``, ``'kmnist'``, ``'usps'``, ``'usps-esl'``, ``'digits'``, ``'omniglot'``).
        split: ``'train'`` or ``'test'``; ``'background'`` or ``'evaluation'`` for Omniglot.
        device: where the tensors go (``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'``, a ``torch.device``);
            default :func:`tlbook.runtime.device`.
        size: side of the returned images, a whole number of pixels; other native sizes are resized
            with antialiased bilinear interpolation (MNIST 28, USPS 16, digits 8, Omniglot 105).
        channels: 1, or 3 to repeat grey images (to pair MNIST with the colour ``'mnist-m'``,
            which only exists with 3 channels).

    Returns:
        :class:`ImageData` with ``images (N, channels, size, size)`` float32 in ``[0, 1]`` and
        ``labels (N,)`` int64. Split sizes: mnist and the mnist-* domains 60000 / 10000;
        kmnist 8000 / 2000 (both from the official KMNIST test set); usps 1000 / 1007 (both from
        LIBSVM's usps.t.bz2); usps-esl 7291 / 2007 (the ESL splits, offline only); digits 1297 / 500;
        omniglot background 4840 (242 characters of 8 alphabets: background_small1 + small2, which
        share Latin and Greek), evaluation 13180 (659 characters of 20 alphabets).

    The first call per (name, split, size) reads the files (seconds); later calls in the same
    process copy from memory. Each call returns new tensors, so editing them in place is safe.
    """
    if not isinstance(name, str) or name not in DATASETS:
        from .models import unknown_name_error

        raise unknown_name_error("dataset", name, DATASETS)
    if not isinstance(split, str) or split not in SPLITS[name]:
        raise ValueError(f"Unknown split {split!r} of {name!r}. Valid splits: {', '.join(map(repr, SPLITS[name]))}.")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (grey repeated, or colour for mnist-m), got {channels!r}.")
    if name == "mnist-m" and channels != 3:
        raise ValueError(
            "mnist-m is a colour dataset: pass channels=3 (and load the MNIST source with channels=3 too, "
            "so both domains have the same shape)."
        )
    size = whole_number(size, "size")
    dev = _checked_device(device)
    data = _load_cpu(name, split, size)
    if channels == 3 and data.images.shape[1] == 1:
        images = data.images.to(dev).repeat(1, 3, 1, 1)
    else:
        # copy=True: on the CPU a plain .to() would hand out the memo's own tensor.
        images = data.images.to(dev, copy=True)
    return ImageData(images, data.labels.to(dev, copy=True), data.classes, data.name)


def _checked_device(device) -> torch.device:
    """``device`` as a ``torch.device`` that exists here; ``None`` means :func:`tlbook.runtime.device`."""
    from .runtime import device as default_device

    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a device torch knows; pass 'cpu', 'cuda', 'cuda:1' or 'mps', "
            "or leave it out to use tl.device()."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but torch sees no CUDA GPU here. Leave device out (tl.device() picks the best "
            "device there is) or pass device='cpu'; on Colab, choose a GPU under Runtime > Change runtime type."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but torch sees only {torch.cuda.device_count()} GPU(s), cuda:0 onwards.")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device={device!r} but this machine has no Apple GPU (MPS); leave device out or pass 'cpu'.")
    if dev.type == "meta":
        raise ValueError("device='meta' holds no values; pass 'cpu', 'cuda' or 'mps', or leave device out.")
    return dev


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


def _read_idx(dataset_class, folder: str, train: bool) -> tuple:
    """MNIST or KMNIST through torchvision, every file checked: ``(images (N, 1, 28, 28) uint8, labels (N,))``.

    The archives are staged (offline) and checked; the extracted files of the split are checked too,
    and one with a wrong md5 is deleted, so that torchvision extracts it again from its checked
    archive instead of reading it as it is.
    """
    root, url = _work_dir(), dataset_class.mirrors[0]
    raw = root / folder / "raw"
    archives = [(gz, md5) for gz, md5, _ in _IDX_FILES[folder]]
    prefix = "train-" if train else "t10k-"  # torchvision reads only the split's two files
    extracted = [(gz[: -len(".gz")], md5) for gz, _, md5 in _IDX_FILES[folder] if gz.startswith(prefix)]
    with _prepare_lock(folder):
        _stage(folder, archives, raw, [folder.lower(), f"{folder}/raw"], url)
        absent, deleted = _drop_damaged_extracted(raw, extracted)
        try:
            # download=True: with the checked archives present torchvision downloads nothing, and extracts
            # them again if an extracted file is absent.
            ds = dataset_class(root, train=train, download=True)
        except RuntimeError as err:
            if not deleted:
                raise
            raise RuntimeError(
                f"{folder}: the extracted file(s) {', '.join(deleted)} in {raw} were damaged (wrong md5) and were "
                f"deleted, but could not be extracted again: {str(err).strip()} Put the archives back in {raw} "
                f"(official source: {url}) or {'fix' if data_root() is not None else 'set'} {DATA_ENV}."
            ) from err
        if absent:  # extracted just now: make sure the result is right before it is used
            _check_extracted(folder, raw, extracted, url)
    return ds.data[:, None], ds.targets.long()


def _load_mnist(split: str, size: int) -> ImageData:
    from torchvision.datasets import MNIST

    images, labels = _read_idx(MNIST, "MNIST", train=split == "train")
    return ImageData(_resize(images, size), labels, DIGIT_CLASSES, f"mnist/{split}")


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

    return _read_idx(KMNISTTestOnly, "KMNIST", train=False)  # (10000, 1, 28, 28) uint8, (10000,)


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


def _usps_esl_file():
    """The checked path of ``usps.h5``: in ``$TLBOOK_DATA/usps/`` or ``$TLBOOK_DATA/`` (or the working folder when unset)."""
    from torchvision.datasets.utils import calculate_md5, check_integrity

    root = data_root()
    folders = [root / "usps", root] if root is not None else [_work_dir() / "usps", _work_dir()]
    path = next((f / _USPS_ESL_FILE for f in folders if (f / _USPS_ESL_FILE).is_file()), None)
    if path is None:
        setting = f"{DATA_ENV}={root}" if root is not None else f"{DATA_ENV} is unset and"
        raise FileNotFoundError(
            f"usps-esl: {setting} the file {_USPS_ESL_FILE} (md5 {_USPS_ESL_MD5}) is not there. Looked in: "
            f"{', '.join(str(f) for f in folders)}. tlbook cannot download it (no official host serves this HDF5 "
            f"copy of ESL's zip.train / zip.test): put usps.h5 (Kaggle's 'USPS dataset') in $TLBOOK_DATA/usps/, "
            f"or use the 'usps' dataset, which downloads."
        )
    if not check_integrity(path, _USPS_ESL_MD5):
        raise RuntimeError(
            f"Checksum mismatch: {path} has md5 {calculate_md5(path)}, expected {_USPS_ESL_MD5}. The file is damaged "
            f"or is not the HDF5 copy of the ESL USPS that tlbook reads; replace it with the right usps.h5."
        )
    return path


def _load_usps_esl(split: str, size: int) -> ImageData:
    try:
        import h5py
    except ImportError:
        raise ImportError("usps-esl is stored as HDF5 and needs h5py: pip install h5py") from None
    with h5py.File(_usps_esl_file(), "r") as file:
        pixels, targets = file[split]["data"][:], file[split]["target"][:]
    if pixels.shape != (_USPS_ESL_SIZES[split], 256):
        raise RuntimeError(f"usps-esl/{split}: expected {_USPS_ESL_SIZES[split]} images of 256 pixels, got {pixels.shape}.")
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).view(-1, 1, 16, 16)  # rows of 16 pixels
    return ImageData(_resize(images, size), torch.from_numpy(targets.astype(np.int64)), DIGIT_CLASSES, f"usps-esl/{split}")


def _read_digits() -> tuple:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: never downloads

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float()[:, None] / 16  # (1797, 1, 8, 8), values 0..16
    return images, torch.from_numpy(bunch.target).long()


def _load_digits(split: str, size: int) -> ImageData:
    images, labels = _book_split("digits", split, _read_digits)
    return ImageData(_resize(images, size), labels, DIGIT_CLASSES, f"digits/{split}")


def _load_omniglot(split: str, size: int) -> ImageData:
    entry = omniglot.packed(split)  # strokes as bits, (N, ceil(105 * 105 / 8)) uint8
    pixels = omniglot.SIDE * omniglot.SIDE
    n = len(entry["labels"])
    images = torch.empty(n, 1, size, size)
    for start in range(0, n, 2048):  # unpacked at 105x105, 2048 images take 90 MB as float
        chunk = np.unpackbits(entry["bits"][start : start + 2048].numpy(), axis=1, count=pixels)
        chunk = torch.from_numpy(chunk).view(-1, 1, omniglot.SIDE, omniglot.SIDE).float()
        images[start : start + len(chunk)] = _resize(chunk, size)
    return ImageData(images, entry["labels"], entry["classes"], f"omniglot/{split}")


# --- Derived domains: the same MNIST digits, a different input distribution (tlbook.domains) ---


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
    "usps-esl": _load_usps_esl,
    "digits": _load_digits,
    "omniglot": _load_omniglot,
    "mnist-inverted": lambda split, size: _load_derived("mnist-inverted", split, size),
    "mnist-rotated": lambda split, size: _load_derived("mnist-rotated", split, size),
    "mnist-m": lambda split, size: _load_derived("mnist-m", split, size),
}
