"""Tests of tlbook's data: the loaders (tlbook.datasets, tlbook.omniglot) against independent decodings
of the original files, the errors for missing or damaged offline data (archives and extracted files),
bad arguments, the derived domains (tlbook.domains), and the subset helpers (tlbook.data).

The loader tests read the offline copies in ``$TLBOOK_DATA`` (CI points it at shared/data) and are
skipped when it is unset, since they must never download. The subset tests use scikit-learn's
bundled digits and run anywhere.
"""
import bz2
import collections
import gzip
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl
from tlbook import datasets as tldata
from tlbook import domains as tldomains
from tlbook import omniglot as tlomniglot

ROOT = tl.files.data_root()
needs_data = pytest.mark.skipif(ROOT is None, reason="set TLBOOK_DATA to the offline data folder (shared/data)")


def offline(*relative) -> Path:
    """The first of ``relative`` (flat or torchvision layout) that exists under $TLBOOK_DATA."""
    for r in relative:
        if (ROOT / r).is_file():
            return ROOT / r
    raise FileNotFoundError(f"none of {relative} under {ROOT}")


def mnist_file(folder, name) -> Path:
    return offline(f"{folder.lower()}/{name}", f"{folder}/raw/{name}")


def read_idx(path) -> np.ndarray:
    """Decode an IDX file (the MNIST format) with numpy: big-endian header, then uint8 data."""
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def row_counter(images: torch.Tensor) -> collections.Counter:
    """Multiset of images (as bytes of their 0..255 values), to compare splits with the source."""
    u8 = (images.reshape(len(images), -1) * 255).round().to(torch.uint8).numpy()
    return collections.Counter(r.tobytes() for r in u8)


def assert_stratified(train, test, n_classes=10):
    total = train.class_counts() + test.class_counts()
    expected = total.double() * len(test) / (len(train) + len(test))
    assert (test.class_counts().double() - expected).abs().max() < 1, (test.class_counts(), expected)
    assert len(total) == n_classes


@pytest.fixture(autouse=True)
def cpu(monkeypatch):
    monkeypatch.setenv("TLBOOK_DEVICE", "cpu")


@pytest.fixture(scope="module")
def mnist():
    return {s: tl.load_dataset("mnist", s, device="cpu") for s in ("train", "test")}


@pytest.fixture(scope="module")
def digits():
    return tl.load_dataset("digits", "train", device="cpu")


# --- real data against independent decodings -----------------------------------------------


