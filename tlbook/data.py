"""Datasets as tensors on the device, the subsets transfer experiments need, and samplers.

A dataset is an :class:`ImageData`: ``images (N, C, H, W) float32 in [0, 1]``, ``labels (N,) int64``
(or none at all, for unlabelled data) and any number of per-example *columns* (teacher logits,
sample weights, domain ids, out-of-fold predictions), all on one device. Training reads batches as
index slices of a permutation made on that device, so no ``DataLoader`` or host copy sits in the
hot path. Tasks that are not a dataset (few-shot episodes, sinusoid regressions) are a
:class:`Sampler` that draws each batch on the device; :func:`tlbook.fit` trains from either.

The book's own datasets are loaded by :func:`tlbook.datasets.load_dataset`.
"""
from __future__ import annotations

import keyword

import torch

from .checks import seed_value, whole_number


class ImageData:
    """An image dataset held as tensors on one device: images, labels (optional) and extra columns.

    Args:
        images: ``(N, C, H, W)`` float32, values in ``[0, 1]``.
        labels: ``(N,)`` int64 in ``[0, len(classes))``, or ``None`` for unlabelled data.
        classes: class names, ``classes[k]`` names label ``k`` (kept for unlabelled data too).
        name: what the data is, e.g. ``'mnist/train'``; shown in reprs and errors.
        columns: optional ``{name: tensor (N, ...)}`` of per-example values that follow every
            subset, split, device move and batch (e.g. ``teacher_logits (N, K)``).

    A batch (``data[idx]``, and what :func:`tlbook.fit` hands a step function) is the tuple
    ``(images, labels, *columns)`` in the order the columns were added; for unlabelled data it is
    ``(images, *columns)``. Labels are checked against the classes here, at construction.
    """

    def __init__(self, images, labels, classes, name: str = "data", columns: dict | None = None):
        self.name = str(name)
        self.classes = tuple(classes)
        self.images = _checked_images(images, self.name)
        self._labels = None if labels is None else _checked_labels(labels, self.images, len(self.classes), self.name)
        self.columns = {}
        for key, value in (columns or {}).items():
            self.columns[key] = _checked_column(key, value, self.images, self.name)

    @classmethod
    def _trusted(cls, images, labels, classes, name, columns) -> "ImageData":
        # Subsets and device moves of checked data: skip the checks (and their host syncs).
        data = cls.__new__(cls)
        data.images, data._labels, data.classes, data.name, data.columns = images, labels, tuple(classes), name, columns
        return data

    # --- what the data holds ---

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` int64. Unlabelled data has none: reading them is an error, never a silent leak."""
        if self._labels is None:
            raise ValueError(
                f"{self.name} has no labels (it is unlabelled data, e.g. from .unlabelled()); "
                "a step function gets (images, *columns) from it, and tl.evaluate needs labelled data."
            )
        return self._labels

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

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

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index) -> tuple:
        """``data[idx]`` -> ``(images[idx], labels[idx], *columns[idx])`` (no labels if unlabelled)."""
        labels = () if self._labels is None else (self._labels[index],)
        return (self.images[index], *labels, *(c[index] for c in self.columns.values()))

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[1:]))
        extra = "" if self.has_labels else ", unlabelled"
        extra += f", columns={list(self.columns)}" if self.columns else ""
        return f"ImageData({self.name!r}, n={len(self)}, images={shape}, classes={self.num_classes}{extra}, device={self.device})"

    def class_counts(self) -> torch.Tensor:
        """``(num_classes,)`` int64: how many examples each class has."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    # --- new datasets from this one (the originals are never changed) ---

    def replace(self, **changes) -> "ImageData":
        """A copy with some of ``images``, ``labels``, ``classes``, ``name``, ``columns`` replaced (checked)."""
        unknown = set(changes) - {"images", "labels", "classes", "name", "columns"}
        if unknown:
            raise TypeError(f"ImageData.replace got unknown fields {sorted(unknown)}; it takes images, labels, classes, name, columns.")
        fields = dict(images=self.images, labels=self._labels, classes=self.classes, name=self.name, columns=self.columns)
        fields.update(changes)
        return ImageData(fields["images"], fields["labels"], fields["classes"], fields["name"], fields["columns"])

    def with_columns(self, **columns) -> "ImageData":
        """The same examples with more per-example columns, e.g. ``with_columns(teacher_logits=z)``.

        Each column is a tensor ``(N, ...)`` (moved to the data's device). Batches then carry them
        after the labels, in the order added: ``images, labels, teacher_logits = batch``.
        """
        for key in columns:
            if key in self.columns:
                raise ValueError(f"{self.name} already has a column {key!r}; drop it first or choose another name.")
        merged = dict(self.columns)
        merged.update({k: _checked_column(k, v, self.images, self.name) for k, v in columns.items()})
        return ImageData._trusted(self.images, self._labels, self.classes, self.name, merged)

    def without_columns(self, *names) -> "ImageData":
        """The same examples without the named columns (all of them if none are named)."""
        for key in names:
            if key not in self.columns:
                from .models import unknown_name_error

                raise unknown_name_error("column", key, self.columns)
        kept = {k: v for k, v in self.columns.items() if names and k not in names}
        return ImageData._trusted(self.images, self._labels, self.classes, self.name, kept)

    def unlabelled(self) -> "ImageData":
        """The same images (and columns) without labels: a target domain whose labels must not be used.

        :func:`tlbook.fit` then hands a step ``(images, *columns)``, and :func:`tlbook.evaluate`
        refuses the data, so the labels cannot reach training or model selection by accident.
        """
        return ImageData._trusted(self.images, None, self.classes, f"{self.name} (unlabelled)", dict(self.columns))

    def to(self, device) -> "ImageData":
        labels = None if self._labels is None else self._labels.to(device)
        columns = {k: v.to(device) for k, v in self.columns.items()}
        return ImageData._trusted(self.images.to(device), labels, self.classes, self.name, columns)

    def subset(self, index, name: str | None = None) -> "ImageData":
        """The examples at ``index`` (an index tensor or list), with the same classes and columns."""
        index = torch.as_tensor(index, device=self.images.device)
        if index.dtype == torch.bool or index.is_floating_point():
            raise TypeError(f"subset needs integer indices, got a {index.dtype} tensor; use mask.nonzero().squeeze(1) for a mask.")
        labels = None if self._labels is None else self._labels[index]
        columns = {k: v[index] for k, v in self.columns.items()}
        return ImageData._trusted(self.images[index], labels, self.classes, name or self.name, columns)


def _checked_images(images, name: str) -> torch.Tensor:
    if not torch.is_tensor(images):
        raise TypeError(f"{name}: images must be a torch tensor (N, C, H, W), got {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"{name}: images must be (N, C, H, W), got shape {tuple(images.shape)}; for one channel use images[:, None].")
    if images.dtype != torch.float32:
        fix = "images.float() / 255" if images.dtype == torch.uint8 else "images.float()"
        raise TypeError(f"{name}: images must be float32 with values in [0, 1], got {images.dtype}; convert with {fix}.")
    if images.numel():
        low, high = torch.aminmax(images)
        low, high = float(low), float(high)  # one host sync, at construction only
        if not (0.0 <= low and high <= 1.0):
            hint = " (it looks like 0-255 grey levels: divide by 255)" if high > 1.5 else ""
            raise ValueError(f"{name}: image values must lie in [0, 1], got [{low:g}, {high:g}]{hint}.")
    return images


def _checked_labels(labels, images: torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    if not torch.is_tensor(labels):
        raise TypeError(f"{name}: labels must be a torch tensor (N,) of int64, got {type(labels).__name__}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{name}: labels must be integers (int64), got {labels.dtype}; convert with labels.long() if they are whole numbers.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name}: labels must be (N,) with N = images.shape[0] = {images.shape[0]}, got shape {tuple(labels.shape)}."
        )
    if num_classes < 1:
        raise ValueError(f"{name}: labelled data needs at least one class name in classes.")
    labels = labels.to(device=images.device, dtype=torch.long)
    if labels.numel():
        low, high = torch.aminmax(labels)
        low, high = int(low), int(high)
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{name}: labels must lie in [0, {num_classes - 1}] for the {num_classes} classes given, "
                f"got values in [{low}, {high}]; pass the full list of class names (or relabel)."
            )
    return labels


def _checked_column(key: str, value, images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key) or key in ("images", "labels"):
        raise ValueError(f"{name}: column names must be Python identifiers other than images/labels, got {key!r}.")
    if not torch.is_tensor(value):
        raise TypeError(f"{name}: column {key!r} must be a tensor (N, ...), got {type(value).__name__}.")
    if value.ndim < 1 or value.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name}: column {key!r} must have one row per example, (N, ...) with N = {images.shape[0]}, "
            f"got shape {tuple(value.shape)}."
        )
    return value.detach().to(images.device)


class Sampler:
    """Tasks that are not a fixed dataset: an object that draws one training batch at a time on the device.

    Subclasses set ``device`` and implement ``sample(generator) -> batch`` (a tuple of tensors that
    the step function unpacks). :func:`tlbook.fit` calls it once per step, so episodes, sinusoid
    regressions or pairs of domains train through the same loop as datasets:
    ``tl.fit(model, tl.meta.Episodes(background, ways=5, shots=1, queries=15), protonet_step, steps=2000)``.
    """

    device: torch.device = torch.device("cpu")

    def sample(self, generator: torch.Generator) -> tuple:  # pragma: no cover - interface
        raise NotImplementedError("a Sampler subclass implements sample(generator) -> batch")


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
    per_class, seed = whole_number(per_class, "per_class"), seed_value(seed)
    counts = data.class_counts()
    if int(counts.min()) < per_class:
        poor = [data.classes[k] for k in range(data.num_classes) if int(counts[k]) < per_class]
        raise ValueError(
            f"{data.name}: cannot take {per_class} examples per class; classes {poor[:5]} have only "
            f"{int(counts.min())} examples (smallest class). Use per_class <= {int(counts.min())}."
        )
    order = _permutation(len(data), seed, data.images.device)
    # Rank of each example within its class, in the seeded order: keep ranks < per_class.
    keep = order[_rank_in_class(data.labels[order], counts) < per_class]
    return data.subset(keep, name=f"{data.name}[{per_class}/class, seed {seed}]")


def class_subset(data: ImageData, classes, relabel: bool = True) -> ImageData:
    """The examples whose label is in ``classes`` (label ints or class names).

    With ``relabel=True`` the labels become ``0..len(classes)-1`` in the order given, so a head
    of ``len(classes)`` outputs fits; otherwise the original labels and class list are kept.
    """
    if isinstance(classes, (str, int)):
        classes = [classes]
    ids = []
    for c in classes:
        if isinstance(c, str):
            if c not in data.classes:
                from .models import unknown_name_error

                raise unknown_name_error("class", c, data.classes)
            ids.append(data.classes.index(c))
        else:
            whole_number(c, "class", minimum=None)
            if not 0 <= int(c) < data.num_classes:
                raise ValueError(f"{data.name}: class {c} out of range 0..{data.num_classes - 1}.")
            ids.append(int(c))
    if len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"classes must be a non-empty list without repeats, got {list(classes)}.")
    wanted = torch.tensor(ids, device=data.images.device)
    mask = (data.labels[:, None] == wanted[None, :]).any(1)
    out = data.subset(mask.nonzero().squeeze(1), name=f"{data.name}[classes {ids}]")
    if relabel:
        lookup = torch.full((data.num_classes,), -1, dtype=torch.long, device=data.images.device)
        lookup[wanted] = torch.arange(len(ids), device=data.images.device)
        out = ImageData._trusted(out.images, lookup[out.labels], tuple(data.classes[i] for i in ids), out.name, out.columns)
    return out


def random_split(data: ImageData, sizes, seed: int = 0) -> list:
    """Split into disjoint random parts of the given sizes: all whole counts, or all fractions summing to 1.

    Counts may sum to less than ``len(data)`` (the rest is left out). Same seed, same parts, on every device.
    """
    n, seed = len(data), seed_value(seed)
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes must name at least one part, e.g. [1000, 59000] or [0.9, 0.1].")
    fractions = [isinstance(s, float) for s in sizes]
    if any(fractions) and not all(fractions):
        raise TypeError(
            f"sizes mixes fractions and counts: {sizes}; give all counts (e.g. [1000, {n - 1000}]) or all fractions summing to 1."
        )
    if all(fractions):
        if any(not 0 <= s <= 1 for s in sizes) or abs(sum(sizes) - 1.0) > 1e-6:
            raise ValueError(f"fractions must lie in [0, 1] and sum to 1, got {sizes} (sum {sum(sizes)}).")
        counts = [int(round(s * n)) for s in sizes]
        counts[-1] = n - sum(counts[:-1])
    else:
        counts = [whole_number(s, "sizes[i]", minimum=0) for s in sizes]
        if sum(counts) > n:
            raise ValueError(f"{data.name} has {n} examples; cannot split into parts of sizes {counts} (sum {sum(counts)}).")
    order = _permutation(n, seed, data.images.device)
    parts, start = [], 0
    for i, c in enumerate(counts):
        parts.append(data.subset(order[start : start + c], name=f"{data.name}[part {i}]"))
        start += c
    return parts


def random_subset(data: ImageData, size: int, seed: int = 0) -> ImageData:
    """``size`` examples drawn at random without replacement (the first part of :func:`random_split`)."""
    size = whole_number(size, "size", minimum=0, maximum=len(data))
    return _renamed(random_split(data, [size], seed=seed)[0], f"{data.name}[{size} random, seed {seed}]")


def _renamed(data: ImageData, name: str) -> ImageData:
    return ImageData._trusted(data.images, data._labels, data.classes, name, data.columns)


def validation_split(data: ImageData, size, seed: int = 0, by: str = "example") -> tuple:
    """Carve a validation set out of a training pool: ``(train, validation)``, disjoint, seeded.

    The book's rule: hyperparameters, temperatures, checkpoints and soups are chosen on the
    validation part; the test split is read once, at the end. Test splits are separate files or
    fixed splits, so the validation part is disjoint from them too.

    Args:
        data: the training pool (e.g. ``tl.load_dataset("kmnist", "train")``).
        size: examples (``by='example'``) or classes (``by='class'``) to hold out; an int, or a
            fraction in ``(0, 1)`` of the pool.
        seed: which examples or classes; the same seed gives the same split on every device.
        by: ``'example'``: a class-stratified random sample (each class in proportion, so rare
            classes are not left out); ``'class'``: whole classes held out (for few-shot learning,
            where validation tasks must use classes never trained on), both parts relabelled ``0..K'-1``.
    """
    seed = seed_value(seed)
    if by not in ("example", "class"):
        from .models import unknown_name_error

        raise unknown_name_error("validation split kind (by)", by, ["example", "class"])
    total = len(data) if by == "example" else data.num_classes
    if isinstance(size, float):
        if not 0 < size < 1:
            raise ValueError(f"size as a fraction must lie in (0, 1), got {size}.")
        size = max(1, int(round(size * total)))
    size = whole_number(size, "size", minimum=1, maximum=total - 1)
    if by == "class":
        chosen = _permutation(total, seed, "cpu")
        held_out, kept = sorted(chosen[:size].tolist()), sorted(chosen[size:].tolist())
        train, val = class_subset(data, kept), class_subset(data, held_out)
        return _renamed(train, f"{data.name} (train, {size} classes held out)"), _renamed(val, f"{data.name} (validation classes)")
    order = _permutation(len(data), seed, data.images.device)
    if data.has_labels:
        # Stratified: class k gives its proportional share, rounded by largest remainder to sum to size.
        counts = data.class_counts()
        share = counts.double() * size / len(data)
        take = share.floor().long()
        extra = size - int(take.sum())
        take[torch.argsort(share - take, descending=True, stable=True)[:extra]] += 1
        in_val = _rank_in_class(data.labels[order], counts) < take[data.labels[order]]
    else:
        in_val = torch.arange(len(data), device=order.device) < size
    val = order[in_val].sort().values
    train = order[~in_val].sort().values
    return (data.subset(train, name=f"{data.name} (train, {size} held out)"),
            data.subset(val, name=f"{data.name} (validation, {size})"))


def _rank_in_class(labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Rank of each example among the examples of its class, in the given order: ``(N,)`` int64."""
    sort = torch.sort(labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(len(labels), device=labels.device) - starts[sort.values]
    rank = torch.empty_like(rank_sorted)
    rank[sort.indices] = rank_sorted
    return rank


def batches(n: int, batch_size: int, generator: torch.Generator | None = None, device="cpu", shuffle: bool = True):
    """Yield index tensors ``(B,)`` covering ``range(n)`` once, as slices of one permutation.

    The permutation is made on ``device`` in one call, so an epoch costs no per-batch host work.
    The last batch may be smaller.
    """
    n, batch_size = whole_number(n, "n", minimum=0), whole_number(batch_size, "batch_size")
    if shuffle:
        order = torch.randperm(n, device=device, generator=generator)
    else:
        order = torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
