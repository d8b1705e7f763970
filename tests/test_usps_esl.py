"""Tests of the 'usps-esl' dataset (the ESL copy of USPS in usps.h5, read offline only): split sizes, shapes,
values and class counts against an independent read of the HDF5 file, and the errors for a missing or
damaged file. Skipped when ``$TLBOOK_DATA`` is unset or lacks usps.h5, like the other real-data tests.
"""
import shutil

import numpy as np
import pytest
import torch

import tlbook as tl

ROOT = tl.files.data_root()
FILE = None if ROOT is None else next((p for p in (ROOT / "usps" / "usps.h5", ROOT / "usps.h5") if p.is_file()), None)
needs_file = pytest.mark.skipif(FILE is None, reason="set TLBOOK_DATA to a folder with usps/usps.h5 (shared/data)")
h5py = pytest.importorskip("h5py")

# Class counts of ESL's zip.train / zip.test (digits 0..9).
COUNTS = {"train": [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644],
          "test": [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]}


@needs_file
@pytest.mark.parametrize("split,n", [("train", 7291), ("test", 2007)])
def test_counts_shapes_values_and_pixels(split, n):
    native = tl.load_dataset("usps-esl", split, device="cpu", size=16)
    assert native.images.shape == (n, 1, 16, 16) and native.images.dtype == torch.float32
    assert native.labels.shape == (n,) and native.labels.dtype == torch.int64
    assert 0 <= float(native.images.min()) and float(native.images.max()) <= 1
    assert native.class_counts().tolist() == COUNTS[split]
    with h5py.File(FILE, "r") as f:  # independent read: the rows are the 16x16 images, row by row
        pixels, targets = np.asarray(f[split]["data"]), np.asarray(f[split]["target"])
    np.testing.assert_array_equal(native.images.reshape(n, 256).numpy(), pixels)
    np.testing.assert_array_equal(native.labels.numpy(), targets)
    resized = tl.load_dataset("usps-esl", split, device="cpu")
    assert resized.images.shape == (n, 1, 28, 28) and 0 <= float(resized.images.min()) <= float(resized.images.max()) <= 1


@needs_file
def test_a_missing_file_names_the_file_and_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        tl.load_dataset("usps-esl", "train", device="cpu")
    message = str(err.value)
    assert "usps.h5" in message and "TLBOOK_DATA" in message and str(tmp_path) in message and "download" in message


@needs_file
def test_a_damaged_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "usps").mkdir()
    copy = tmp_path / "usps" / "usps.h5"
    shutil.copyfile(FILE, copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="Checksum mismatch") as err:
        tl.load_dataset("usps-esl", "test", device="cpu")
    assert "usps.h5" in str(err.value)
