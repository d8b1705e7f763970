"""Shared helpers of the claims tests: real datasets (or a skip), and a fresh model cache."""
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