@needs_data
@pytest.mark.parametrize("split,prefix,n", [("train", "train", 60000), ("test", "t10k", 10000)])
def test_mnist_equals_the_idx_files(mnist, split, prefix, n):
    data = mnist[split]
    pixels = read_idx(mnist_file("MNIST", f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(mnist_file("MNIST", f"{prefix}-labels-idx1-ubyte.gz"))
    assert data.images.shape == (n, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and data.classes == tuple("0123456789")
    torch.testing.assert_close(data.images, torch.from_numpy(pixels.copy()).float()[:, None] / 255, rtol=0, atol=0)
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
    assert int(data.labels.min()) == 0 and int(data.labels.max()) == 9


@needs_data
def test_mnist_is_staged_in_torchvision_layout(monkeypatch, tmp_path):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    tl.load_dataset("mnist", "test", device="cpu")
    staged = tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    assert staged.is_file()
    assert staged.read_bytes() == mnist_file("MNIST", "t10k-labels-idx1-ubyte.gz").read_bytes()


@needs_data
def test_second_load_is_a_fresh_copy(mnist):
    again = tl.load_dataset("mnist", "test", device="cpu")
    again.images.zero_()  # a chapter editing its data in place must not change the next load
    third = tl.load_dataset("mnist", "test", device="cpu")
    assert torch.equal(third.images, mnist["test"].images) and third.images.abs().sum() > 0


@needs_data
def test_resize_and_channels(mnist):
    big = tl.load_dataset("mnist", "test", device="cpu", size=32, channels=3)
    assert big.images.shape == (10000, 3, 32, 32)
    assert torch.equal(big.images[:, 0], big.images[:, 2])
    expected = F.interpolate(mnist["test"].images[:64], size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(big.images[:64, :1], expected.clamp(0, 1))


@needs_data
def test_kmnist_is_a_stratified_split_of_the_official_test_set():
    train, test = (tl.load_dataset("kmnist", s, device="cpu") for s in ("train", "test"))
    assert (len(train), len(test)) == (8000, 2000)
    assert train.class_counts().tolist() == [800] * 10 and test.class_counts().tolist() == [200] * 10
    pixels = read_idx(mnist_file("KMNIST", "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(mnist_file("KMNIST", "t10k-labels-idx1-ubyte.gz"))
    source = collections.Counter(r.tobytes() for r in pixels.reshape(10000, -1))
    # Disjoint and complete: together the two splits are exactly the 10000 official test images.
    assert row_counter(train.images) + row_counter(test.images) == source
    label_of = {r.tobytes(): int(y) for r, y in zip(pixels.reshape(10000, -1), labels)}
    u8 = (test.images.reshape(2000, -1) * 255).round().to(torch.uint8).numpy()
    assert [label_of[r.tobytes()] for r in u8] == test.labels.tolist()
    classmap = ROOT / "kmnist" / "kmnist_classmap.csv"
    if classmap.is_file():
        chars = [line.split(",")[2] for line in classmap.read_text(encoding="utf-8").split("\n")[1:] if line]
        assert train.classes == tuple(chars)


@needs_data
def test_usps_is_a_stratified_split_of_the_libsvm_test_file():
    train, test = (tl.load_dataset("usps", s, device="cpu", size=16) for s in ("train", "test"))
    assert (len(train), len(test)) == (1000, 1007) and train.shape == (1, 16, 16)
    assert_stratified(train, test)
    # LIBSVM lines: "label index:value ..." with labels 1..10 and values in [-1, 1].
    lines = bz2.open(offline("usps/usps.t.bz2", "usps.t.bz2")).read().decode().split("\n")
    rows = [line.split() for line in lines if line.strip()]
    values = np.array([[float(t.split(":")[1]) for t in r[1:]] for r in rows], dtype=np.float32)
    pixels = ((values + 1) / 2 * 255).astype(np.uint8)  # torchvision's conversion
    assert len(rows) == 2007
    assert row_counter(train.images) + row_counter(test.images) == collections.Counter(r.tobytes() for r in pixels)
    assert sorted(train.labels.tolist() + test.labels.tolist()) == sorted(int(r[0]) - 1 for r in rows)


def test_digits_is_a_stratified_split_of_sklearn_digits(digits):
    from sklearn.datasets import load_digits

    test = tl.load_dataset("digits", "test", device="cpu", size=8)
    train = tl.load_dataset("digits", "train", device="cpu", size=8)
    assert (len(train), len(test)) == (1297, 500) and digits.shape == (1, 28, 28)
    assert_stratified(train, test)
    source = torch.from_numpy(load_digits().images).float() / 16
    assert row_counter(train.images) + row_counter(test.images) == row_counter(source)


@needs_data
def test_omniglot_counts_and_a_drawing_decoded_independently():
    from PIL import Image

    for split, n_alphabets, n_characters in [("background", 8, 242), ("evaluation", 20, 659)]:
        data = tl.load_dataset("omniglot", split, device="cpu")
        assert len({c.split("/")[0] for c in data.classes}) == n_alphabets
        assert data.num_classes == n_characters and len(data) == 20 * n_characters
        assert data.class_counts().tolist() == [20] * n_characters  # contiguous labels, 20 drawings each
        assert tlomniglot.cache_path(split).is_file()
    # Latin and Greek are in both small background sets; the union counts them once.
    background = tl.load_dataset("omniglot", "background", device="cpu")
    assert sum(c.startswith("Latin/") for c in background.classes) == 26

    # The first drawing of one character, decoded here with PIL: inverted, then resized.
    path = offline("omniglot/images_background_small1.zip", "omniglot-py/images_background_small1.zip")
    with zipfile.ZipFile(path) as z:
        member = sorted(n for n in z.namelist() if n.endswith(".png") and "/Korean/character05/" in n)[0]
        png = np.asarray(Image.open(io.BytesIO(z.read(member))).convert("L"))
    strokes = torch.from_numpy((png < 128).astype(np.float32))[None, None]
    expected = F.interpolate(strokes, size=(28, 28), mode="bilinear", antialias=True)
    first = int((background.labels == background.classes.index("Korean/character05")).nonzero()[0])
    torch.testing.assert_close(background.images[first : first + 1], expected.clamp(0, 1))
    assert 0.02 < float(strokes.mean()) < 0.3  # strokes are the minority: inverted, as in MNIST


# --- offline data that is missing or damaged ---------------------------------------------------


def flat_copy(tmp_path, files, damage=None) -> Path:
    """A TLBOOK_DATA folder holding copies of ``files`` (relative paths); ``damage`` gets a byte flipped."""
    root = tmp_path / "offline"
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(offline(rel), root / rel)
    if damage:
        raw = bytearray((root / damage).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (root / damage).write_bytes(bytes(raw))
    return root


MNIST_FILES = [f"mnist/{p}-{k}.gz" for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]


@needs_data
@pytest.mark.parametrize(
    "name,split,files,damage",
    [
        ("mnist", "test", MNIST_FILES, "mnist/t10k-images-idx3-ubyte.gz"),
        ("usps", "test", ["usps/usps.t.bz2"], "usps/usps.t.bz2"),
        (
            "omniglot",
            "background",
            ["omniglot/images_background_small1.zip", "omniglot/images_background_small2.zip"],
            "omniglot/images_background_small2.zip",
        ),
    ],
)
def test_a_damaged_file_is_refused(monkeypatch, tmp_path, name, split, files, damage):
    monkeypatch.setenv("TLBOOK_DATA", str(flat_copy(tmp_path, files, damage)))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="Checksum mismatch") as err:
        tl.load_dataset(name, split, device="cpu")
    assert Path(damage).name in str(err.value) and "unset TLBOOK_DATA" in str(err.value)


@needs_data
@pytest.mark.parametrize(
    "name,split,expected",
    [
        ("mnist", "train", "train-images-idx3-ubyte.gz"),
        ("kmnist", "test", "t10k-images-idx3-ubyte.gz"),
        ("usps", "train", "usps.t.bz2"),
        ("omniglot", "evaluation", "images_evaluation.zip or images_evaluation_repacked.zip"),
        ("mnist-m", "test", "t10k-labels-idx1-ubyte.gz"),
    ],
)
def test_missing_offline_files_are_named(monkeypatch, tmp_path, name, split, expected):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TLBOOK_DATA", str(empty))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        tl.load_dataset(name, split, device="cpu", channels=3 if name == "mnist-m" else 1)
    message = str(err.value)
    assert expected in message and "TLBOOK_DATA" in message and str(empty) in message and "://" in message


@needs_data
def test_only_the_missing_file_is_named(monkeypatch, tmp_path):
    root = tmp_path / "offline"
    (root / "mnist").mkdir(parents=True)
    for rel in MNIST_FILES[1:]:
        os.symlink(offline(rel), root / rel)
    monkeypatch.setenv("TLBOOK_DATA", str(root))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="missing: train-images-idx3-ubyte.gz. Looked in"):
        tl.load_dataset("mnist", "test", device="cpu")


@needs_data
def test_torchvision_layout_is_read_too(monkeypatch, tmp_path, mnist):
    root = tmp_path / "tv"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for rel in MNIST_FILES:
        os.symlink(offline(rel), root / "MNIST" / "raw" / Path(rel).name)
    os.symlink(offline("usps/usps.t.bz2"), root / "usps.t.bz2")
    monkeypatch.setenv("TLBOOK_DATA", str(root))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    assert torch.equal(tl.load_dataset("mnist", "test", device="cpu").images, mnist["test"].images)
    assert len(tl.load_dataset("usps", "test", device="cpu")) == 1007


# --- extracted files (torchvision only checks that they exist) -----------------------------------


def test_idx_archive_md5s_are_torchvisions():
    from torchvision.datasets import KMNIST, MNIST

    for folder, cls in (("MNIST", MNIST), ("KMNIST", KMNIST)):
        archives = [(gz, md5) for gz, md5, _ in tldata._IDX_FILES[folder]]
        assert set(archives) <= set(map(tuple, cls.resources)), folder


@needs_data
@pytest.mark.parametrize("folder", ["MNIST", "KMNIST"])
def test_extracted_md5s_are_those_of_the_archives_contents(folder):
    import hashlib

    for gz, _, md5 in tldata._IDX_FILES[folder]:  # an independent decompression: gzip, not torchvision
        assert hashlib.md5(gzip.open(mnist_file(folder, gz)).read()).hexdigest() == md5, gz


def damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        raw = raw[: len(raw) // 3]
    else:  # flip a few bytes in the pixels: the file keeps its size and its IDX header
        for i in (len(raw) // 2, len(raw) // 2 + 1, len(raw) - 1):
            raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@needs_data
@pytest.mark.parametrize("name,folder,damaged", [
    ("mnist", "MNIST", "t10k-images-idx3-ubyte"),
    ("mnist", "MNIST", "t10k-labels-idx1-ubyte"),
    ("kmnist", "KMNIST", "t10k-images-idx3-ubyte"),
])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_extracted_file_is_extracted_again(monkeypatch, tmp_path, name, folder, damaged, how):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(tldata, "_MEMO", {})
    first = tl.load_dataset(name, "test", device="cpu")
    path = tmp_path / "data" / folder / "raw" / damaged
    damage(path, how)
    monkeypatch.setattr(tldata, "_MEMO", {})  # a new process: nothing remembered
    again = tl.load_dataset(name, "test", device="cpu")
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    pixels = read_idx(mnist_file(folder, "t10k-images-idx3-ubyte.gz"))  # and both equal the archive's
    assert row_counter(again.images) <= collections.Counter(r.tobytes() for r in pixels.reshape(len(pixels), -1))
    assert path.read_bytes() == gzip.open(mnist_file(folder, damaged + ".gz")).read()


@needs_data
def test_a_damaged_extracted_file_that_cannot_be_extracted_again_is_a_clear_error(monkeypatch, tmp_path):
    from torchvision.datasets import MNIST

    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(tldata, "_MEMO", {})
    tl.load_dataset("mnist", "test", device="cpu")
    damage(tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte", "flip")
    monkeypatch.setattr(tldata, "_MEMO", {})

    def offline_download(self):
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz (no network).")

    monkeypatch.setattr(MNIST, "download", offline_download)
    with pytest.raises(RuntimeError, match="t10k-images-idx3-ubyte in .* were damaged .* could not be extracted again"):
        tl.load_dataset("mnist", "test", device="cpu")


@needs_data
def test_a_wrong_extraction_is_refused(monkeypatch, tmp_path):
    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(tldata, "_MEMO", {})
    real = tv_mnist.download_and_extract_archive

    def extract_wrongly(url, download_root, filename=None, md5=None, **kw):
        real(url, download_root, filename=filename, md5=md5, **kw)
        if filename.startswith("t10k-images"):
            damage(Path(download_root) / filename[: -len(".gz")], "flip")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", extract_wrongly)
    with pytest.raises(RuntimeError, match="t10k-images-idx3-ubyte was extracted again .* still does not match"):
        tl.load_dataset("mnist", "test", device="cpu")


# --- names and arguments -----------------------------------------------------------------------


def test_unknown_dataset_suggests_the_closest_name():
    with pytest.raises(ValueError, match="Did you mean 'mnist'"):
        tl.load_dataset("mnsit")


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'train', 'test'"):
        tl.load_dataset("mnist", "validation")
    with pytest.raises(ValueError, match="'background', 'evaluation'"):
        tl.load_dataset("omniglot", "train")


def test_mnist_m_needs_three_channels():
    with pytest.raises(ValueError, match="channels=3"):
        tl.load_dataset("mnist-m", "test")


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")


@pytest.mark.parametrize("kwargs,error,names", [
    (dict(size=2.5), TypeError, "size"),
    (dict(size=True), TypeError, "size"),
    (dict(size=0), ValueError, "size"),
    (dict(size="28"), TypeError, "size"),
    (dict(channels=2), ValueError, "channels"),
    (dict(channels=True), ValueError, "channels"),
    (dict(device="gpu"), ValueError, "device='gpu'"),
    pytest.param(dict(device="cuda"), ValueError, "device='cuda'", marks=NO_GPU),
    pytest.param(dict(device="cuda:0"), ValueError, "device='cuda:0'", marks=NO_GPU),
    (dict(device="meta"), ValueError, "device='meta'"),
    (dict(name="mnsit"), ValueError, "dataset 'mnsit'. Did you mean 'mnist'"),
    (dict(name=["mnist"]), ValueError, "dataset ['mnist']"),
    (dict(split="validation"), ValueError, "split 'validation'"),
    (dict(name="omniglot", split="train"), ValueError, "split 'train' of 'omniglot'"),
])
def test_bad_input_to_load_dataset(kwargs, error, names):
    args = dict(name="mnist", split="test") | kwargs
    with pytest.raises(error) as err:
        tl.load_dataset(**args)  # refused before any file is read
    assert names in str(err.value)
    if "device" in kwargs and kwargs["device"].startswith("cuda"):
        assert "device='cpu'" in str(err.value) and "Leave device out" in str(err.value)  # says what to do


TINY = tl.ImageData(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), ["a", "b"], "tiny")


@pytest.mark.parametrize("call,error,names", [
    (lambda: tldomains.rotate(TINY, float("nan")), ValueError, "degrees"),
    (lambda: tldomains.rotate(TINY, float("inf")), ValueError, "degrees"),
    (lambda: tldomains.rotate(TINY, None), TypeError, "degrees"),
    (lambda: tldomains.rotate(TINY.images, 45), TypeError, "rotate: data must be a tlbook ImageData"),
    (lambda: tldomains.invert(TINY.images), TypeError, "invert: data must be a tlbook ImageData"),
    (lambda: tldomains.blend_with_photos(TINY.images), TypeError, "blend_with_photos: data must be a tlbook ImageData"),
    (lambda: tldomains.blend_with_photos(TINY, seed=-1), ValueError, "seed"),
    (lambda: tldomains.blend_with_photos(TINY, seed=0.5), TypeError, "seed"),
    (lambda: tldomains.blend_with_photos(tl.ImageData(torch.rand(2, 2, 8, 8), None, ["a"]), 0), ValueError, "1 or 3 channels"),
])
def test_bad_input_to_the_derived_domains(call, error, names):
    with pytest.raises(error, match=None) as err:
        call()
    assert names in str(err.value)


def test_derived_domains_keep_labels_and_columns():
    data = TINY.with_columns(weight=torch.arange(4.0))
    for out in (tldomains.invert(data), tldomains.rotate(data, 90), tldomains.blend_with_photos(data, seed=1)):
        assert torch.equal(out.labels, data.labels) and torch.equal(out.columns["weight"], torch.arange(4.0))
    assert torch.equal(tldomains.invert(data).images, 1 - data.images) and tldomains.blend_with_photos(data).shape == (3, 8, 8)


def test_every_dataset_has_splits_and_a_description():
    assert set(tl.DATASETS) == set(tldata.SPLITS)
    assert all(isinstance(d, str) and d for d in tl.DATASETS.values())


# --- derived domains -----------------------------------------------------------------------------


@needs_data
def test_inverted_and_rotated_mnist(mnist):
    plain = mnist["test"]
    inverted = tl.load_dataset("mnist-inverted", "test", device="cpu")
    torch.testing.assert_close(inverted.images, 1 - plain.images)
    rotated = tl.load_dataset("mnist-rotated", "test", device="cpu")
    assert rotated.images.shape == plain.images.shape and torch.equal(rotated.labels, plain.labels)
    assert 0 <= float(rotated.images.min()) and float(rotated.images.max()) <= 1
    assert not torch.allclose(rotated.images, plain.images)
    torch.testing.assert_close(rotated.images, tldomains.rotate(plain, 45).images)
    # Oracle: a quarter turn is an exact pixel permutation (counter-clockwise, like torch.rot90).
    quarter = tldomains.rotate(plain.subset(torch.arange(50)), 90).images
    torch.testing.assert_close(quarter, torch.rot90(plain.images[:50], 1, dims=(-2, -1)))


@needs_data
def test_mnist_m(mnist):
    plain = mnist["test"]
    colour = tl.load_dataset("mnist-m", "test", device="cpu", channels=3)
    assert colour.images.shape == (10000, 3, 28, 28) and torch.equal(colour.labels, plain.labels)
    assert 0 <= float(colour.images.min()) and float(colour.images.max()) <= 1
    assert (colour.images[:, 0] - colour.images[:, 1]).abs().mean() > 0.01  # really in colour
    assert (colour.images - plain.images).abs().mean() > 0.1
    assert torch.equal(colour.images, tldomains.blend_with_photos(plain, seed=tldata._BLEND_SEEDS["test"]).images)
    assert not torch.equal(colour.images[:100], tldomains.blend_with_photos(plain.subset(torch.arange(100)), 5).images)


def test_blend_is_the_absolute_difference_with_a_photo_patch():
    n = 40
    zeros = tl.ImageData(torch.zeros(n, 1, 28, 28), torch.zeros(n, dtype=torch.long), ["0"], "zeros")
    ones = tl.ImageData(torch.ones(n, 1, 28, 28), torch.zeros(n, dtype=torch.long), ["0"], "ones")
    patches = tldomains.blend_with_photos(zeros, seed=3).images  # |patch - 0| = the patch itself
    torch.testing.assert_close(tldomains.blend_with_photos(ones, seed=3).images, 1 - patches)
    photos = tldomains._photos()
    for patch in patches[:5]:  # each patch is a 28x28 window of one of the photos
        found = False
        for photo in photos:
            ys, xs = torch.nonzero((photo == patch[:, :1, :1]).all(0), as_tuple=True)
            for y, x in zip(ys.tolist(), xs.tolist()):
                window = photo[:, y : y + 28, x : x + 28]
                found |= window.shape == patch.shape and torch.equal(window, patch)
        assert found


# --- subsets and batches (scikit-learn digits: no files needed) ----------------------------------


def test_per_class_subset_counts_nesting_and_errors(digits):
    for k in (1, 5, 20):
        sub = tl.per_class_subset(digits, k, seed=7)
        assert sub.class_counts().tolist() == [k] * 10
    small, large = (tl.per_class_subset(digits, k, seed=7) for k in (5, 20))
    assert row_counter(small.images) - row_counter(large.images) == collections.Counter()  # nested
    other = tl.per_class_subset(digits, 5, seed=8)
    assert not torch.equal(other.images, small.images)
    with pytest.raises(ValueError, match="per_class"):
        tl.per_class_subset(digits, int(digits.class_counts().min()) + 1)


def test_class_subset_relabels(digits):
    sub = tl.class_subset(digits, [7, "3"])
    assert sub.classes == ("7", "3") and set(sub.labels.tolist()) == {0, 1}
    assert len(sub) == int(digits.class_counts()[7] + digits.class_counts()[3])
    original = digits.labels[(digits.labels == 7) | (digits.labels == 3)]
    assert torch.equal(torch.where(original == 7, 0, 1), sub.labels)
    kept = tl.class_subset(digits, [7, 3], relabel=False)
    assert kept.classes == digits.classes and set(kept.labels.tolist()) == {3, 7}


def test_random_split_is_disjoint_and_sized(digits):
    a, b, c = tl.random_split(digits, [100, 200, 300], seed=1)
    assert (len(a), len(b), len(c)) == (100, 200, 300)
    together = row_counter(torch.cat([a.images, b.images, c.images]))
    assert sum(together.values()) == 600 and not (together - row_counter(digits.images))
    halves = tl.random_split(digits, [0.5, 0.5])
    assert sum(len(h) for h in halves) == len(digits)
    with pytest.raises(ValueError, match="cannot split"):
        tl.random_split(digits, [1000, 1000])


def test_batches_cover_the_range_once():
    gen = torch.Generator().manual_seed(0)
    parts = list(tl.data.batches(103, 10, generator=gen))
    assert [len(p) for p in parts] == [10] * 10 + [3]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.arange(103))
    assert torch.equal(torch.cat(list(tl.data.batches(7, 3, shuffle=False))), torch.arange(7))
