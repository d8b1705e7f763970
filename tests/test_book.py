"""The rendered book: it builds without warnings, and its pages render offline in a real browser.

The book is built (``jupyter-book build . -W --keep-going``) when ``_build/html`` is missing or
older than its sources, and the test fails if that build fails. Pages are then loaded in headless
Chromium with every host name unresolvable, so a page that needs a CDN shows it here: maths must
be typeset by the vendored MathJax (``mjx-container``), figures present, widgets drawn by the
vendored widget manager, no traceback shown, and the bibliography rendered. A screenshot of a
chapter page goes to ``artifacts/``.

Without Chromium the browser tests are skipped, except under CI (``CI`` set), where they fail.
"""
from __future__ import annotations

import html as html_module
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from conftest import run_chromium

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "artifacts"
SOURCES = ["_config.yml", "_toc.yml", "book", "tlbook"]
SOURCE_SUFFIXES = {".yml", ".md", ".ipynb", ".bib", ".py"}
CDN_HOSTS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "mathjax.org", "googleapis.com")


# --- building ------------------------------------------------------------------------------------
def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if f.is_file() and f.suffix in SOURCE_SUFFIXES and ".ipynb_checkpoints" not in f.parts:
                newest = max(newest, f.stat().st_mtime)
    return newest


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def html() -> Path:
    """The built book; built here when missing or older than its sources."""
    index, stamp = HTML / "index.html", HTML / ".buildinfo"  # Sphinx rewrites .buildinfo on every build
    if not index.exists() or not stamp.exists() or stamp.stat().st_mtime < _newest_source():
        _run(["bash", "scripts/vendor_assets.sh"], "fetching MathJax and the widget manager")
        jb = Path(sys.executable).parent / "jupyter-book"
        # --all: every page is rebuilt, so warnings of unchanged pages are reported again.
        _run([str(jb) if jb.exists() else "jupyter-book", "build", ".", "--all", "-W", "--keep-going"], "building the book")
    assert index.exists(), "the build produced no _build/html/index.html"
    return HTML


def _notebooks() -> list[str]:
    return sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").glob("*.ipynb"))


def _built(html: Path, names) -> list[str]:
    """The names that have a page; a notebook missing from _toc.yml fails test_every_notebook_is_in_the_book."""
    return [n for n in names if (html / f"{n}.html").exists()]


def _pages() -> list[str]:
    """Pages to load in the browser: the landing pages, the appendix and every notebook."""
    fixed = ["book/intro", "book/tour", "book/api", "book/glossary", "book/references"]
    return fixed + [nb for nb in _notebooks() if nb not in fixed]


# --- parsing -------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects what the assertions need: scripts, stylesheets, images, output text, maths."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts, self.styles, self.images = [], [], []
        self.math = 0
        self.output_text, self.stderr_text = [], []
        self._stack = []  # (tag, classes) of open elements

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "link" and attrs.get("href") and set((attrs.get("rel") or "").split()) & {"stylesheet", "preload", "modulepreload"}:
            self.styles.append(attrs["href"])
        if tag == "img":
            self.images.append((attrs.get("src") or "", self._inside("cell_output") or self._inside("widget-output")))
        if "math" in classes and tag in ("span", "div"):
            self.math += 1
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "wbr"):
            self._stack.append((tag, classes))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        if self._inside("cell_output"):
            self.output_text.append(data)
            if self._inside("stderr"):
                self.stderr_text.append(data)

    def _inside(self, cls: str) -> bool:
        return any(cls in classes for _, classes in self._stack)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="session")
def rendered(html, chromium):
    """DOM after scripts ran, per page name, loaded lazily."""
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = run_chromium(chromium, (html / f"{name}.html").as_uri(), "--dump-dom")
        return cache[name]

    return get


# --- tests of the build --------------------------------------------------------------------------
def test_every_notebook_is_in_the_book(html):
    missing = [nb for nb in _notebooks() if not (html / f"{nb}.html").exists()]
    assert not missing, f"notebooks with no page in the book (add them to _toc.yml): {missing}"


def test_pages_need_no_cdn(html):
    """Scripts and stylesheets are local files; the vendored MathJax and widget manager are used."""
    remote = {}
    for page in sorted(html.rglob("*.html")):
        if "_static" in page.parts or "_modules" in page.parts:
            continue
        parsed = _parse(page.read_text(encoding="utf-8"))
        bad = [u for u in parsed.scripts + parsed.styles if urlparse(u).scheme in ("http", "https") or u.startswith("//")]
        if bad:
            remote[str(page.relative_to(html))] = bad
    assert not remote, f"pages load scripts or stylesheets from the network: {remote}"
    # The default CDN URLs of MathJax, require.js and the widget manager must be gone. (unpkg.com
    # stays in an inline constant of sphinx-thebe, fetched only if a reader starts live code.)
    for name in _built(html, ["book/intro"] + _notebooks()):
        text = (html / f"{name}.html").read_text(encoding="utf-8")
        for host in CDN_HOSTS:
            assert host not in text, f"{name}.html mentions {host}"
        assert "data-jupyter-widgets-cdn" not in text, f"{name}.html lets widgets load from a CDN"
    intro = _parse((html / "book/intro.html").read_text(encoding="utf-8"))
    assert any(urlparse(s).path.endswith("_static/mathjax/tex-chtml.js") for s in intro.scripts), intro.scripts
    assert (html / "_static/mathjax/tex-chtml.js").exists()
    tour = _parse((html / "book/tour.html").read_text(encoding="utf-8"))
    assert any(urlparse(s).path.endswith("_static/require.js") for s in tour.scripts), tour.scripts
    assert any(urlparse(s).path.endswith("_static/html-manager/embed-amd.js") for s in tour.scripts), tour.scripts


