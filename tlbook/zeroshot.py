"""Reference implementations for zero-shot classes: recognising classes with no training images
from a description of each class (Chapter 7). Rows are examples and classes, as elsewhere in the book.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import positive_number
from .transferability import _labels, _matrix


# ----------------------------------------------------------------------------- zero-shot
def eszsl(features, class_attributes, labels, gamma: float = 1.0, lam: float = 1.0) -> torch.Tensor:
    """ESZSL of Romera-Paredes & Torr, "An embarrassingly simple approach to zero-shot learning" (ICML 2015).

    The paper writes instances as columns: ``X`` ``(d, m)``, ``Y`` ``(m, z)`` in ``{-1, 1}``, signatures
    ``S`` ``(a, z)``, and solves ``min_V ||X^T V S - Y||^2 + g ||V S||^2 + l ||X^T V||^2 + g l ||V||^2``
    in closed form, ``V = (X X^T + g I)^-1 X Y S^T (S S^T + l I)^-1``. Here rows are instances and
    classes, as elsewhere in the book: ``F = X^T`` ``(N, D)``, ``S`` ``(K, A)`` (the paper's ``S^T``), so

    ``V = (F^T F + gamma I_D)^-1 F^T Y S (S^T S + lam I_A)^-1``,  ``Y_ik = 1 if labels_i = k else -1``.

    A new class with attributes ``s`` gets the score ``f^T V s`` (:func:`eszsl_scores`).

    Args: features ``(N, D)`` of seen-class images; class_attributes ``(K, A)``, row ``k`` describing
    seen class ``k``; labels ``(N,)`` in ``[0, K)``; gamma, lam ``> 0``. Returns ``V`` ``(D, A)`` float64.
    """
    features = _matrix(features, "features")
    attributes = _matrix(class_attributes, "class_attributes", "(K, A): one row of attributes per class").to(features.device)
    labels = _labels(labels, "labels", features.shape[0], features.device, num_classes=attributes.shape[0])
    gamma, lam = positive_number(gamma, "gamma"), positive_number(lam, "lam")
    y = 2 * F.one_hot(labels, attributes.shape[0]).double() - 1
    d, a = features.shape[1], attributes.shape[1]
    left = torch.linalg.solve(features.T @ features + gamma * torch.eye(d, dtype=torch.float64, device=features.device),
                              features.T @ y @ attributes)
    right = attributes.T @ attributes + lam * torch.eye(a, dtype=torch.float64, device=features.device)
    return torch.linalg.solve(right, left.T).T  # right is symmetric: left @ right^-1


def eszsl_scores(features, V, class_attributes) -> torch.Tensor:
    """Compatibility scores ``F V S^T``: ``(N, K')`` float64 for features ``(N, D)``, ``V`` ``(D, A)`` from
    :func:`eszsl` and the attributes ``(K', A)`` of the candidate (e.g. unseen) classes; predict the argmax."""
    features = _matrix(features, "features")
    V = _matrix(V, "V", "(D, A)").to(features.device)
    attributes = _matrix(class_attributes, "class_attributes", "(K, A)").to(features.device)
    if V.shape[0] != features.shape[1] or V.shape[1] != attributes.shape[1]:
        raise ValueError(f"V must be (D, A) with D = features.shape[1] and A = class_attributes.shape[1], got "
                         f"features {tuple(features.shape)}, V {tuple(V.shape)}, class_attributes {tuple(attributes.shape)}.")
    return features @ V @ attributes.T
