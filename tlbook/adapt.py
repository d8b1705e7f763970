"""Reference implementations of domain adaptation: its losses, schedules, validation criteria and AdaBN.

A chapter writes each method in a few lines and compares it with the function here using
``torch.testing.assert_close``; the tests compare these functions with independent computations
(double sums, ``numpy.cov``, loops over the definitions).

The losses (:func:`mmd`, :func:`coral`, :func:`entropy`, :func:`information_maximization`,
:func:`snd`) run inside training steps, so they check shapes and settings but never read a value
back to the host: a NaN in the input gives a NaN loss rather than an error. They compute in float32
(float64 inputs stay float64) with autocast switched off, because under bf16/fp16 autocast the
matrix products behind distances and covariances would otherwise run in half precision.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .checks import full_precision, non_negative_number, positive_number, real_number, whole_number


# ----------------------------------------------------------------------------- gradient reversal
class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        lam = ctx.lam.to(grad.dtype) if isinstance(ctx.lam, torch.Tensor) else ctx.lam
        return -lam * grad, None


def grad_reverse(x: torch.Tensor, lam=1.0) -> torch.Tensor:
    """Gradient reversal layer of Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation"
    (2015) and Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016).

    Forward: ``R(x) = x``. Backward: ``dR/dx = -lam * I``, so the feature extractor below it is pushed
    to *increase* the domain discriminator's loss while the discriminator above it decreases it.

    Args:
        x: any shape; returned unchanged (a view).
        lam: ``lambda >= 0``, a number or a 0-dim tensor (e.g. from :func:`dann_lambda`).
    """
    if isinstance(lam, torch.Tensor):
        if lam.ndim != 0 or not lam.is_floating_point():
            raise ValueError(f"lam must be a number or a 0-dim floating tensor, got a tensor of shape "
                             f"{tuple(lam.shape)} and dtype {lam.dtype}.")
        lam = lam.detach()
    else:
        lam = non_negative_number(lam, "lam")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}.")
    return _GradReverse.apply(x, lam)


def _progress(progress) -> float:
    progress = real_number(progress, "progress")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1] (step / total_steps), got {progress!r}.")
    return progress


def dann_lambda(progress, gamma: float = 10.0) -> float:
    """DANN's schedule for the reversal weight (Ganin et al. 2016): ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``.

    Starts at 0, so the discriminator's noisy early gradients do not disturb the features, and rises
    to about 1. ``progress`` ``p`` in ``[0, 1]`` is the fraction of training done; ``gamma > 0``.
    """
    p, gamma = _progress(progress), positive_number(gamma, "gamma")
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr(progress, lr0: float = 0.01, alpha: float = 10.0, beta: float = 0.75) -> float:
    """DANN's learning-rate annealing (Ganin et al. 2016): ``lr_p = lr0 / (1 + alpha p) ** beta``, ``p`` in ``[0, 1]``."""
    p = _progress(progress)
    lr0 = positive_number(lr0, "lr0")
    alpha, beta = non_negative_number(alpha, "alpha"), non_negative_number(beta, "beta")
    return lr0 / (1.0 + alpha * p) ** beta