def test_notebook_pages_have_no_errors_and_all_images(html):
    for name in _built(html, _notebooks()):
        page_file = html / f"{name}.html"
        page = _parse(page_file.read_text(encoding="utf-8"))
        text = "".join(page.output_text)
        assert "Traceback (most recent call last)" not in text, f"{name}: a traceback is stored in an output"
        assert 'class="output traceback' not in page_file.read_text(encoding="utf-8"), f"{name}: an error output"
        errors = re.findall(r"\b\w*Error\b", "".join(page.stderr_text))
        assert not errors, f"{name}: stderr output mentions {errors}"
        figures = [src for src, in_output in page.images if in_output]
        assert figures, f"{name}: no figure in any cell output"
        for src in (s for s, _ in page.images):
            if src.startswith("data:") or urlparse(src).scheme in ("http", "https"):
                continue
            target = (page_file.parent / unquote(urlparse(src).path)).resolve()
            assert target.exists(), f"{name}: image {src} is missing from the build"


# --- tests in the browser ------------------------------------------------------------------------
@pytest.mark.parametrize("name", _pages())
def test_page_renders_offline(name, html, rendered):
    if not (html / f"{name}.html").exists():
        pytest.skip(f"{name} has no page (not in _toc.yml); test_every_notebook_is_in_the_book reports it")
    source = (html / f"{name}.html").read_text(encoding="utf-8")
    dom = rendered(name)
    assert "Everything Is a Mapping" in dom, f"{name}: the page did not load"
    raw_math = _parse(source).math
    if raw_math:
        typeset = dom.count("<mjx-container")
        assert typeset >= raw_math, f"{name}: {raw_math} formulas in the page, only {typeset} typeset by MathJax"
        assert "<mjx-merror" not in dom, f"{name}: MathJax reports a TeX error"
    if "application/vnd.jupyter.widget-state+json" in source:
        # Drawn widgets are Lumino widgets in the DOM (class "lm-Widget"); the raw page has none.
        assert _drawn(dom, "jupyter-widgets"), f"{name}: the page stores widgets but none was drawn"
    assert "Error displaying widget" not in dom, f"{name}: a widget failed to render"


def test_intro_has_typeset_maths(rendered):
    assert rendered("book/intro").count("<mjx-container") >= 5


def _drawn(dom: str, cls: str) -> bool:
    """Whether the DOM has an element drawn by the widget manager with class ``cls``."""
    return any(cls in c.split() for c in re.findall(r'class="([^"]*\blm-Widget\b[^"]*)"', dom))


def test_tour_draws_its_widget(rendered):
    dom = rendered("book/tour")
    assert _drawn(dom, "widget-slider"), "the tour's IntSlider was not drawn"
    assert _drawn(dom, "widget-output"), "the tour's interactive output was not drawn"
    assert re.search(r'class="[^"]*jp-RenderedImage[^"]*"[^>]*>\s*<img', dom), \
        "the figure inside the interactive widget was not drawn"


def test_references_page_lists_the_bibliography(rendered):
    dom = rendered("book/references")
    entries = re.findall(r'class="citation"', dom)
    assert len(entries) >= 5, f"only {len(entries)} bibliography entries rendered"
    assert "a survey on transfer learning" in dom.lower()


def test_citations_link_to_the_bibliography(html):
    intro = (html / "book/intro.html").read_text(encoding="utf-8")
    assert re.search(r'href="references\.html#id\d+"', intro) or 'references.html#' in intro


def test_screenshots(html, chromium):
    """Screenshots of a chapter page (and the tour) for a person to look at: artifacts/*.png."""
    chapters = [nb for nb in _built(html, _notebooks()) if nb != "book/tour"]
    ARTIFACTS.mkdir(exist_ok=True)
    for name in (chapters[:1] or []) + ["book/tour", "book/intro"]:
        out = ARTIFACTS / f"{name.replace('/', '_')}.png"
        if out.exists():
            out.unlink()
        run_chromium(chromium, (html / f"{name}.html").as_uri(), f"--screenshot={out}", "--window-size=1280,1600",
                  "--hide-scrollbars")
        assert out.exists() and out.stat().st_size > 10_000, f"no screenshot of {name}"


