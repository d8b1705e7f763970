"""Dataset files on disk: where they are found, their checksums, and locks while they are prepared.

Files come from one of two places:

* ``$TLBOOK_DATA`` set (offline machines, CI): the files are looked up there, their md5 is checked,
  and they are linked into the working folder ``cache_dir() / "data"`` in torchvision's layout.
  Nothing is ever downloaded in this mode.
* ``$TLBOOK_DATA`` unset (Colab, a laptop): torchvision downloads from the official sources into the
  working folder and checks the same md5s.

Files that torchvision *extracts* from a checked archive (MNIST's and KMNIST's ``.gz``) are checked
too, against the md5 of their extracted bytes (:func:`_drop_damaged_extracted`,
:func:`_check_extracted`): torchvision itself only checks that they exist, so a damaged extracted
file would be read as wrong images. It is deleted instead, and extracted again from the checked archive.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .cache import cache_dir

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows
    fcntl = None

DATA_ENV = "TLBOOK_DATA"


def data_root() -> Path | None:
    """The offline data folder ``$TLBOOK_DATA``, or ``None`` when unset (then tlbook downloads).

    Both layouts are understood: the flat one of ``shared/data`` (``mnist/train-images-idx3-ubyte.gz``,
    ``kmnist/...``, ``usps/usps.t.bz2``, ``omniglot/*.zip``) and torchvision's (``MNIST/raw/...``,
    ``KMNIST/raw/...``, ``usps.t.bz2``, ``omniglot-py/*.zip``). The folder may be read-only.
    """
    root = os.environ.get(DATA_ENV, "").strip()
    return Path(root).expanduser() if root else None


def _work_dir() -> Path:
    """The writable folder where files are staged (torchvision layout) and decoded data is cached."""
    return cache_dir() / "data"


def _md5_error(path: Path, expected: str, url: str) -> RuntimeError:
    from torchvision.datasets.utils import calculate_md5

    where = f"Replace it with the file from {url}"
    if data_root() is not None:
        where += f", or unset {DATA_ENV} to let tlbook download it"
    return RuntimeError(
        f"Checksum mismatch: {path} has md5 {calculate_md5(path)}, expected {expected}. "
        f"The file is damaged or is not the official one. {where}."
    )


def _missing_error(dataset: str, missing: list, folders: list, url: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{dataset}: {DATA_ENV}={data_root()} is set, so tlbook reads files from there and never downloads, "
        f"but these files are missing: {', '.join(missing)}. Looked in: {', '.join(str(f) for f in folders)}. "
        f"Copy them into one of those folders (official source: {url}), or unset {DATA_ENV} to let "
        f"tlbook download them into {_work_dir()}."
    )


@contextlib.contextmanager
def _prepare_lock(name: str):
    """Hold an exclusive lock while files of ``name`` are staged, extracted or decoded.

    Parallel test workers and notebooks share one working folder, and torchvision extracts a
    ``.gz`` by writing the output file in place: without the lock, a second process would find
    the half-written file, take it as ready and fail on it. (No lock on Windows, which lacks fcntl.)
    """
    path = _work_dir() / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a symlink where allowed (no copy of the data), else a copy.

    Through a temporary name and a rename, so a reader in another process never sees half a file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(source.resolve(), tmp)
    except OSError:  # e.g. Windows without the symlink privilege
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _stage(dataset: str, files, target_dir: Path, subfolders, url: str) -> None:
    """Make ``target_dir`` hold ``files`` (``(filename, md5)`` pairs) taken from ``$TLBOOK_DATA``.

    Files already in ``target_dir`` with the right md5 are kept. The others are looked up in
    ``subfolders`` of the data root, checked against their md5 *before* torchvision sees them
    (torchvision would otherwise try to download a replacement), and linked in. Does nothing when
    ``$TLBOOK_DATA`` is unset: then torchvision downloads the files and checks the same md5s.
    """
    from torchvision.datasets.utils import check_integrity

    root = data_root()
    if root is None:
        return
    folders = [root / s for s in subfolders]
    todo, missing = [], []
    for filename, md5 in files:
        if check_integrity(target_dir / filename, md5):
            continue
        source = next((f / filename for f in folders if (f / filename).is_file()), None)
        if source is None:
            missing.append(filename)
        else:
            todo.append((source, filename, md5))
    if missing:
        raise _missing_error(dataset, missing, folders, url)
    for source, filename, md5 in todo:
        if not check_integrity(source, md5):
            raise _md5_error(source, md5, url)
        _link_or_copy(source, target_dir / filename)


def _drop_damaged_extracted(folder: Path, files) -> tuple:
    """Delete the extracted files in ``folder`` whose md5 is wrong: ``(names now absent, names deleted)``.

    ``files`` are ``(extracted name, md5)`` pairs. torchvision re-extracts a missing file from its
    archive (whose md5 it checks) but reads a present one as it is, so a truncated or altered file
    must go before torchvision looks. Call it under :func:`_prepare_lock`.
    """
    from torchvision.datasets.utils import check_integrity

    absent, deleted = [], []
    for name, md5 in files:
        path = folder / name
        if check_integrity(path, md5):
            continue
        if path.is_symlink() or path.exists():
            path.unlink()
            deleted.append(name)
        absent.append(name)
    return absent, deleted


def _check_extracted(dataset: str, folder: Path, files, url: str) -> None:
    """Raise if an extracted file still has the wrong md5 after torchvision extracted it again.

    The archives were checked before extraction, so this only fails when something else is wrong:
    a disk that corrupts writes, or a torchvision whose extraction differs from the official files.
    """
    from torchvision.datasets.utils import check_integrity

    for name, md5 in files:
        path = folder / name
        if not check_integrity(path, md5):
            raise RuntimeError(
                f"{dataset}: {path} was extracted again from its checked archive but still does not match "
                f"(md5 expected {md5}). Delete the folder {folder} and load again; if that fails too, the "
                f"disk or the torchvision version is at fault (official files: {url})."
            )