def adda_losses(source_scores: torch.Tensor, target_scores: torch.Tensor, target_scores_for_encoder=None):
    """The two losses of ADDA: Tzeng, Hoffman, Saenko & Darrell, "Adversarial Discriminative Domain
    Adaptation" (CVPR 2017), eq. 9 (discriminator) and the inverted-label GAN loss (target encoder).

    ``L_D = -mean log sigma(D(M_s(x_s))) - mean log(1 - sigma(D(M_t(x_t))))`` (source labelled 1, target 0);
    ``L_M = -mean log sigma(D(M_t(x_t)))``: the target encoder is trained as if its features were source.
    Both with ``binary_cross_entropy_with_logits`` in float32 (safe under autocast; no sigmoid + BCE).

    Args:
        source_scores: ``(B_s,)`` discriminator logits of source features (from the fixed source encoder).
        target_scores: ``(B_t,)`` discriminator logits of target features, for ``L_D`` (detach the
            features so ``L_D`` does not move the target encoder).
        target_scores_for_encoder: ``(B_t,)`` logits for ``L_M``, computed with the discriminator's
            weights held fixed; default ``target_scores``.

    Returns:
        ``(discriminator_loss, encoder_loss)``, two scalars.
    """
    scores = {"source_scores": source_scores, "target_scores": target_scores}
    if target_scores_for_encoder is not None:
        scores["target_scores_for_encoder"] = target_scores_for_encoder
    for name, x in scores.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a tensor (B,) of discriminator logits, got {type(x).__name__}.")
        if x.ndim != 1 or x.shape[0] < 1 or not x.is_floating_point():
            raise ValueError(f"{name} must be a non-empty 1-D floating tensor (B,) of logits (squeeze the "
                             f"discriminator's (B, 1) output), got shape {tuple(x.shape)} and dtype {x.dtype}.")
    s, t = full_precision(source_scores), full_precision(target_scores)
    t_enc = t if target_scores_for_encoder is None else full_precision(target_scores_for_encoder)
    with _no_autocast(s):
        discriminator = (F.binary_cross_entropy_with_logits(s, torch.ones_like(s))
                         + F.binary_cross_entropy_with_logits(t, torch.zeros_like(t)))
        encoder = F.binary_cross_entropy_with_logits(t_enc, torch.ones_like(t_enc))
    return discriminator, encoder


# ----------------------------------------------------------------------------- helpers
def _no_autocast(x: torch.Tensor):
    try:
        return torch.autocast(x.device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        return contextlib.nullcontext()


def _features(x, name: str, min_rows: int = 1) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (B, D), got {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B, D) features, got shape {tuple(x.shape)}; flatten it first.")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got shape {tuple(x.shape)}.")
    return x


def _same_width(source, target):
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"source and target must have the same feature dimension D, got shapes "
                         f"{tuple(source.shape)} and {tuple(target.shape)}.")
    if source.device != target.device:
        raise ValueError(f"source and target must be on the same device, got {source.device} and {target.device}.")


