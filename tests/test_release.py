"""The release a reader installs matches the code the chapters call: every Colab install cell and the README
pin the tag of tlbook's own version, and pyproject.toml carries that version too. (A chapter that calls a
function added after the pinned tag fails on Colab with an AttributeError, as the chapters would have under
v0.3.0, which lacks tl.sign_test and tl.widgets.episode_viewer.)"""
import json
import re
from pathlib import Path

import pytest

import tlbook as tl

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"tlbook @ git\+https://github\.com/everything-is-a-mapping/book@v([0-9][0-9A-Za-z.\-]*)")


def test_pyproject_has_the_package_version():
    assert f'version = "{tl.__version__}"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "book").glob("*.ipynb")))
def test_each_chapter_pins_the_current_release_on_colab(notebook):
    cells = json.loads((ROOT / "book" / notebook).read_text(encoding="utf-8"))["cells"]
    pins = [m for c in cells if c["cell_type"] == "code" for m in PIN.findall("".join(c["source"]))]
    assert pins == [tl.__version__], f"{notebook} pins {pins}; expected one install of v{tl.__version__}"


def test_readme_pins_the_current_release():
    assert PIN.findall((ROOT / "README.md").read_text(encoding="utf-8")) == [tl.__version__]
