"""Plots every chapter uses: training curves, mean-and-spread curves over seeds, image grids, the run stamp.

A result over seeds is shown one way everywhere: the mean with its min-max range, drawn by
:func:`mean_band` and printed by :func:`spread` (``'0.912 [0.905, 0.920]'``).
"""
from __future__ import annotations

import numbers

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import FigureBase
from matplotlib.ticker import MaxNLocator
import torch

from . import runtime

_STAMP_ID = "tlbook-stamp"


def _numbers(values, name: str) -> np.ndarray:
    """``values`` as a float array, or a clear error naming ``name`` (not numbers, NaN or infinity)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double()
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, got {values!r}.") from err
    if not np.isfinite(array).all():
        bad = [tuple(i) if len(i) > 1 else i[0] for i in np.argwhere(~np.isfinite(array)).tolist()]
        raise ValueError(f"{name} has NaN or infinity at index {bad[:5]}{' ...' if len(bad) > 5 else ''}: "
                         "a run diverged or was never filled in; fix it or drop it.")
    return array


def spread(values, digits: int | None = None, *, percent: bool = False) -> str:
    """``'mean [min, max]'`` of a result over seeds: ``tl.spread([0.905, 0.912, 0.920])`` -> ``'0.912 [0.905, 0.920]'``.

    values: ``(n,)`` numbers (list, NumPy array or tensor), none NaN or infinite; one value prints alone.
    percent: print ``100 * values``, in points, with a ``' %'`` suffix: ``'91.2 [90.5, 92.0] %'``.
    digits: decimals; 3 for fractions and 1 for percent by default.
    """
    array = _numbers(values, "values")
    if array.ndim > 1:
        raise ValueError(f"values must be 1-D (one number per seed), got shape {array.shape}; "
                         "pass one row or column, e.g. acc[:, j].")
    array = array.reshape(-1)
    if array.size == 0:
        raise ValueError("values is empty: pass at least one number, e.g. one accuracy per seed.")
    if digits is None:
        digits = 1 if percent else 3
    if not isinstance(digits, numbers.Integral) or isinstance(digits, bool) or digits < 0:
        raise ValueError(f"digits must be a whole number >= 0 (decimals), got {digits!r}.")
    if percent:
        array = 100 * array
    text = f"{array.mean():.{digits}f}"
    if array.size > 1:
        text += f" [{array.min():.{digits}f}, {array.max():.{digits}f}]"
    return text + (" %" if percent else "")


def mean_band(ax, x, runs, label=None, color=None, marker="o", logx=False):
    """Plot the mean over seeds with a shaded min-max band.

    x: ``(n_points,)``; runs: ``(n_seeds, n_points)`` (or ``(n_points,)`` for one seed) array-like of
    finite values. Returns the mean ``(n_points,)``.
    """
    runs = _numbers(runs, "runs")
    x_shape = np.shape(x)
    if runs.ndim == 1:
        runs = runs[None, :]
    if len(x_shape) != 1 or runs.ndim != 2 or runs.shape[1] != x_shape[0]:
        raise ValueError(f"runs must be (n_seeds, len(x)) and x 1-D, got runs {tuple(runs.shape)} and x {x_shape}; "
                         "one row per seed, one column per x.")
    if logx and np.issubdtype(np.asarray(x).dtype, np.number) and (np.asarray(x) <= 0).any():
        raise ValueError(f"logx=True needs x > 0, got x = {list(x)}; drop the non-positive points or use logx=False.")
    mean = runs.mean(0)
    (line,) = ax.plot(x, mean, marker=marker, label=label, color=color)
    if runs.shape[0] > 1:
        ax.fill_between(x, runs.min(0), runs.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    if logx:
        ax.set_xscale("log")
    return mean


def history(histories: dict, metric: str = "eval_acc", ax=None):
    """One line per run: ``histories = {label: history from tl.fit}``, ``metric`` against round."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, h in histories.items():
        if metric not in h:
            raise KeyError(f"history {label!r} has no {metric!r}; it has {sorted(k for k in h if isinstance(h[k], list))}.")
        ax.plot(h["round"], h[metric], marker=".", label=label)
    # Rounds are whole numbers: no tick at epoch 1.5.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round (epoch)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def images(images: torch.Tensor, labels=None, ncols: int = 10, size: float = 1.0, title=None):
    """Show ``images (N, C, H, W)`` in [0, 1], C = 1 (grey) or 3 (RGB), as a grid, with optional labels under each."""
    if not isinstance(images, torch.Tensor):
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a tensor (N, C, H, W), got {type(images).__name__}.")
        images = torch.from_numpy(images)
    shape = tuple(images.shape)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {shape}; "
                         "for (N, H, W) pass images[:, None], for one (C, H, W) image pass images[None].")
    if shape[1] not in (1, 3):
        hint = " (channels last? pass images.permute(0, 3, 1, 2))" if shape[3] in (1, 3) else ""
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got shape {shape}{hint}.")
    if not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a whole number >= 1, got {ncols!r}.")
    n = shape[0]
    if labels is not None and len(labels) < n:
        raise ValueError(f"labels has {len(labels)} entries for {n} images; pass one label per image.")
    images = images.detach().float().cpu().numpy()  # matplotlib reads arrays, not tensors
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.transpose(1, 2, 0).clip(0, 1))
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def stamp(fig, text: str | None = None):
    """Write what produced ``fig`` (``text``, default :func:`tl.stamp`) small and grey in its bottom-right corner.

    Call it last, after ``tight_layout`` (or with constrained layout): the stamp sits at the very
    bottom edge, below the margin the layout leaves under the x labels. A second call replaces the
    first stamp. Returns the ``matplotlib.text.Text``.
    """
    if not isinstance(fig, FigureBase):
        hint = ": pass ax.figure" if hasattr(fig, "figure") else ""
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}{hint}.")
    text = runtime.stamp() if text is None else str(text)
    for old in [t for t in fig.texts if t.get_gid() == _STAMP_ID]:
        old.remove()
    return fig.text(0.995, 0.0, text, ha="right", va="bottom", fontsize=5, color="0.55", gid=_STAMP_ID)
