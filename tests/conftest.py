"""Shared test helpers: real datasets (or a skip), a fresh model cache, and headless Chromium."""
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

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


def dump_dom(binary: str, body: str) -> str:
    """Load ``body`` in a page in headless Chromium (no network) and return the DOM after its scripts ran."""
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(f"<!doctype html><html><body>{body}</body></html>", encoding="utf-8")
        return run_chromium(binary, page.as_uri(), "--dump-dom")


def in_browser(binary: str, body: str, script: str):
    """Load ``body`` (a panel's HTML), run ``script`` after it (it must set ``result``) and return ``result``.

    The script drives the panel as a reader would (set a slider, dispatch its event, click) and reads
    what the panel drew; ``result`` travels back as JSON in an element of the dumped DOM.
    """
    driver = (
        "<script>(function () {" + script + "\n"
        'var pre = document.createElement("pre"); pre.id = "tlbook-test-result";'
        " pre.textContent = JSON.stringify(result); document.body.appendChild(pre);})();</script>"
    )
    found = re.search(r'<pre id="tlbook-test-result">(.*?)</pre>', dump_dom(binary, body + driver), re.S)
    assert found, "the test's script did not run (did the panel's own script fail?)"
    return json.loads(html.unescape(found.group(1)))
