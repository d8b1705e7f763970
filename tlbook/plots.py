"""Plots every chapter uses: training curves, mean-and-spread curves over seeds, image grids."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import torch


def mean_band(ax, x, runs, label=None, color=None, marker="o", logx=False):
    """Plot the mean over seeds with a shaded min-max band.

    runs: ``(n_seeds, len(x))`` array-like of values; returns the mean ``(len(x),)``.
    """
    runs = np.asarray(runs, dtype=float)
    if runs.ndim == 1:
        runs = runs[None, :]
    if runs.shape[1] != len(x):
        raise ValueError(f"runs must be (n_seeds, {len(x)}) to match x, got {runs.shape}.")
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
    """Show ``images (N, C, H, W)`` in [0, 1] as a grid, with optional labels under each."""
    images = images.detach().float().cpu()
    n = images.shape[0]
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
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1))
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
