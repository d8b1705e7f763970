"""Reference implementations for choosing a source before training (Chapter 7).

Transferability scores computed from one forward pass of a source model over the target data
(:func:`leep`, :func:`nce`, :func:`logme`, :func:`h_score`; higher means "expect better transfer").
Inputs may be NumPy arrays or tensors; the scores compute in float64 on the input's device and
return Python floats, since they run once per source-target pair, never inside a training step.
Zero-shot references are in :mod:`tlbook.zeroshot`, not forgetting in :mod:`tlbook.continual`.
"""
from __future__ import annotations

import math

import torch

from .checks import labels_argument, matrix_argument, positive_number, real_number, tensor_argument, whole_number


# ----------------------------------------------------------------------------- label-based scores
def leep(source_probs, labels) -> float:
    """LEEP of Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate Transferability of
    Learned Representations" (ICML 2020).

    With ``theta(x_i)`` the source model's softmax over its ``Z`` classes, the empirical joint of target
    label ``y`` and source "dummy" label ``z`` is ``P(y, z) = (1/N) sum_{i: y_i = y} theta(x_i)_z``,
    ``P(y | z) = P(y, z) / sum_y' P(y', z)``, and ``LEEP = (1/N) sum_i log sum_z P(y_i | z) theta(x_i)_z``
    (<= 0; higher is better). With one-hot ``theta`` (hard source labels) LEEP equals :func:`nce`.

    Args: source_probs ``(N, Z)``, rows summing to 1 (``softmax(logits)``, not logits); labels ``(N,)`` ``>= 0``.
    """
    probs = matrix_argument(source_probs, "source_probs", "(N, Z) probabilities")
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4):
        raise ValueError("source_probs must be probabilities, each row >= 0 and summing to 1; "
                         "pass softmax(logits, dim=1), not the logits.")
    labels = labels_argument(labels, "labels", probs.shape[0], probs.device)
    probs = probs / probs.sum(1, keepdim=True)  # float32 softmax rows are off by ~1e-7
    joint = torch.zeros(int(labels.max()) + 1, probs.shape[1], dtype=probs.dtype, device=probs.device)
    joint.index_add_(0, labels, probs / probs.shape[0])
    p_z = joint.sum(0, keepdim=True)
    # A source class no example gives any probability has P(z) = 0: its column never counts.
    conditional = torch.where(p_z > 0, joint / p_z.clamp_min(torch.finfo(p_z.dtype).tiny), torch.zeros_like(joint))
    expected = (probs * conditional[labels]).sum(1)
    return float(expected.log().mean())


def nce(source_labels, target_labels) -> float:
    """Negative conditional entropy of Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised
    Classification Tasks" (ICCV 2019): ``NCE = -H(Y | Z)`` (nats, <= 0; higher is better).

    From the empirical joint ``P(y, z) = #{i: y_i = y, z_i = z} / N`` of target labels ``y`` and the
    source model's hard labels ``z`` (its argmax on the target images),
    ``H(Y | Z) = -sum_{y, z} P(y, z) log(P(y, z) / P(z))``, with ``0 log 0 = 0``. It is 0 when ``z``
    determines ``y`` and ``-H(Y)`` when they are independent. ``Z`` and ``Y`` may differ in size.

    The reference code most copies derive from, ``NCE.py`` of the LogME repository (thuml/LogME),
    first built the joint with ``np.zeros(C_t, C_s, dtype=float)``: the shape not passed as a tuple,
    so NumPy takes ``C_s`` as the dtype and every call raises ``TypeError``; with the tuple fixed, that
    version still returns NaN whenever some ``(y, z)`` pair never occurs (``0 * log 0``) or some
    ``z < max(z)`` is unused (``0 / 0``), e.g. for a perfect mapping. Its later version (also in
    Transfer-Learning-Library's ``tllib.ranking.nce``) uses the tuple, drops unused ``z`` and adds
    ``1e-20`` inside the log. Here counts come from ``bincount`` and empty cells are skipped exactly.

    Args: source_labels ``(N,)`` source class ids ``z >= 0``; target_labels ``(N,)`` target class ids ``y >= 0``.
    """
    z = tensor_argument(source_labels, "source_labels")
    if z.ndim != 1 or z.shape[0] < 1:
        raise ValueError(f"source_labels must be 1-D (N,) hard labels (the source model's argmax), got shape {tuple(z.shape)}.")
    z = labels_argument(z, "source_labels", z.shape[0], z.device)
    y = labels_argument(target_labels, "target_labels", z.shape[0], z.device)
    num_z = int(z.max()) + 1
    counts = torch.bincount(y * num_z + z, minlength=(int(y.max()) + 1) * num_z).view(-1, num_z).double()
    joint = counts / z.shape[0]
    p_z = joint.sum(0, keepdim=True).expand_as(joint)
    occupied = joint > 0
    return float((joint[occupied] * (joint[occupied] / p_z[occupied]).log()).sum())


