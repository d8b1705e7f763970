"""Tests of tlbook.runtime and tlbook.plots: the run record, timed sections, the stamp, spread, bad input.

Expected values come from independent sources: git run here, the clock read around a section,
the statistics module, the rendered positions of a figure's artists.
"""
import importlib.metadata
import json
import math
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tlbook as tl  # noqa: E402
from tlbook import plots, runtime  # noqa: E402

OLD_REPORT_KEYS = {"device", "device_name", "precision", "mode", "torch", "seed", "wall_time_s"}


@pytest.fixture
def no_run(monkeypatch):
    """No current run, as in a fresh kernel where runtime.setup() was never called (restored afterwards)."""
    monkeypatch.setattr(runtime, "_current", None)
    monkeypatch.delenv("TLBOOK_QUICK", raising=False)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --- pick, seeds -----------------------------------------------------------------------------


def test_pick_passes_any_value_through(monkeypatch):
    monkeypatch.delenv("TLBOOK_QUICK", raising=False)
    assert runtime.pick(full=None, quick=5) is None and runtime.pick(10, 1) == 10
    monkeypatch.setenv("TLBOOK_QUICK", "1")
    assert runtime.pick(full=None, quick=5) == 5


def test_numpy_integer_seeds_repeat_a_run():
    runtime.seed_everything(np.int64(7))
    first = torch.rand(3)
    runtime.seed_everything(7)
    torch.testing.assert_close(torch.rand(3), first)


# --- timed sections --------------------------------------------------------------------------


def test_timed_sections_add_up_and_stay_within_the_clock(no_run):
    runtime.setup(seed=1, verbose=False)
    outer = time.perf_counter()
    for _ in range(2):
        with runtime.timed("sleeping"):
            time.sleep(0.03)
    with runtime.timed("other"):
        pass
    elapsed = time.perf_counter() - outer
    sections = runtime._current.sections
    assert list(sections) == ["sleeping", "other"]
    assert 0.06 <= sections["sleeping"] <= elapsed and 0 <= sections["other"] <= elapsed - sections["sleeping"]


def test_a_section_that_raises_is_not_recorded(no_run):
    with pytest.raises(ZeroDivisionError):
        with runtime.timed("broken"):
            1 / 0
    assert "broken" not in runtime.report()["sections"]


def test_timed_works_without_setup_and_report_says_nothing_was_seeded(no_run, capsys):
    with runtime.timed("5.7 CNN students"):
        pass
    record = runtime.report()
    assert record["seed"] is None and list(record["sections"]) == ["5.7 CNN students"]
    assert "not set" in capsys.readouterr().out


def test_setup_starts_a_new_run_without_old_sections(no_run):
    with runtime.timed("before"):
        pass
    runtime.setup(verbose=False)
    assert runtime.report()["sections"] == {}


def test_report_prints_the_sections_aligned(no_run, capsys):
    runtime.setup(verbose=False)
    for name in ("2.2 depth x labels", "2.3 schedules", "2.4 BN"):
        with runtime.timed(name):
            pass
    runtime.report()
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("sections  : "))
    rows = lines[first:first + 3]
    assert [row.split()[-1] for row in rows] == ["s", "s", "s"]
    assert len({len(row) for row in rows}) == 1 and all(row.startswith(" " * 12) for row in rows[1:])
    assert lines[first + 3].startswith("wall time : ")


# --- report: versions and commit -------------------------------------------------------------


def test_report_keeps_its_old_keys_and_adds_the_versions(no_run):
    record = runtime.setup(seed=2, verbose=False) and runtime.report()
    assert OLD_REPORT_KEYS <= set(record) and record["seed"] == 2
    assert record["tlbook"] == tl.__version__ and record["numpy"] == np.__version__
    assert record["python"] == platform.python_version() and record["torch"] == torch.__version__
    assert isinstance(record["tlbook_commit"], str) and record["sections"] == {}


def _git_here(*args):
    checkout = Path(tl.__file__).resolve().parent.parent
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None or not (Path(tl.__file__).resolve().parent.parent / ".git").exists(),
                    reason="tlbook is not imported from a git checkout")
def test_commit_is_the_checkout_head_and_says_when_tlbook_is_edited():
    commit = runtime._tlbook_commit()
    assert commit.split("+")[0] == _git_here("rev-parse", "HEAD")
    assert commit.endswith("+dirty") == bool(_git_here("status", "--porcelain", "--", "tlbook"))


class FakeDistribution:
    def __init__(self, direct_url):
        self.direct_url = direct_url

    def read_text(self, name):
        return self.direct_url if name == "direct_url.json" else None