# ----------------------------------------------------------------------------- discrepancy losses
def mmd(source: torch.Tensor, target: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5, bandwidth=None) -> torch.Tensor:
    """Squared maximum mean discrepancy with a multi-kernel Gaussian, as in DAN: Long, Cao, Wang & Jordan,
    "Learning Transferable Features with Deep Adaptation Networks" (ICML 2015).

    ``MMD^2 = mean_ij k(s_i, s_j) + mean_ij k(t_i, t_j) - 2 mean_ij k(s_i, t_j)``, the biased
    V-statistic over all pairs (diagonal included, so it is >= 0), with the kernel

    ``k(x, y) = sum_{i=0}^{kernel_num-1} exp(-||x - y||^2 / (b * kernel_mul ** (i - kernel_num // 2)))``.

    The bandwidth family is centred on ``b``: by default the mean squared distance between distinct
    points of the pooled sample ``[source; target]``, treated as a constant (no gradient), as in the
    official DAN code and the ``guassian_kernel`` of jindongwang/transferlearning; ``bandwidth=`` fixes ``b``.
    (Transfer-Learning-Library's ``GaussianKernel`` differs in scale: ``exp(-d / (2 alpha mean(d)))``,
    the mean over all ``n^2`` entries, diagonal included.)

    Args:
        source: ``(B, D)`` features; target: ``(B', D)`` features (``B'`` may differ from ``B``).
        kernel_mul: ratio between neighbouring bandwidths, > 0. kernel_num: number of kernels, >= 1.
        bandwidth: ``b > 0``, or ``None`` for the data-dependent centre.

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs).
    """
    source, target = _features(source, "source"), _features(target, "target")
    _same_width(source, target)
    kernel_mul = positive_number(kernel_mul, "kernel_mul", " (the ratio between neighbouring bandwidths)")
    kernel_num = whole_number(kernel_num, "kernel_num", minimum=1)
    if bandwidth is not None:
        bandwidth = positive_number(bandwidth, "bandwidth", " (or None for the mean squared distance)")
    n_s, n = source.shape[0], source.shape[0] + target.shape[0]
    with _no_autocast(source):
        source, target = full_precision(source), full_precision(target)
        dtype = torch.promote_types(source.dtype, target.dtype)
        pooled = torch.cat([source.to(dtype), target.to(dtype)])
        sq_norms = pooled.pow(2).sum(1)
        # ||x||^2 + ||y||^2 - 2 x.y needs no (n, n, D) tensor; clamp the tiny negatives of cancellation.
        distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * pooled @ pooled.T).clamp_min(0)
        if bandwidth is None:
            centre = distances.detach().sum() / (n * n - n)
            # All points equal: every distance is 0 and any bandwidth gives the same (zero) MMD.
            centre = centre.clamp_min(torch.finfo(distances.dtype).tiny)
        else:
            centre = torch.tensor(bandwidth, dtype=distances.dtype, device=distances.device)
        kernels = sum(torch.exp(-distances / (centre * kernel_mul ** (i - kernel_num // 2))) for i in range(kernel_num))
        ss, tt, st = kernels[:n_s, :n_s], kernels[n_s:, n_s:], kernels[:n_s, n_s:]
        return ss.mean() + tt.mean() - 2 * st.mean()


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss of Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation" (2016).

    ``L = ||C_s - C_t||_F^2 / (4 d^2)`` with the unbiased covariances
    ``C = (X - mean(X))^T (X - mean(X)) / (n - 1)``.

    Args:
        source: ``(n_s, d)``, target: ``(n_t, d)`` features, at least 2 rows each.

    Returns:
        A scalar tensor.
    """
    source, target = _features(source, "source", min_rows=2), _features(target, "target", min_rows=2)
    _same_width(source, target)
    d = source.shape[1]
    with _no_autocast(source):
        def covariance(x):
            x = full_precision(x)
            centred = x - x.mean(0, keepdim=True)
            return centred.T @ centred / (x.shape[0] - 1)

        return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


# ----------------------------------------------------------------------------- prediction-based losses
def _logits(logits, min_rows: int = 1) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a tensor (B, K), got {type(logits).__name__}.")
    if logits.ndim != 2 or logits.shape[0] < min_rows or logits.shape[1] < 1:
        raise ValueError(f"logits must be (B, K) with B >= {min_rows} and K >= 1 (raw scores, not probabilities), "
                         f"got shape {tuple(logits.shape)}.")
    return full_precision(logits)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the predictions: ``mean_i H(softmax(z_i))``, ``H(p) = -sum_k p_k log p_k`` (nats).

    Minimised on unlabelled target data it pushes decision boundaries away from dense regions
    (Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization", 2004).

    Args:
        logits: ``(B, K)``, raw scores (log-probabilities are computed with ``log_softmax``).
    """
    logits = _logits(logits)
    with _no_autocast(logits):
        log_p = F.log_softmax(logits, dim=1)
        return -(log_p.exp() * log_p).sum(1).mean()


def information_maximization(logits: torch.Tensor) -> torch.Tensor:
    """Information-maximisation loss of Shi & Sha, "Information-Theoretical Learning of Discriminative
    Clusters for Unsupervised Domain Adaptation" (ICML 2012), as used by Liang, Hu & Feng, "Do We Really
    Need to Access the Source Data? Source Hypothesis Transfer for Unsupervised Domain Adaptation" (SHOT, 2020).

    ``L_IM = mean_i H(p_i) - H(mean_i p_i)``, ``p_i = softmax(z_i)``: a loss to *minimise*. It is minus
    the mutual information between inputs and predicted labels, so it lies in ``[-log K, 0]``: each
    prediction confident (first term small) and the classes used evenly (second term large).
    Unlike SHOT's code, ``log`` of the mean prediction is exact (``logsumexp``), without an epsilon.

    Args:
        logits: ``(B, K)``, raw scores.
    """
    logits = _logits(logits)
    with _no_autocast(logits):
        log_p = F.log_softmax(logits, dim=1)
        log_mean_p = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
        return -(log_p.exp() * log_p).sum(1).mean() + (log_mean_p.exp() * log_mean_p).sum()


def snd(logits: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Soft neighbourhood density of Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right
    Way: Unsupervised Validation of Domain Adaptation via Soft Neighborhood Density" (ICCV 2021).

    ``p_i = softmax(z_i) / ||softmax(z_i)||``, ``S_ij = p_i . p_j`` for ``j != i``,
    ``P_ij = exp(S_ij / T) / sum_{k != i} exp(S_ik / T)``, ``SND = mean_i -sum_{j != i} P_ij log P_ij``.

    A validation score (higher is better: predictions that form dense neighbourhoods), computed on
    the target outputs of a candidate model. The diagonal is left out exactly; the official code
    fills it with ``-1 / T`` instead, which differs by terms of order ``exp(-1 / T)``.

    Args:
        logits: ``(N, K)`` target logits, ``N >= 2``.
        temperature: ``T > 0``.
    """
    logits = _logits(logits, min_rows=2)
    temperature = positive_number(temperature, "temperature")
    n = logits.shape[0]
    with _no_autocast(logits):
        probs = F.normalize(F.softmax(logits, dim=1), dim=1)
        similarity = probs @ probs.T / temperature
        # Drop the diagonal by reshaping (a boolean mask would sync the host to count the entries).
        off_diagonal = similarity.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
        log_p = F.log_softmax(off_diagonal, dim=1)
        return -(log_p.exp() * log_p).sum(1).mean()


# ----------------------------------------------------------------------------- validation criteria
def _vector(x, name: str) -> torch.Tensor:
    try:
        x = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or array of numbers (N,), got {type(x).__name__}.") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the model outputs it came from.")
    return full_precision(x)


def dev_risk(losses, weights) -> torch.Tensor:
    """Deep embedded validation of You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep
    Unsupervised Domain Adaptation" (ICML 2019).

    An importance-weighted estimate of the target risk from a *source validation* set, with a
    control variate that uses ``E[w] = 1`` to cut its variance::

        eta  = -Cov(w l, w) / Var(w)                (unbiased covariance and variance, as np.cov / ddof=1)
        risk = mean(w l) + eta * mean(w) - eta

    ``eta = 0`` when every weight is the same (``Var(w) = 0``). Lower is better.

    Args:
        losses: ``(N,)`` per-example losses ``l`` on the source validation set.
        weights: ``(N,)`` density ratios ``w = p_target(x) / p_source(x) >= 0``, e.g.
            ``(n_s / n_t) * d / (1 - d)`` from a source-vs-target discriminator's probability ``d``.
    """
    losses, weights = _vector(losses, "losses"), _vector(weights, "weights")
    if losses.shape != weights.shape or losses.shape[0] < 2:
        raise ValueError(f"losses and weights must be (N,) with the same N >= 2, got shapes "
                         f"{tuple(losses.shape)} and {tuple(weights.shape)}.")
    if bool((weights < 0).any()):
        raise ValueError("weights must be >= 0 (density ratios p_target / p_source).")
    dtype = torch.promote_types(losses.dtype, weights.dtype)
    losses, weights = losses.to(dtype), weights.to(dtype)
    weighted = weights * losses
    n = weights.shape[0]
    cov = ((weighted - weighted.mean()) * (weights - weights.mean())).sum() / (n - 1)
    # Compared exactly: for equal weights the computed variance can be a rounding error, not 0.
    constant = weights.max() == weights.min()
    var = torch.where(constant, torch.ones_like(cov), weights.var(unbiased=True))
    eta = torch.where(constant, torch.zeros_like(cov), -cov / var)
    return weighted.mean() + eta * weights.mean() - eta


def proxy_a_distance(domain_error):
    """Proxy A-distance of Ben-David, Blitzer, Crammer & Pereira, "Analysis of Representations for Domain
    Adaptation" (NIPS 2007; Ben-David et al., Machine Learning 2010): ``d_A = 2 (1 - 2 err)``.

    ``err`` is the test error of a classifier trained to tell source features from target features:
    0.5 (chance) gives 0, indistinguishable domains; 0 gives 2, fully separable domains.

    Args:
        domain_error: ``err`` in ``[0, 1]``, a number (returns a float) or a tensor (returns a tensor).
    """
    if isinstance(domain_error, torch.Tensor):
        if not bool(((domain_error >= 0) & (domain_error <= 1)).all()):
            raise ValueError("domain_error must be in [0, 1] (a classification error rate), got values outside it.")
        return 2 * (1 - 2 * full_precision(domain_error))
    err = real_number(domain_error, "domain_error")
    if not 0.0 <= err <= 1.0:
        raise ValueError(f"domain_error must be in [0, 1] (a classification error rate), got {err!r}.")
    return 2.0 * (1.0 - 2.0 * err)


# ----------------------------------------------------------------------------- AdaBN
def _images(data) -> torch.Tensor:
    images = data if isinstance(data, torch.Tensor) else getattr(data, "images", None)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"data must be an ImageData or a tensor of images (N, C, H, W), got {type(data).__name__}.")
    if images.ndim < 2 or images.shape[0] < 2:
        raise ValueError(f"data must hold at least 2 examples (N, ...) to estimate a variance, got shape {tuple(images.shape)}.")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError("data contains NaN or infinite values; BatchNorm statistics estimated on it would be NaN.")
    return images


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, data, batch_size: int = 512) -> nn.Module:
    """AdaBN of Li, Wang, Shi, Shi & Hou, "Revisiting Batch Normalization For Practical Domain Adaptation" (2016).

    Every BatchNorm layer's running mean and variance are reset and re-estimated on ``data``: the
    mean and the unbiased variance (what BatchNorm stores) of that layer's input over all of
    ``data``, from one pass in which BatchNorm normalises with batch statistics, as in training.
    This is :func:`torch.optim.swa_utils.update_bn` with the batches weighted by their size and
    their means' spread included (``update_bn`` averages per-batch statistics, so a short last batch
    counts as much as a full one), and with everything that is not BatchNorm (dropout) in eval mode.

    BatchNorm layers frozen by :func:`tlbook.freeze` (``_tlbook_frozen``) keep their statistics and
    stay in eval mode; layers without running statistics are left alone. The modes of all modules
    are restored afterwards. The same function re-estimates statistics after weight averaging.

    Args:
        model: any ``nn.Module``; changed in place and returned.
        data: an :class:`~tlbook.data.ImageData` (``data.images``; labels are not needed) or a tensor
            of inputs ``(N, ...)``, ``N >= 2``; moved batch by batch to the model's device and dtype.
        batch_size: at least 2; the data is cut into ``max(1, N // batch_size)`` near-equal batches,
            so none is smaller than ``batch_size`` (or ``N``) and none is tiny.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    batch_size = whole_number(batch_size, "batch_size", minimum=2)
    images = _images(data)
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats and not getattr(m, "_tlbook_frozen", False)]
    if not layers:
        return model
    reference = next(model.parameters(), layers[0].running_mean)
    dtype = reference.dtype if images.is_floating_point() else None
    modes = {m: m.training for m in model.modules()}
    stats = {m: [0, None, None] for m in layers}  # count, mean, sum of squared deviations (float64)

    def accumulate(module, args):
        x = full_precision(args[0].detach())
        dims = [d for d in range(x.ndim) if d != 1]
        count = x.numel() // x.shape[1]
        batch_mean = x.mean(dims)
        batch_m2 = (x - batch_mean.view(1, -1, *[1] * (x.ndim - 2))).pow(2).sum(dims)
        batch_mean, batch_m2 = batch_mean.double(), batch_m2.double()
        n_a, mean, m2 = stats[module]
        if mean is None:
            stats[module] = [count, batch_mean, batch_m2]
            return
        # Chan et al.'s pairwise update: exact for batches of any sizes, no catastrophic cancellation.
        total = n_a + count
        delta = batch_mean - mean
        stats[module] = [total, mean + delta * (count / total), m2 + batch_m2 + delta.pow(2) * (n_a * count / total)]

    hooks = [m.register_forward_pre_hook(accumulate) for m in layers]
    try:
        model.eval()
        for m in layers:
            m.train()
        chunks = torch.tensor_split(images, max(1, images.shape[0] // batch_size))
        for chunk in chunks:
            model(chunk.to(device=reference.device, dtype=dtype))
        for m in layers:
            count, mean, m2 = stats[m]
            m.running_mean.copy_(mean)
            m.running_var.copy_(m2 / (count - 1))
            m.num_batches_tracked.fill_(len(chunks))
    finally:
        for hook in hooks:
            hook.remove()
        for m, training in modes.items():
            m.training = training
    return model
