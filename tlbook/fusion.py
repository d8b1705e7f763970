"""Reference implementations of model fusion: weight averaging, model soups, ensembles, calibration and
permutation alignment.

A chapter writes each method in a few lines and compares it with the function here using
``torch.testing.assert_close``; the tests compare these functions with independent computations
(loops over parameters, the definitions, brute force over permutations). None of these functions
runs inside a training step, so they check their inputs' values too (NaN, ranges), not only shapes.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from .adapt import recompute_batchnorm
from .checks import full_precision, real_number, seed_value, whole_number
from .models import BodyHeadNet


# ----------------------------------------------------------------------------- weight averaging
def _models(models, name: str = "models") -> list:
    if isinstance(models, nn.Module) or not isinstance(models, (list, tuple)):
        raise TypeError(f"{name} must be a list of nn.Module, got {type(models).__name__}; wrap a single model as [model].")
    if not models:
        raise ValueError(f"{name} is empty: give at least one model.")
    for i, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name}[{i}] must be an nn.Module, got {type(model).__name__}.")
    return list(models)


def _mixing_weights(weights, count: int, name: str = "weights") -> list:
    """``count`` non-negative numbers summing to 1 (``None``: uniform)."""
    if weights is None:
        return [1.0 / count] * count
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().tolist()
    weights = [real_number(w, name) for w in weights]
    if len(weights) != count:
        raise ValueError(f"{name} must have one entry per model ({count}), got {len(weights)}.")
    if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be >= 0 and sum to 1 (a convex combination), got {weights} (sum {sum(weights):.6g}).")
    return weights


def _check_same_states(states: list) -> None:
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != first.keys():
            missing = [k for k in first if k not in state]
            extra = [k for k in state if k not in first]
            what = f"lacks {missing[0]!r}" if missing else f"has the extra entry {extra[0]!r}"
            raise ValueError(f"models[{i}] {what} in its state_dict: models to average must have the same architecture.")
        for key, tensor in first.items():
            other = state[key]
            if other.shape != tensor.shape or other.dtype != tensor.dtype:
                raise ValueError(f"models[0] and models[{i}] differ at {key!r}: {tuple(tensor.shape)} {tensor.dtype} vs "
                                 f"{tuple(other.shape)} {other.dtype}; models to average must have the same architecture.")


@torch.no_grad()
def average_weights(models, weights=None, bn_data=None) -> nn.Module:
    """Weighted average of models' parameters: ``theta = sum_m w_m theta_m``, ``w_m >= 0``, ``sum_m w_m = 1``.

    The basis of stochastic weight averaging (Izmailov et al., "Averaging Weights Leads to Wider
    Optima and Better Generalization", 2018) and model soups (Wortsman et al. 2022). Floating-point
    entries of the state dict are averaged (accumulated in float64, stored in their own dtype, so
    averaging a model with itself returns it exactly); integer buffers such as BatchNorm's
    ``num_batches_tracked`` are copied from the first model.

    BatchNorm's running statistics are floating-point too, so without ``bn_data`` they are averaged
    like the weights, but the averaged network's activations do not have the averaged statistics.
    With ``bn_data`` they are re-estimated on it (:func:`tlbook.adapt.recompute_batchnorm`):
    statistics of the average, not the average of statistics.

    Args:
        models: list of ``M`` models with the same architecture (same state-dict keys, shapes, dtypes).
        weights: ``M`` numbers ``>= 0`` summing to 1; ``None`` for the uniform average.
        bn_data: ``ImageData`` or images ``(N, C, H, W)`` to re-estimate BatchNorm statistics on.

    Returns:
        A new model (a deep copy of ``models[0]``, same device and modes); the inputs are unchanged.
    """
    models = _models(models)
    weights = _mixing_weights(weights, len(models))
    states = [m.state_dict() for m in models]
    _check_same_states(states)
    averaged = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            averaged[key] = first.clone()
            continue
        accumulator = torch.float32 if first.device.type == "mps" else torch.float64
        total = torch.zeros(first.shape, dtype=accumulator, device=first.device)
        for w, state in zip(weights, states):
            if w > 0:  # a zero weight leaves the model out entirely, NaNs included
                total += w * state[key].to(device=first.device, dtype=accumulator)
        averaged[key] = total.to(first.dtype)
    soup = copy.deepcopy(models[0])
    soup.load_state_dict(averaged)
    if bn_data is not None:
        recompute_batchnorm(soup, bn_data)
    return soup


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha, bn_data=None) -> nn.Module:
    """The model on the line between two: ``theta = (1 - alpha) theta_a + alpha theta_b``, ``alpha`` in ``[0, 1]``.

    Evaluated along ``alpha`` it draws the loss barrier of linear mode connectivity (Frankle et al.,
    "Linear Mode Connectivity and the Lottery Ticket Hypothesis", 2020). See :func:`average_weights`.
    """
    alpha = real_number(alpha, "alpha")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 gives model_a, 1 gives model_b), got {alpha}.")
    return average_weights([model_a, model_b], [1.0 - alpha, alpha], bn_data=bn_data)


def _score(score, model, what: str) -> float:
    value = score(model)
    try:
        return real_number(value, "score")
    except (TypeError, ValueError) as err:
        raise type(err)(f"score must return a finite number (higher is better) for {what}: {err}") from None


def greedy_soup(models, score, bn_data=None):
    """Greedy soup, Recipe 1 of Wortsman et al., "Model soups: averaging weights of multiple fine-tuned
    models improves accuracy without increasing inference time" (ICML 2022).

    Ingredients are sorted by their own score, best first (ties keep the given order); the soup
    starts as the best one, and each next ingredient is added to the uniform average if the soup's
    score does not go down: ``score(average(soup + [m])) >= score(average(soup))``.

    Args:
        models: list of fine-tuned models with the same architecture (e.g. one pre-trained start).
        score: ``score(model) -> float``, higher is better: accuracy on a *validation* split, never test.
        bn_data: data to re-estimate BatchNorm statistics of every candidate soup on (see :func:`average_weights`).

    Returns:
        ``(soup, chosen, history)``: the soup model; the indices of its ingredients, in the order
        they were added; one dict per ingredient tried, in order, with ``index``,
        ``ingredient_score`` (its own), ``soup_score`` (of the soup with it) and ``added``.
        ``len(models) + len(models) - 1`` calls to ``score`` (one more with ``bn_data``).
    """
    models = _models(models)
    if not callable(score):
        raise TypeError(f"score must be a function score(model) -> float (higher is better), got {type(score).__name__}.")
    own = [_score(score, m, f"models[{i}]") for i, m in enumerate(models)]
    order = sorted(range(len(models)), key=lambda i: -own[i])
    chosen = [order[0]]
    soup = average_weights([models[order[0]]], bn_data=bn_data)
    best = own[order[0]] if bn_data is None else _score(score, soup, "the one-ingredient soup")
    history = [{"index": order[0], "ingredient_score": own[order[0]], "soup_score": best, "added": True}]
    for i in order[1:]:
        candidate = average_weights([models[j] for j in chosen + [i]], bn_data=bn_data)
        value = _score(score, candidate, f"the soup with models[{i}]")
        added = value >= best
        history.append({"index": i, "ingredient_score": own[i], "soup_score": value, "added": added})
        if added:
            chosen.append(i)
            soup, best = candidate, value
    return soup, chosen, history


# ----------------------------------------------------------------------------- ensembles and calibration
def _finite_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}.")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def ambiguity_decomposition(member_predictions, targets, weights=None) -> dict:
    """Krogh & Vedelsby, "Neural Network Ensembles, Cross Validation, and Active Learning" (NIPS 1995).

    For the weighted ensemble ``f = sum_m w_m f_m`` and squared error, exactly::

        E = mean_n ||f(x_n) - y_n||^2                         ensemble_error
          = sum_m w_m mean_n ||f_m(x_n) - y_n||^2             mean_member_error
          - sum_m w_m mean_n ||f_m(x_n) - f(x_n)||^2          ambiguity (>= 0)

    so the ensemble is never worse than its average member, and better by how much members disagree.

    Args:
        member_predictions: ``(M, N)`` or ``(M, N, K)`` (e.g. ``K`` class probabilities; the squared
            norm is summed over ``K``).
        targets: ``(N,)`` or ``(N, K)``, matching (e.g. one-hot labels).
        weights: ``M`` numbers ``>= 0`` summing to 1; ``None`` for the plain mean.

    Returns:
        ``{'ensemble_error', 'mean_member_error', 'ambiguity'}`` (scalar tensors) and
        ``'member_errors'`` ``(M,)``.
    """
    preds = _finite_tensor(member_predictions, "member_predictions")
    targets = _finite_tensor(targets, "targets")
    if preds.ndim not in (2, 3) or preds.shape[0] < 1 or tuple(targets.shape) != tuple(preds.shape[1:]):
        raise ValueError(f"member_predictions must be (M, N) or (M, N, K) and targets (N,) or (N, K) to match, got "
                         f"shapes {tuple(preds.shape)} and {tuple(targets.shape)}.")
    preds = full_precision(preds)
    targets = targets.to(preds.dtype)
    w = torch.tensor(_mixing_weights(weights, preds.shape[0]), dtype=preds.dtype, device=preds.device)
    w = w.view(-1, *[1] * (preds.ndim - 1))
    ensemble = (w * preds).sum(0)

    def per_example(sq):  # summed over K, averaged over N
        return (sq.sum(-1) if preds.ndim == 3 else sq).mean(-1)

    member_errors = per_example((preds - targets).pow(2))
    w = w.flatten()
    return {
        "ensemble_error": per_example((ensemble - targets).pow(2)),
        "mean_member_error": (w * member_errors).sum(),
        "ambiguity": (w * per_example((preds - ensemble).pow(2))).sum(),
        "member_errors": member_errors,
    }


def _probabilities(probs, labels) -> tuple:
    probs = _finite_tensor(probs, "probs")
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"probs must be (N, K) class probabilities, got shape {tuple(probs.shape)}.")
    probs = full_precision(probs)
    sums = probs.sum(1)
    if bool((probs < 0).any()) or bool(((sums - 1).abs() > 1e-3).any()):
        raise ValueError(f"probs must be probabilities (each row >= 0, summing to 1), got row sums from "
                         f"{sums.min().item():.4g} to {sums.max().item():.4g}; for logits pass logits.softmax(1).")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or tuple(labels.shape) != (probs.shape[0],):
        raise ValueError(f"labels must be an integer tensor (N,) = ({probs.shape[0]},) to match probs "
                         f"{tuple(probs.shape)}, got {getattr(labels, 'dtype', type(labels).__name__)} "
                         f"{tuple(getattr(labels, 'shape', ()))}.")
    if bool(((labels < 0) | (labels >= probs.shape[1])).any()):
        raise ValueError(f"labels must be in [0, K) = [0, {probs.shape[1]}), got values outside it.")
    return probs, labels.to(probs.device)


def _binned(probs, labels, bins: int) -> tuple:
    """Bin edges and, per bin, the example count and the sums of confidence and of correctness."""
    probs, labels = _probabilities(probs, labels)
    bins = whole_number(bins, "bins", minimum=1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).to(probs.dtype)
    edges = torch.arange(bins + 1, dtype=torch.float64, device=probs.device) / bins
    index = torch.bucketize(confidence.double(), edges[1:-1], right=False)
    # An (N, bins) mask and sums instead of bincount/scatter_add: deterministic on GPUs too.
    member = (index[:, None] == torch.arange(bins, device=probs.device)).to(probs.dtype)
    return edges, member.sum(0), (member * confidence[:, None]).sum(0), (member * correct[:, None]).sum(0)


def reliability_bins(probs, labels, bins: int = 15) -> dict:
    """Per-bin confidence and accuracy for a reliability diagram (Guo, Pleiss, Sun & Weinberger, "On
    Calibration of Modern Neural Networks", ICML 2017).

    Confidence is the top probability ``max_k p_k``, the prediction its class; bin ``m`` holds the
    examples with ``m / bins < confidence <= (m + 1) / bins``.

    Args:
        probs: ``(N, K)`` probabilities (not logits). labels: ``(N,)`` int. bins: ``>= 1`` equal-width bins.

    Returns:
        ``{'edges': (bins + 1,) float64, 'confidence': (bins,), 'accuracy': (bins,), 'count': (bins,) int64}``;
        the mean confidence and the accuracy are NaN in empty bins, so a plot leaves them out.
    """
    edges, count, confidence_sum, correct_sum = _binned(probs, labels, bins)
    nan = torch.full_like(count, math.nan)
    return {
        "edges": edges,
        "confidence": torch.where(count > 0, confidence_sum / count.clamp_min(1), nan),
        "accuracy": torch.where(count > 0, correct_sum / count.clamp_min(1), nan),
        "count": count.long(),
    }


def expected_calibration_error(probs, labels, bins: int = 15) -> torch.Tensor:
    """Expected calibration error of Guo et al. (2017), with equal-width confidence bins:

    ``ECE = sum_m (|B_m| / N) |accuracy(B_m) - confidence(B_m)| = sum_m |sum_{i in B_m} (correct_i - conf_i)| / N``.

    Args and bins as in :func:`reliability_bins`. Returns a scalar tensor in ``[0, 1]``.
    """
    _, count, confidence_sum, correct_sum = _binned(probs, labels, bins)
    return (correct_sum - confidence_sum).abs().sum() / count.sum()


# ----------------------------------------------------------------------------- permutation alignment
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
                nn.Dropout, nn.Identity, nn.Flatten)
_WHY_MLP = ("permutation alignment is shown on an MLP (nn.Linear layers with elementwise activations), where "
            "permuting a hidden layer's units means permuting rows of one weight matrix and columns of the next; "
            "a conv/BatchNorm net needs the same per-channel permutation applied to conv kernels and to every "
            "BatchNorm's weight, bias and running statistics (and shared across residual connections). "
            "Build one with tl.make_model('mlp', hidden=(512, 512)).")


def _linear_chain(model, name: str) -> list:
    """The ``nn.Linear`` layers of an MLP in forward order, after checking that it is one."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(model).__name__}.")
    layers = []

    def walk(module, path):
        if isinstance(module, nn.Linear):
            layers.append(module)
        elif isinstance(module, _ELEMENTWISE):
            pass
        elif isinstance(module, BodyHeadNet):
            walk(module.body, "body")
            walk(module.head, "head")
        elif isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                walk(child, f"{path}.{child_name}" if path else child_name)
        else:
            raise ValueError(f"{name} is not an MLP: {path or 'the model'} is a {type(module).__name__}; {_WHY_MLP}")

    walk(model, "")
    if len(layers) < 2:
        raise ValueError(f"{name} has {len(layers)} nn.Linear layer(s) and so no hidden layer to permute; {_WHY_MLP}")
    for i, (a, b) in enumerate(zip(layers, layers[1:])):
        if a.out_features != b.in_features:
            raise ValueError(f"{name}: Linear layer {i} has {a.out_features} outputs but layer {i + 1} has "
                             f"{b.in_features} inputs; {_WHY_MLP}")
    return layers


def _numpy_layers(layers) -> list:
    out = []
    for layer in layers:
        weight = layer.weight.detach().cpu().double().numpy()
        bias = layer.bias.detach().cpu().double().numpy() if layer.bias is not None else np.zeros(weight.shape[0])
        out.append((weight, bias))
    return out


def weight_matching(model_a: nn.Module, model_b: nn.Module, max_iter: int = 100, seed: int = 0) -> list:
    """Weight matching of Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
    Symmetries" (ICLR 2023), for MLPs.

    Finds permutations ``P_l`` of model_b's hidden units maximising the weights' agreement
    ``sum_l <W_l^a, P_l W_l^b P_{l-1}^T> + <b_l^a, P_l b_l^b>`` (``P_0``, ``P_L`` the identity)
    by coordinate descent: each step solves the linear assignment problem of one hidden layer with
    the others fixed (``scipy.optimize.linear_sum_assignment``); layers are visited in a seeded random
    order, a step is kept only if it strictly improves the objective, and the search stops after a
    sweep without improvement (or ``max_iter`` sweeps). Deterministic for a given ``seed``.

    Args:
        model_a, model_b: MLPs with the same layer sizes (``tl.make_model('mlp', ...)``).

    Returns:
        One ``(width_l,)`` int64 tensor per hidden layer: ``perms[l][i]`` is the unit of model_b that
        goes to position ``i``. ``permute_hidden(model_b, perms)`` computes the same function as
        model_b, with its units lined up with model_a's.
    """
    from scipy.optimize import linear_sum_assignment

    chain_a, chain_b = _linear_chain(model_a, "model_a"), _linear_chain(model_b, "model_b")
    shapes_a = [tuple(l.weight.shape) for l in chain_a]
    shapes_b = [tuple(l.weight.shape) for l in chain_b]
    if shapes_a != shapes_b:
        raise ValueError(f"model_a and model_b must have the same layer sizes, got weight shapes {shapes_a} and {shapes_b}.")
    max_iter = whole_number(max_iter, "max_iter", minimum=1)
    rng = np.random.default_rng(seed_value(seed))
    a, b = _numpy_layers(chain_a), _numpy_layers(chain_b)
    hidden = len(a) - 1
    perms = [np.arange(a[l][0].shape[0]) for l in range(hidden)]

    def similarity(l):  # S[i, j]: model_a's unit i against model_b's unit j of hidden layer l
        incoming = b[l][0][:, perms[l - 1]] if l > 0 else b[l][0]
        outgoing = b[l + 1][0][perms[l + 1], :] if l + 1 < hidden else b[l + 1][0]
        return a[l][0] @ incoming.T + np.outer(a[l][1], b[l][1]) + a[l + 1][0].T @ outgoing

    for _ in range(max_iter):
        improved = False
        for l in rng.permutation(hidden):
            s = similarity(l)
            rows = np.arange(s.shape[0])
            _, columns = linear_sum_assignment(s, maximize=True)
            old, new = s[rows, perms[l]].sum(), s[rows, columns].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[l], improved = columns, True
        if not improved:
            break
    return [torch.as_tensor(p, dtype=torch.long) for p in perms]


@torch.no_grad()
def permute_hidden(model: nn.Module, perms) -> nn.Module:
    """A copy of an MLP with its hidden units reordered: the same function, other coordinates.

    Hidden layer ``l`` (output of Linear ``l``): ``W_l <- W_l[perm_l][:, perm_{l-1}]``,
    ``b_l <- b_l[perm_l]``, and the next layer's input columns follow (``W_{l+1}[:, perm_l]``).

    Args:
        model: an MLP (see :func:`weight_matching`).
        perms: one permutation of ``range(width_l)`` per hidden layer (tensors, arrays or lists).
    """
    chain = _linear_chain(model, "model")
    widths = [layer.out_features for layer in chain[:-1]]
    if not isinstance(perms, (list, tuple)) or len(perms) != len(widths):
        got = f"{len(perms)} of them" if isinstance(perms, (list, tuple)) else f"a {type(perms).__name__}"
        raise ValueError(f"perms must be a list of {len(widths)} permutations, one per hidden layer (widths {widths}), got {got}.")
    checked = []
    for l, (perm, width) in enumerate(zip(perms, widths)):
        perm = torch.as_tensor(perm)
        if (perm.ndim != 1 or perm.is_floating_point() or perm.dtype == torch.bool
                or not torch.equal(perm.long().sort().values.cpu(), torch.arange(width))):
            raise ValueError(f"perms[{l}] must be a permutation of range({width}) (hidden layer {l} has {width} units), "
                             f"got shape {tuple(perm.shape)} dtype {perm.dtype}.")
        checked.append(perm.long())
    permuted = copy.deepcopy(model)
    for l, layer in enumerate(_linear_chain(permuted, "model")):
        weight = layer.weight
        if l < len(checked):
            rows = checked[l].to(weight.device)
            weight = weight[rows]
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[rows])
        if l > 0:
            weight = weight[:, checked[l - 1].to(weight.device)]
        layer.weight.copy_(weight)
    return permuted