def test_fine_tuning_grid_explorer_responds_to_its_controls(html, chromium):
    """Chapter 2's static explorer, driven in the rendered page the way a reader drives it.

    A copy of the built page (same folder, so its scripts and styles load) gets a last script that
    moves the slider and switches the x axis, firing the events a reader's input fires; the DOM
    afterwards must show the grid's numbers for the new selection, taken from the page's own data.
    """
    page = html / "book/02_fine_tuning.html"
    if not page.exists():
        pytest.skip("Chapter 2 is not built (see test_every_notebook_is_in_the_book)")
    source = page.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="ft-grid-explorer-data">(.*?)</script>', source, re.S)
    assert match, "the chapter's grid explorer (element id ft-grid-explorer) is not in the page"
    data = json.loads(match.group(1))
    (_, depths), (_, ks) = data["axes"]
    means = data["grid"][0]                         # flattened (depth, k), row-major
    last_k = len(ks) - 1
    drive = f"""<script>
      var root = document.getElementById("ft-grid-explorer");
      var slider = root.querySelector(".tlbook-slider");
      slider.value = {last_k}; slider.dispatchEvent(new Event("input"));
      var after_slider = Array.from(root.querySelectorAll("circle.tlbook-point")).map(function (c) {{ return c.getAttribute("data-mean"); }});
      var x = root.querySelector(".tlbook-xaxis");
      x.value = "1"; x.dispatchEvent(new Event("change"));
      var marker = document.createElement("pre"); marker.id = "driven";
      marker.textContent = JSON.stringify({{slider: after_slider,
        swapped: Array.from(root.querySelectorAll("circle.tlbook-point")).map(function (c) {{ return c.getAttribute("data-mean"); }}),
        label: root.querySelector(".tlbook-slider-value").textContent}});
      document.body.appendChild(marker);
    </script></body>"""
    driven = page.with_name("_driven_02_fine_tuning.html")
    try:
        driven.write_text(source.replace("</body>", drive, 1), encoding="utf-8")
        dom = run_chromium(chromium, driven.as_uri(), "--dump-dom")
    finally:
        driven.unlink(missing_ok=True)
    found = re.search(r'<pre id="driven"[^>]*>(.*?)</pre>', dom, re.S)  # the theme adds tabindex to <pre>
    assert found, "the driving script did not run (the explorer's script failed?)"
    result = json.loads(html_module.unescape(found.group(1)))
    # Slider at the last k, x axis = freeze depth: one point per depth, the grid's column for that k.
    assert [float(v) for v in result["slider"]] == pytest.approx([means[d * len(ks) + last_k] for d in range(len(depths))], abs=1e-5)
    # x axis swapped to k: the slider now runs over depths and was kept at a valid position.
    at = min(last_k, len(depths) - 1)
    assert [float(v) for v in result["swapped"]] == pytest.approx([means[at * len(ks) + j] for j in range(len(ks))], abs=1e-5)
    assert result["label"].endswith(f"= {depths[at]}")


def test_fine_tuning_panel_is_drawn_with_its_stored_run(rendered):
    dom = rendered("book/02_fine_tuning")
    assert _drawn(dom, "widget-slider"), "the panel's sliders were not drawn"
    assert _drawn(dom, "widget-button"), "the panel's train button was not drawn"
    assert re.search(r'class="[^"]*jp-RenderedImage[^"]*"[^>]*>\s*<img', dom), "the stored run's plot was not drawn in the panel"
    assert "ft-grid-explorer" in dom and "tlbook-point" in dom, "the static grid explorer drew no points"


def test_meta_learning_episode_viewer_shows_the_stored_predictions(rendered, html):
    """Chapter 3's episode viewer in the rendered page: the first episode's score line for the first method
    is the one computed from the page's own data (predictions against labels), and every image is inside the page."""
    page = html / "book/03_meta_learning.html"
    if not page.exists():
        pytest.skip("Chapter 3 is not built (see test_every_notebook_is_in_the_book)")
    match = re.search(r'<script type="application/json" id="meta-episode-viewer-data">(.*?)</script>',
                      page.read_text(encoding="utf-8"), re.S)
    assert match, "the chapter's episode viewer (element id meta-episode-viewer) is not in the page"
    data = json.loads(match.group(1))
    method = next(iter(data["predictions"]))
    labels, predicted = data["query_labels"][0], data["predictions"][method][0]
    right = sum(p == y for p, y in zip(predicted, labels))
    dom = rendered("book/03_meta_learning")
    assert f"{method}: {right} of {len(labels)} right" in dom, "the viewer did not draw the first episode's score"
    drawn = re.findall(r'<img[^>]*src="data:image/png;base64,', dom)   # the viewer's images travel inside the page
    assert len(drawn) >= len(data["support_images"][0]) + len(labels), "the viewer drew no support or query images"
