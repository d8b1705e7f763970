"""Derived domains: the same images and labels under a different input distribution.

Each function takes an :class:`~tlbook.data.ImageData` and returns a new one (the original is not
changed) with the same labels, classes and columns. :func:`tlbook.load_dataset` builds the named
domains ``'mnist-inverted'``, ``'mnist-rotated'`` and ``'mnist-m'`` from MNIST with them.
"""
from __future__ import annotations

import torch

from .checks import real_number, seed_value
from .data import ImageData

# scikit-image's bundled colour photographs (they ship inside the package, so no download).
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _checked_data(data, function: str) -> ImageData:
    if not isinstance(data, ImageData):
        raise TypeError(
            f"{function}: data must be a tlbook ImageData (e.g. from tl.load_dataset), got {type(data).__name__}; "
            "wrap a tensor of images as tl.ImageData(images, labels, classes)."
        )
    return data


def invert(data: ImageData) -> ImageData:
    """``1 - x``: white digits on black become black on white. Images ``(N, C, H, W)`` in ``[0, 1]``."""
    data = _checked_data(data, "invert")
    return data.replace(images=1 - data.images, name=f"{data.name} inverted")


def rotate(data: ImageData, degrees: float) -> ImageData:
    """Rotate every image by ``degrees`` counter-clockwise about its centre.

    Bilinear interpolation; corners that come from outside the image are filled with 0
    (background). One batched call on ``(N, C, H, W)``; values stay in ``[0, 1]``.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    data = _checked_data(data, "rotate")
    degrees = real_number(degrees, "degrees")
    images = TF.rotate(data.images, degrees, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    return data.replace(images=images.clamp(0, 1), name=f"{data.name} rotated {degrees:g}deg")


def _photos() -> list:
    """scikit-image's bundled colour photos as ``(3, H, W)`` float tensors in ``[0, 1]`` (all H, W >= 300)."""
    import skimage.data

    return [torch.from_numpy(getattr(skimage.data, p)()).permute(2, 0, 1).float() / 255 for p in _PHOTOS]


def blend_with_photos(data: ImageData, seed: int = 0) -> ImageData:
    """MNIST-M-style colour images: ``|patch - digit|`` with a random patch of a colour photograph.

    Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015, blend each
    MNIST digit with a random patch of a BSDS500 photo this way; here the patches come from the
    four colour photos bundled with scikit-image (astronaut, chelsea, coffee, rocket), so the
    backgrounds are less varied than in the original MNIST-M.

    Args:
        data: images ``(N, 1, H, W)`` (or ``(N, 3, H, W)``) in ``[0, 1]``, ``H, W <= 300``.
        seed: picks the photo and the patch position of every image.

    Returns:
        :class:`ImageData` with images ``(N, 3, H, W)`` in ``[0, 1]``, the same labels.
    """
    data = _checked_data(data, "blend_with_photos")
    seed = seed_value(seed)
    n, c, h, w = data.images.shape
    if c not in (1, 3):
        raise ValueError(f"blend_with_photos: data must have 1 or 3 channels, got images of shape {tuple(data.images.shape)}.")
    photos = _photos()
    if h > min(p.shape[1] for p in photos) or w > min(p.shape[2] for p in photos):
        raise ValueError(f"blend_with_photos: data needs images of at most 300x300 pixels, got {h}x{w}.")
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (n,), generator=gen)
    corner = torch.rand(n, 2, generator=gen)  # top-left corner, as a fraction of the free range
    dev = data.images.device
    out = torch.empty(n, 3, h, w, device=dev)
    for k, photo in enumerate(photos):  # a loop over the photos; the images of each go in one batch
        idx = (which == k).nonzero().squeeze(1)
        top = (corner[idx, 0] * (photo.shape[1] - h + 1)).long()
        left = (corner[idx, 1] * (photo.shape[2] - w + 1)).long()
        rows = (top[:, None] + torch.arange(h))[:, :, None]  # (m, h, 1)
        cols = (left[:, None] + torch.arange(w))[:, None, :]  # (m, 1, w)
        patches = photo[:, rows, cols].permute(1, 0, 2, 3).to(dev)  # (m, 3, h, w)
        idx = idx.to(dev)
        out[idx] = (patches - data.images[idx]).abs()
    return data.replace(images=out, name=f"{data.name} blended with photos (seed {seed})")