# ----------------------------------------------------------------------------- feature-based scores
def _evidence(sigma, x2, residual_outside, alpha, beta, n: int, d: int) -> torch.Tensor:
    """Log evidence from the SVD of F: ``sigma`` (r,) squared singular values, ``x2`` (r, K) = (U^T y)^2."""
    t = (alpha / beta)[None, :]
    s = sigma[:, None]
    m2 = (s * x2 / (s + t) ** 2).sum(0)  # m^T m, m = beta A^-1 F^T y
    res2 = (x2 * (t / (s + t)) ** 2).sum(0) + residual_outside  # ||F m - y||^2
    # log|A| over all D directions: the D - r with sigma = 0 contribute log(alpha) each.
    log_det = torch.log(alpha[None, :] + beta[None, :] * s).sum(0) + (d - sigma.shape[0]) * torch.log(alpha)
    return (d / 2 * torch.log(alpha) + n / 2 * torch.log(beta) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)


def _svd_targets(features: torch.Tensor, targets: torch.Tensor):
    u, s, _ = torch.linalg.svd(features, full_matrices=False)
    rank = int((s > s.max() * max(features.shape) * torch.finfo(s.dtype).eps).sum())
    if rank == 0:
        raise ValueError("features are all zero; LogME needs features that vary (check the source model's output).")
    x = u[:, :rank].T @ targets
    outside = (targets.pow(2).sum(0) - x.pow(2).sum(0)).clamp_min(0)
    return s[:rank] ** 2, x.pow(2), outside


def bayesian_evidence(features, targets, alpha, beta) -> torch.Tensor:
    """Log marginal likelihood ``log p(y | F, alpha, beta)`` of Bayesian linear regression (Bishop 2006, eq. 3.86).

    Prior ``w ~ N(0, alpha^-1 I_D)``, noise ``y | F, w ~ N(F w, beta^-1 I_N)``, so ``y ~ N(0, beta^-1 I + alpha^-1 F F^T)``:
    ``L = D/2 log a + N/2 log b - N/2 log 2pi - b/2 ||F m - y||^2 - a/2 m^T m - 1/2 log|A|``,
    ``A = a I + b F^T F``, ``m = b A^-1 F^T y``; computed from one SVD of ``F``, as :func:`logme` does.

    Args: features ``(N, D)``; targets ``(N,)`` or ``(N, K)``; alpha, beta ``> 0``, numbers or ``(K,)``.
    Returns: float64 ``()`` for 1-D targets, else ``(K,)``, one evidence per column (not divided by ``N``).
    """
    features = matrix_argument(features, "features")
    targets = tensor_argument(targets, "targets").to(device=features.device, dtype=torch.float64)
    one_column = targets.ndim == 1
    targets = targets[:, None] if one_column else targets
    if targets.ndim != 2 or targets.shape[0] != features.shape[0]:
        raise ValueError(f"targets must be (N,) or (N, K) with N = {features.shape[0]}, got shape {tuple(targets.shape)}.")
    params = []
    for value, name in ((alpha, "alpha"), (beta, "beta")):
        value = torch.as_tensor(value, dtype=torch.float64, device=features.device).expand(targets.shape[1])
        if not bool((value > 0).all() & torch.isfinite(value).all()):
            raise ValueError(f"{name} must be > 0 and finite (a precision), got {value.tolist()}.")
        params.append(value)
    evidence = _evidence(*_svd_targets(features, targets), *params, *features.shape)
    return evidence[0] if one_column else evidence