@pytest.mark.parametrize("direct_url, expected", [
    (json.dumps({"url": "https://github.com/x/tlbook", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}), "abc123"),
    (json.dumps({"url": "file:///src/tlbook", "dir_info": {"editable": True}}), "unknown"),
    (None, "unknown"),  # installed from a wheel: no direct_url.json
])
def test_commit_of_a_pip_install_comes_from_direct_url(monkeypatch, direct_url, expected):
    monkeypatch.setattr(runtime, "_git", lambda *args: None)
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: FakeDistribution(direct_url))
    assert runtime._tlbook_commit() == expected


def test_commit_is_unknown_without_git_or_an_installed_distribution(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    assert runtime._tlbook_commit() == "unknown"


def test_a_hanging_git_is_given_up(monkeypatch):
    def hang(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hang)
    assert runtime._git(Path("."), "rev-parse", "HEAD") is None


# --- stamp -----------------------------------------------------------------------------------


@pytest.mark.parametrize("quick, mode", [(False, "full"), (True, "quick")])
def test_stamp_names_device_precision_mode_and_seed(no_run, monkeypatch, quick, mode):
    if quick:
        monkeypatch.setenv("TLBOOK_QUICK", "1")
    runtime.setup(seed=5, verbose=False)
    dev = runtime.device()
    assert runtime.stamp() == f"{runtime.device_name(dev)} · {runtime.precision(dev)} · {mode} mode · seed 5"


def test_stamp_without_setup_says_unseeded(no_run):
    assert runtime.stamp().endswith("· unseeded")


def _labelled_subplots():
    fig, axes = plt.subplots(1, 2, figsize=(6, 2.5))
    for ax in axes:
        ax.plot([1, 10, 100], [0.5, 0.7, 0.9])
        ax.set_xlabel("labels per class (log scale)")
        ax.set_ylabel("test accuracy")
    fig.tight_layout()
    return fig


def _history_figure():
    ax = plots.history({"a": {"round": [1, 2, 3], "eval_acc": [0.5, 0.6, 0.7]}})
    ax.figure.tight_layout()
    return ax.figure


def _image_grid():
    return plots.images(torch.rand(20, 1, 8, 8), labels=list(range(20)), ncols=10)


@pytest.mark.parametrize("make_figure", [_labelled_subplots, _history_figure, _image_grid])
def test_plot_stamp_sits_in_the_bottom_right_corner_clear_of_the_axes(no_run, make_figure):
    fig = make_figure()
    stamp = plots.stamp(fig)
    assert stamp in fig.texts and stamp.get_text() == runtime.stamp()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = stamp.get_window_extent(renderer)
    assert box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.x0 > fig.bbox.x1 / 2 and box.y1 < fig.bbox.y1 / 4
    for ax in fig.axes:  # an axes' tight box holds its tick labels, axis labels and title
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_xlabel()


def test_plot_stamp_replaces_an_earlier_stamp_and_takes_any_text(no_run):
    fig = _labelled_subplots()
    plots.stamp(fig)
    plots.stamp(fig, text="NVIDIA H200 · bf16 · full mode · seed 0 · 12 s")
    stamps = [t for t in fig.texts if t.get_gid() == "tlbook-stamp"]
    assert [t.get_text() for t in stamps] == ["NVIDIA H200 · bf16 · full mode · seed 0 · 12 s"]


# --- spread, mean_band, images ---------------------------------------------------------------


@pytest.mark.parametrize("values", [[0.905, 0.912, 0.920], (0.5, 0.25), np.array([0.1, 0.9, 0.4, 0.8])])
def test_spread_is_mean_min_max(values):
    v = [float(x) for x in values]
    assert plots.spread(values) == f"{statistics.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]"
    expected = f"{statistics.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}]"
    assert plots.spread(torch.tensor(v, dtype=torch.float64), digits=2) == expected


def test_spread_examples_in_points_and_for_one_value():
    assert plots.spread([0.905, 0.912, 0.920]) == "0.912 [0.905, 0.920]"
    assert plots.spread([0.905, 0.912, 0.920], percent=True) == "91.2 [90.5, 92.0] %"
    assert plots.spread([0.912]) == "0.912" and plots.spread(0.912, percent=True) == "91.2 %"


def test_mean_band_draws_the_mean_and_the_min_max_band():
    runs = [[0.1, 0.5, 0.9], [0.3, 0.7, 0.8]]
    _, ax = plt.subplots()
    mean = plots.mean_band(ax, [1, 10, 100], runs, logx=True)
    expected = [sum(column) / len(column) for column in zip(*runs)]
    np.testing.assert_allclose(mean, expected)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), expected)
    assert len(ax.collections) == 1 and ax.get_xscale() == "log"


