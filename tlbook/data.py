"""Datasets as tensors on the device, and the subsets transfer experiments need.

A dataset is an :class:`ImageData`: ``images (N, C, H, W) float32 in [0, 1]`` and ``labels (N,) int64``,
both on one device. Training reads batches as index slices of a permutation made on that device,
so no ``DataLoader`` or host copy sits in the hot path.

The book's own datasets are loaded by :func:`tlbook.datasets.load_dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class ImageData:
    """A labelled image dataset held as two tensors on one device.

    Attributes:
        images: ``(N, C, H, W)`` float32, values in ``[0, 1]``.
        labels: ``(N,)`` int64, values in ``[0, num_classes)``.
        classes: class names, ``classes[k]`` names label ``k``.
        name: what the data is, e.g. ``'mnist/train'``; shown in reprs and errors.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple
    name: str = "data"

    def __post_init__(self):
        if self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.images.shape)}.")
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"{self.name}: labels must be (N,) with N = images.shape[0] = {self.images.shape[0]}, "
                f"got shape {tuple(self.labels.shape)}."
            )
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        """``data[idx]`` -> ``(images[idx], labels[idx])`` for an int, slice or index tensor."""
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[1:]))
        return f"ImageData({self.name!r}, n={len(self)}, images={shape}, classes={self.num_classes}, device={self.device})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def shape(self) -> tuple:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def to(self, device) -> "ImageData":
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, index: torch.Tensor, name: str | None = None) -> "ImageData":
        """The examples at ``index`` (an index tensor), with the same classes."""
        index = torch.as_tensor(index, device=self.labels.device)
        return replace(self, images=self.images[index], labels=self.labels[index], name=name or self.name)

    def class_counts(self) -> torch.Tensor:
        """``(num_classes,)`` int64: how many examples each class has."""
        return torch.bincount(self.labels, minlength=self.num_classes)


def _generator(seed: int, device) -> torch.Generator:
    device = torch.device(device)
    gen = torch.Generator(device=device if device.type in ("cuda",) else "cpu")
    gen.manual_seed(seed)
    return gen


def _permutation(n: int, seed: int, device) -> torch.Tensor:
    # Made on the CPU so that the same seed picks the same examples on every device.
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen).to(device)


def per_class_subset(data: ImageData, per_class: int, seed: int = 0) -> ImageData:
    """``per_class`` labelled examples of every class, drawn at random with ``seed``.

    The draw is nested: with the same seed, the 5-per-class subset contains the 1-per-class one,
    so a learning curve adds labels rather than drawing new ones at each size.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    counts = data.class_counts()
    if int(counts.min()) < per_class:
        poor = [data.classes[k] for k in range(data.num_classes) if int(counts[k]) < per_class]
        raise ValueError(
            f"{data.name}: cannot take {per_class} examples per class; classes {poor[:5]} have only "
            f"{int(counts.min())} examples (smallest class). Use per_class <= {int(counts.min())}."
        )
    order = _permutation(len(data), seed, data.labels.device)
    shuffled = data.labels[order]
    # Rank of each example within its class, in the seeded order: keep ranks < per_class.
    sort = torch.sort(shuffled, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(len(data), device=order.device) - starts[sort.values]
    rank = torch.empty_like(rank_sorted)
    rank[sort.indices] = rank_sorted
    keep = order[rank < per_class]
    return data.subset(keep, name=f"{data.name}[{per_class}/class, seed {seed}]")


def class_subset(data: ImageData, classes, relabel: bool = True) -> ImageData:
    """The examples whose label is in ``classes`` (label ints or class names).

    With ``relabel=True`` the labels become ``0..len(classes)-1`` in the order given, so a head
    of ``len(classes)`` outputs fits; otherwise the original labels and class list are kept.
    """
    ids = []
    for c in classes:
        if isinstance(c, str):
            if c not in data.classes:
                from .models import unknown_name_error

                raise unknown_name_error("class", c, data.classes)
            ids.append(data.classes.index(c))
        else:
            if not 0 <= int(c) < data.num_classes:
                raise ValueError(f"{data.name}: class {c} out of range 0..{data.num_classes - 1}.")
            ids.append(int(c))
    if len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"classes must be a non-empty list without repeats, got {list(classes)}.")
    wanted = torch.tensor(ids, device=data.labels.device)
    mask = (data.labels[:, None] == wanted[None, :]).any(1)
    out = data.subset(mask.nonzero().squeeze(1), name=f"{data.name}[classes {ids}]")
    if relabel:
        lookup = torch.full((data.num_classes,), -1, dtype=torch.long, device=data.labels.device)
        lookup[wanted] = torch.arange(len(ids), device=data.labels.device)
        out = replace(out, labels=lookup[out.labels], classes=tuple(data.classes[i] for i in ids))
    return out


def random_split(data: ImageData, sizes, seed: int = 0) -> list:
    """Split into disjoint random parts of the given sizes (ints, or fractions summing to 1)."""
    n = len(data)
    sizes = list(sizes)
    if all(isinstance(s, float) for s in sizes):
        if abs(sum(sizes) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {sizes} (sum {sum(sizes)}).")
        counts = [int(round(s * n)) for s in sizes]
        counts[-1] = n - sum(counts[:-1])
    else:
        counts = [int(s) for s in sizes]
        if any(c < 0 for c in counts) or sum(counts) > n:
            raise ValueError(f"{data.name} has {n} examples; cannot split into parts of sizes {counts}.")
    order = _permutation(n, seed, data.labels.device)
    parts, start = [], 0
    for i, c in enumerate(counts):
        parts.append(data.subset(order[start : start + c], name=f"{data.name}[part {i}]"))
        start += c
    return parts


def batches(n: int, batch_size: int, generator: torch.Generator | None = None, device="cpu", shuffle: bool = True):
    """Yield index tensors ``(B,)`` covering ``range(n)`` once, as slices of one permutation.

    The permutation is made on ``device`` in one call, so an epoch costs no per-batch host work.
    The last batch may be smaller.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if shuffle:
        order = torch.randperm(n, device=device, generator=generator)
    else:
        order = torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