def logme(features, labels, return_params: bool = False, tol: float = 1e-10, max_iter: int = 1000):
    """LogME of You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning" (ICML 2021).

    For each target class ``k`` the indicator ``y = [labels == k]`` is regressed on the features by
    Bayesian linear regression and the log evidence :func:`bayesian_evidence` is maximised over
    ``alpha, beta`` by the paper's fixed point (Algorithm 1; MacKay 1992), from ``alpha = beta = 1``:
    ``gamma = sum_i b s_i / (a + b s_i)``, ``a <- gamma / m^T m``, ``b <- (N - gamma) / ||F m - y||^2``
    (``s_i`` the eigenvalues of ``F^T F``), until ``a / b`` changes by less than ``tol`` (relative).
    ``LogME = mean_k L_k(a_k, b_k) / N`` over the classes present in ``labels``; higher is better.

    ``log|A|`` runs over all ``D`` directions, so all-zero feature columns (dead ReLUs) and the feature
    scale leave the score unchanged. The LogME repository's default ``_fit_fixed_point`` sums
    ``log(a + b s_i)`` over the ``k`` singular values it keeps (``min(N, D)``, or the rank if ``N > D``) but
    keeps ``D/2 log a``, adding ``(D - k) log(a) / (2N)`` per class when ``N < D`` or features are dead or
    collinear; it adds ``1e-5`` to both denominators and stops at a relative change of ``1e-3`` (11 steps at
    most). Features with no signal for a class drive ``a -> inf`` (weights -> 0); the loop stops once ``L`` is flat.

    Args: features ``(N, D)`` (the source model's features of the target images, ``N >= 2``); labels
    ``(N,)`` target class ids; ``return_params``: return ``(score, alpha, beta)``, with float64 ``(K,)``
    tensors for the classes present, instead of the score (a float).
    """
    features = matrix_argument(features, "features", min_rows=2)
    labels = labels_argument(labels, "labels", features.shape[0], features.device)
    tol, max_iter = positive_number(tol, "tol"), whole_number(max_iter, "max_iter")
    n, d = features.shape
    targets = (labels[:, None] == torch.unique(labels)[None, :]).double()
    sigma, x2, outside = _svd_targets(features, targets)
    alpha = beta = torch.ones(targets.shape[1], dtype=torch.float64, device=features.device)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(max_iter):
        t = alpha / beta
        s = sigma[:, None]
        gamma = (s / (s + t)).sum(0)
        m2 = (s * x2 / (s + t) ** 2).sum(0)
        res2 = (x2 * (t / (s + t)) ** 2).sum(0) + outside
        alpha, beta = gamma / m2.clamp_min(tiny), (n - gamma) / res2.clamp_min(tiny)
        t_new = alpha / beta
        # At t > 1e15 max(s) (no signal: weights -> 0) or t < 1e-15 min(s) (an exact fit) L no longer changes.
        settled = ((t_new - t).abs() <= tol * t) | (t_new > 1e15 * sigma.max()) | (t_new < 1e-15 * sigma.min())
        if bool(settled.all()):
            break
    score = float(_evidence(sigma, x2, outside, alpha, beta, n, d).mean() / n)
    return (score, alpha, beta) if return_params else score


def h_score(features, labels, shrinkage: float = 0.0) -> float:
    """H-score of Bao, Li, Huang, Zhang, Zheng, Hu & Tao, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning" (ICIP 2019).

    ``H = tr(cov(f)^+ cov(E[f | y]))``: the between-class part of the feature covariance, measured in
    units of the total covariance (a multivariate Fisher ratio; without shrinkage in ``[0, min(D, K - 1)]``).
    Higher is better. Covariances divide by ``N`` (it cancels); ``^+`` is the pseudo-inverse, so redundant or
    constant features do not blow it up. With ``N`` not much larger than ``D`` the small eigenvalues of
    ``cov(f)`` are noise and inflate ``H``; ``shrinkage = s`` in ``[0, 1]`` uses
    ``(1 - s) cov(f) + s (tr cov(f) / D) I``, the target of the shrinkage H-score of Ibrahim, Ponomareva &
    Mazumder, "Newer is not always better: Rethinking transferability metrics, their peculiarities,
    stability and performance" (arXiv:2110.06893), who pick ``s`` by Ledoit-Wolf.

    Args: features ``(N, D)``, ``N >= 2``; labels ``(N,)`` target class ids.
    """
    features = matrix_argument(features, "features", min_rows=2)
    labels = labels_argument(labels, "labels", features.shape[0], features.device)
    shrinkage = real_number(shrinkage, "shrinkage")
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1] (0: plain covariance), got {shrinkage}.")
    n, d = features.shape
    centred = features - features.mean(0)
    cov_f = centred.T @ centred / n
    cov_f = (1 - shrinkage) * cov_f + shrinkage * cov_f.diagonal().mean() * torch.eye(d, dtype=cov_f.dtype, device=cov_f.device)
    classes, index = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), d, dtype=features.dtype, device=features.device).index_add_(0, index, centred)
    class_means = sums / torch.bincount(index, minlength=len(classes))[:, None]
    g = class_means[index]  # E[f | y_i], centred (the class means average to the overall mean)
    cov_g = g.T @ g / n
    return float(torch.trace(torch.linalg.pinv(cov_f, hermitian=True) @ cov_g))
