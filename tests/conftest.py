"""Shared test helpers: real datasets (or a skip), a fresh model cache, and headless Chromium."""
import os
import shutil
import subprocess
import tempfile

import pytest

import tlbook as tl


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """Point TLBOOK_CACHE at an empty folder for one test module, so its source models are really trained."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLBOOK_CACHE", str(tmp_path_factory.mktemp("tlbook-cache")))
        yield


@pytest.fixture(scope="session")
def load_or_skip():
    """``load_or_skip(("mnist", "train"), ...)`` -> the loaded splits, or a skip when the data is unavailable."""

    def load(*splits):
        try:
            return [tl.load_dataset(name, split) for name, split in splits]
        except (FileNotFoundError, RuntimeError) as err:  # no offline data and no network
            pytest.skip(f"datasets unavailable: {err}")

    return load


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary ($CHROMIUM or on PATH); skipped without one, except under CI where it fails."""
    found = os.environ.get("CHROMIUM") or next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        reason = "no chromium found (apt-get install -y chromium, or set CHROMIUM=/path/to/chrome)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}: pages and widgets must be checked in a browser in CI.", pytrace=False)
        pytest.skip(reason)
    return found


def run_chromium(binary: str, url: str, *args: str, timeout: int = 120) -> str:
    """Load ``url`` in headless Chromium with no network (``*args`` e.g. ``--dump-dom``); return its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            # No host name resolves: anything a page fetches from the network fails, as offline.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000", *args, url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"chromium failed on {url} (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return proc.stdout
