"""Reference implementations for zero-shot classes: recognising classes with no training images
from a description of each class (Chapter 7). Rows are examples and classes, as elsewhere in the book.

Three ways to use the description ``s_k`` (a row of attributes) of a class ``k`` never trained on:
:func:`dap_scores` (predict each attribute, then the class whose description is most probable),
:func:`eszsl` / :func:`eszsl_scores` (a bilinear compatibility ``f^T V s`` in closed form) and
:func:`conse_scores` (embed an image as the seen-class softmax's mix of seen descriptions). Every
``*_scores`` returns ``(N, K')`` for the ``K'`` candidate classes given; predict the argmax, and in the
generalised setting (seen and unseen candidates together) read :func:`generalised_accuracy`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import labels_argument, matrix_argument, positive_number, tensor_argument, whole_number


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
    features = matrix_argument(features, "features")
    attributes = matrix_argument(class_attributes, "class_attributes", "(K, A): one row of attributes per class").to(features.device)
    labels = labels_argument(labels, "labels", features.shape[0], features.device, num_classes=attributes.shape[0])
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
    features = matrix_argument(features, "features")
    V = matrix_argument(V, "V", "(D, A)").to(features.device)
    attributes = matrix_argument(class_attributes, "class_attributes", "(K, A)").to(features.device)
    if V.shape[0] != features.shape[1] or V.shape[1] != attributes.shape[1]:
        raise ValueError(f"V must be (D, A) with D = features.shape[1] and A = class_attributes.shape[1], got "
                         f"features {tuple(features.shape)}, V {tuple(V.shape)}, class_attributes {tuple(attributes.shape)}.")
    return features @ V @ attributes.T


# ----------------------------------------------------------------------------- DAP
def dap_scores(attribute_probs, class_attributes, attribute_prior=None, eps: float = 1e-3) -> torch.Tensor:
    """Direct attribute prediction (DAP) of Lampert, Nickisch & Harmeling, "Learning to detect unseen
    object classes by between-class attribute transfer" (CVPR 2009), eq. (2)-(3).

    Per-attribute classifiers give ``p_m = p(a_m = 1 | x)``; a class ``z`` is a binary description
    ``a^z``; with equal class priors and the attribute prior factorised, ``p(a) = prod_m pi_m^a_m (1 - pi_m)^(1 - a_m)``,

    ``p(z | x) ∝ prod_m p(a_m = a^z_m | x) / p(a_m = a^z_m)``, and the score returned is its log,

    ``sum_m [a^z_m log p_m + (1 - a^z_m) log(1 - p_m)] - sum_m [a^z_m log pi_m + (1 - a^z_m) log(1 - pi_m)]``.

    Args: attribute_probs ``(N, A)`` in ``[0, 1]``; class_attributes ``(K, A)`` in ``{0, 1}``, one row per
    candidate class; attribute_prior ``(A,)`` in ``[0, 1]`` (Lampert et al.: the mean of the training
    classes' attributes; default 0.5, i.e. no prior term); eps in ``(0, 0.5)``: probabilities and priors
    are clipped to ``[eps, 1 - eps]`` so that a classifier's 0 or 1 cannot veto a class on its own.
    Returns ``(N, K)`` float64 log-scores (not normalised over classes); predict the argmax.
    """
    probs = matrix_argument(attribute_probs, "attribute_probs", "(N, A): p(attribute m = 1 | image n)")
    attributes = matrix_argument(class_attributes, "class_attributes", "(K, A): one row of 0/1 attributes per class").to(probs.device)
    a = probs.shape[1]
    if attributes.shape[1] != a:
        raise ValueError(f"class_attributes must have one column per attribute (A = attribute_probs.shape[1] = {a}), "
                         f"got shape {tuple(attributes.shape)}.")
    if bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError("attribute_probs must be probabilities in [0, 1]; for logits pass torch.sigmoid(logits).")
    if not bool(((attributes == 0) | (attributes == 1)).all()):
        raise ValueError("class_attributes must be 0 or 1 for DAP (binary attributes); threshold or binarise them first.")
    eps = positive_number(eps, "eps")
    if eps >= 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}.")
    if attribute_prior is None:
        prior = torch.full((a,), 0.5, dtype=torch.float64, device=probs.device)
    else:
        prior = tensor_argument(attribute_prior, "attribute_prior").to(device=probs.device, dtype=torch.float64)
        if tuple(prior.shape) != (a,) or not bool(((prior >= 0) & (prior <= 1)).all()):
            raise ValueError(f"attribute_prior must be ({a},) probabilities in [0, 1], got shape {tuple(prior.shape)}.")
    p, pi = probs.clamp(eps, 1 - eps), prior.clamp(eps, 1 - eps)
    log_on, log_off = (p.log() - pi.log()), ((1 - p).log() - (1 - pi).log())  # (N, A) each
    return log_on @ attributes.T + log_off @ (1 - attributes).T


# ----------------------------------------------------------------------------- ConSE
def conse_embedding(seen_probs, seen_embeddings, top: int) -> torch.Tensor:
    """ConSE's image embedding, Norouzi et al., "Zero-shot learning by convex combination of semantic
    embeddings" (ICLR 2014), eq. (1): the seen classes' embeddings weighted by the ``top`` largest
    seen-class probabilities, ``f(x) = sum_{t <= T} p(y_t | x) s(y_t) / sum_{t <= T} p(y_t | x)``.

    Args: seen_probs ``(N, K)`` softmax of the seen-class classifier; seen_embeddings ``(K, A)``;
    top ``T`` in ``[1, K]``. Returns ``(N, A)`` float64.
    """
    probs = matrix_argument(seen_probs, "seen_probs", "(N, K): the seen-class softmax")
    embeddings = matrix_argument(seen_embeddings, "seen_embeddings", "(K, A): one row per seen class").to(probs.device)
    if embeddings.shape[0] != probs.shape[1]:
        raise ValueError(f"seen_embeddings must have one row per seen class (K = seen_probs.shape[1] = {probs.shape[1]}), "
                         f"got shape {tuple(embeddings.shape)}.")
    if bool((probs < 0).any()) or bool(((probs.sum(1) - 1).abs() > 1e-4).any()):
        raise ValueError("seen_probs must be probabilities (rows >= 0 summing to 1); for logits pass logits.softmax(1).")
    top = whole_number(top, "top", minimum=1, maximum=probs.shape[1])
    weights, classes = probs.topk(top, dim=1)                       # (N, T) each
    weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-300)
    return torch.einsum("nt,nta->na", weights, embeddings[classes])


def conse_scores(seen_probs, seen_embeddings, class_embeddings, top: int) -> torch.Tensor:
    """ConSE's scores: the cosine between :func:`conse_embedding` ``(N, A)`` and each candidate class's
    embedding ``(K', A)`` (unseen classes, or seen and unseen in the generalised setting). Returns
    ``(N, K')`` float64 in ``[-1, 1]``; predict the argmax."""
    embedded = conse_embedding(seen_probs, seen_embeddings, top)
    candidates = matrix_argument(class_embeddings, "class_embeddings", "(K', A)").to(embedded.device)
    if candidates.shape[1] != embedded.shape[1]:
        raise ValueError(f"class_embeddings must have A = {embedded.shape[1]} columns like seen_embeddings, "
                         f"got shape {tuple(candidates.shape)}.")
    return F.normalize(embedded, dim=1) @ F.normalize(candidates, dim=1).T


# ----------------------------------------------------------------------------- the generalised setting
def generalised_accuracy(predicted, labels, unseen) -> dict:
    """Accuracy in generalised zero-shot learning (seen and unseen classes compete), as Xian et al.,
    "Zero-shot learning: a comprehensive evaluation of the good, the bad and the ugly" (TPAMI 2019):
    per-class accuracy averaged over the seen classes (``seen``) and over the unseen ones
    (``unseen``), and their harmonic mean ``H = 2 s u / (s + u)`` (0 when both are 0).

    Args: predicted, labels ``(N,)`` class ids; unseen: the unseen class ids (the other classes
    present in ``labels`` are the seen ones). Returns ``{'seen', 'unseen', 'harmonic'}`` floats.
    """
    labels = tensor_argument(labels, "labels")
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be (N,) class ids with N >= 1, got shape {tuple(labels.shape)}.")
    predicted = labels_argument(predicted, "predicted", labels.shape[0], labels.device)
    labels = labels_argument(labels, "labels", labels.shape[0], labels.device)
    unseen = sorted({int(k) for k in tensor_argument(unseen, "unseen").reshape(-1).tolist()})
    present = sorted(set(labels.tolist()))
    missing = [k for k in unseen if k not in present]
    if not unseen or missing:
        raise ValueError(f"unseen must name classes present in labels, got {unseen} (absent: {missing}).")
    seen = [k for k in present if k not in unseen]
    if not seen:
        raise ValueError("labels must contain seen classes too (classes not in unseen) for the generalised setting.")

    def mean_per_class(classes):
        return sum(float((predicted[labels == k] == k).double().mean()) for k in classes) / len(classes)

    s, u = mean_per_class(seen), mean_per_class(unseen)
    return {"seen": s, "unseen": u, "harmonic": 0.0 if s + u == 0 else 2 * s * u / (s + u)}