def test_images_takes_grey_rgb_and_numpy():
    assert len(plots.images(torch.rand(3, 3, 8, 8), ncols=3).axes) == 3
    assert len(plots.images(np.random.rand(4, 1, 8, 8).astype(np.float32), ncols=2).axes) == 4


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("call, error, message", [
    (lambda: runtime.pick(full=1), TypeError, "quick is missing"),
    (lambda: runtime.pick(quick=1), TypeError, "full is missing"),
    (lambda: runtime.seed_everything("a"), TypeError, r"seed .*'a' \(str\)"),
    (lambda: runtime.seed_everything(True), TypeError, r"seed .*True"),
    (lambda: runtime.setup(seed=1.5, verbose=False), TypeError, r"seed .*1\.5 \(float\)"),
    (lambda: runtime.setup(seed=-1, verbose=False), ValueError, r"seed .*-1"),
    (lambda: runtime.seed_everything(2**64), ValueError, r"seed .*2\*\*64"),
    (lambda: runtime.precision("tpu"), ValueError, "dev='tpu'"),
    (lambda: runtime.device_name("tpu"), ValueError, "dev='tpu'"),
    (lambda: runtime.autocast("cpu", mode="fp8"), ValueError, "mode='fp8'"),
    (lambda: runtime.timed(""), TypeError, "name must be a non-empty string"),
    (lambda: runtime.timed(3), TypeError, "name .*3"),
])
def test_bad_input_runtime(no_run, call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("value, gpus, error, message", [
    ("gpu0", 0, ValueError, "TLBOOK_DEVICE='gpu0' is not a device"),
    ("cuda", 0, RuntimeError, "TLBOOK_DEVICE='cuda' but torch sees no CUDA GPU"),
    ("cuda:3", 1, RuntimeError, r"TLBOOK_DEVICE='cuda:3' but torch sees 1 GPU"),
])
def test_bad_input_device_setting(monkeypatch, value, gpus, error, message):
    monkeypatch.setenv("TLBOOK_DEVICE", value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(error, match=message):
        runtime.device()


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(values=[]), ValueError, "values is empty"),
    (dict(values=[0.9, math.nan, 0.8]), ValueError, r"values has NaN .*index \[1\]"),
    (dict(values=[0.9, math.inf]), ValueError, r"values has NaN or infinity"),
    (dict(values=[[0.9, 0.8], [0.7, 0.6]]), ValueError, r"values must be 1-D .*\(2, 2\)"),
    (dict(values=["high"]), TypeError, "values must be numbers"),
    (dict(values=[0.9], digits=-1), ValueError, "digits .*-1"),
])
def test_bad_input_spread(kwargs, error, message):
    with pytest.raises(error, match=message):
        plots.spread(**kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(x=[1, 2], runs=[[0.1, math.nan]]), ValueError, r"runs has NaN .*\(0, 1\)"),
    (dict(x=[1, 2, 3], runs=[[0.1, 0.2]]), ValueError, r"runs .*\(1, 2\) and x \(3,\)"),
    (dict(x=[1, 2], runs=np.zeros((2, 2, 2))), ValueError, r"runs must be \(n_seeds, len\(x\)\)"),
    (dict(x=[0, 1], runs=[0.1, 0.2], logx=True), ValueError, r"logx=True needs x > 0"),
])
def test_bad_input_mean_band(kwargs, error, message):
    _, ax = plt.subplots()
    with pytest.raises(error, match=message):
        plots.mean_band(ax, **kwargs)


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((torch.rand(4, 28, 28),), {}, ValueError, r"images must be \(N, C, H, W\), got shape \(4, 28, 28\).*\[:, None\]"),
    ((torch.rand(2, 4, 8, 8),), {}, ValueError, r"images .*C = 1 or 3, got shape \(2, 4, 8, 8\)"),
    ((torch.rand(2, 8, 8, 3),), {}, ValueError, r"images .*permute\(0, 3, 1, 2\)"),
    (([[0.5]],), {}, TypeError, "images must be a tensor"),
    ((torch.rand(3, 1, 8, 8),), dict(labels=[1]), ValueError, "labels has 1 entries for 3 images"),
    ((torch.rand(3, 1, 8, 8),), dict(ncols=0), ValueError, "ncols .*0"),
])
def test_bad_input_images(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        plots.images(*args, **kwargs)


def test_bad_input_stamp_names_fig_and_the_fix():
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match=r"fig must be a matplotlib Figure, got Axes: pass ax.figure"):
        plots.stamp(ax)
