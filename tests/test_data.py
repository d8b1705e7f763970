"""Tests of tlbook.data: the loaders against independent decodings of the original files, the
errors for missing or damaged offline data, the derived domains, and the subset helpers.

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

ROOT = tl.data_root()
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
        assert (tldata._work_dir() / f"omniglot-{split}-v{tldata._OMNIGLOT_CACHE_VERSION}.pt").is_file()
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
    torch.testing.assert_close(rotated.images, tldata.rotate(plain, 45).images)
    # Oracle: a quarter turn is an exact pixel permutation (counter-clockwise, like torch.rot90).
    quarter = tldata.rotate(plain.subset(torch.arange(50)), 90).images
    torch.testing.assert_close(quarter, torch.rot90(plain.images[:50], 1, dims=(-2, -1)))


@needs_data
def test_mnist_m(mnist):
    plain = mnist["test"]
    colour = tl.load_dataset("mnist-m", "test", device="cpu", channels=3)
    assert colour.images.shape == (10000, 3, 28, 28) and torch.equal(colour.labels, plain.labels)
    assert 0 <= float(colour.images.min()) and float(colour.images.max()) <= 1
    assert (colour.images[:, 0] - colour.images[:, 1]).abs().mean() > 0.01  # really in colour
    assert (colour.images - plain.images).abs().mean() > 0.1
    assert torch.equal(colour.images, tldata.blend_with_photos(plain, seed=tldata._BLEND_SEEDS["test"]).images)
    assert not torch.equal(colour.images[:100], tldata.blend_with_photos(plain.subset(torch.arange(100)), 5).images)


def test_blend_is_the_absolute_difference_with_a_photo_patch():
    n = 40
    zeros = tl.ImageData(torch.zeros(n, 1, 28, 28), torch.zeros(n, dtype=torch.long), ["0"], "zeros")
    ones = tl.ImageData(torch.ones(n, 1, 28, 28), torch.zeros(n, dtype=torch.long), ["0"], "ones")
    patches = tldata.blend_with_photos(zeros, seed=3).images  # |patch - 0| = the patch itself
    torch.testing.assert_close(tldata.blend_with_photos(ones, seed=3).images, 1 - patches)
    photos = tldata._photos()
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
    parts = list(tl.batches(103, 10, generator=gen))
    assert [len(p) for p in parts] == [10] * 10 + [3]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.arange(103))
    assert torch.equal(torch.cat(list(tl.batches(7, 3, shuffle=False))), torch.arange(7))
