"""Reference implementations for transfer without forgetting (Chapter 7): elastic weight consolidation
(:func:`diagonal_fisher`, :func:`ewc_penalty`). :func:`ewc_penalty` runs inside a training step: it returns
a tensor and never reads a value back to the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checks import full_precision, non_negative_number, seed_value, whole_number
from .data import ImageData


# ----------------------------------------------------------------------------- elastic weight consolidation
FISHER_MODES = ("sampled", "expected", "empirical")


def _fisher_batches(data, batch_size: int, need_labels: bool):
    """Yield ``(inputs, labels or None)`` from an ImageData, a tensor of inputs or an iterable of batches."""
    if isinstance(data, (torch.Tensor, ImageData)):
        images = data if isinstance(data, torch.Tensor) else data.images
        labels = data.labels if isinstance(data, ImageData) and data.has_labels else None
        if images.ndim < 2 or images.shape[0] < 1:
            raise ValueError(f"data must hold at least one example (N, ...), got shape {tuple(images.shape)}.")
        data = [(images[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
                for i in range(0, images.shape[0], batch_size)]
    elif not hasattr(data, "__iter__"):
        raise TypeError(f"data must be an ImageData, a tensor of inputs (N, ...) or an iterable of batches, "
                        f"got {type(data).__name__}.")
    for batch in data:
        inputs, labels = (batch, None) if isinstance(batch, torch.Tensor) else (batch[0], batch[1] if len(batch) > 1 else None)
        if need_labels and labels is None:
            raise ValueError("data has no labels, which mode='empirical' needs (the Fisher at the data's labels); "
                             "pass labelled data, or use mode='sampled' (the true Fisher).")
        yield inputs, labels


def diagonal_fisher(model: nn.Module, data, mode: str = "sampled", batch_size: int = 64, seed: int = 0) -> dict:
    """Diagonal Fisher information of the model's predictive distribution, as in EWC (Kirkpatrick et al.,
    "Overcoming catastrophic forgetting in neural networks", PNAS 2017):

    ``F_i = mean_n E_y (d log p(y | x_n) / d theta_i)^2``: per-example squared gradients (not squared
    batch gradients), averaged over the data, with the model in eval mode (BatchNorm running statistics,
    no dropout; modes restored afterwards). ``mode`` chooses ``y``:

    - ``'sampled'`` (default): the true Fisher, one label per example drawn from the model's own
      ``p(y | x_n)`` (Monte Carlo; seeded by ``seed``);
    - ``'expected'``: the true Fisher with the expectation over all ``K`` labels done exactly (``K`` times the work);
    - ``'empirical'``: the "empirical Fisher" at the data's labels (needs labels), common in EWC code but
      not the model's Fisher unless the labels follow the model's ``p(y | x)`` (Kunstner, Balles & Hennig,
      "Limitations of the empirical Fisher approximation", NeurIPS 2019).

    Args:
        model: any ``nn.Module`` mapping inputs ``(B, ...)`` to logits ``(B, K)``.
        data: an :class:`~tlbook.data.ImageData`, a tensor of inputs ``(N, ...)``, or an iterable of batches
            (tensors or ``(inputs, labels, ...)`` tuples); moved batch by batch to the model's device.
        batch_size: examples (``'expected'``: example-label pairs) per vectorised gradient call.

    Returns ``{name: tensor}`` shaped like each trainable (``requires_grad``) parameter, for :func:`ewc_penalty`.
    """
    from torch.func import functional_call, grad, vmap

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    if mode not in FISHER_MODES:
        from .models import unknown_name_error

        raise unknown_name_error("mode", mode, FISHER_MODES)
    batch_size, seed = whole_number(batch_size, "batch_size"), seed_value(seed)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad); unfreeze the ones EWC should protect.")
    buffers = dict(model.named_buffers())
    reference = next(iter(params.values()))

    def nll(p, x, y):
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(full_precision(logits), y.unsqueeze(0))

    per_example = vmap(grad(nll), in_dims=(None, 0, 0))
    generator = torch.Generator().manual_seed(seed)
    sums = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.autocast(reference.device.type, enabled=False):  # gradients in full precision
            for inputs, labels in _fisher_batches(data, batch_size, mode == "empirical"):
                x = inputs.to(device=reference.device, dtype=reference.dtype if inputs.is_floating_point() else None)
                weights = torch.ones(x.shape[0], dtype=reference.dtype, device=x.device)
                if mode == "empirical":
                    y = torch.as_tensor(labels).to(device=x.device, dtype=torch.long)
                else:
                    with torch.no_grad():
                        probs = F.softmax(full_precision(model(x)), dim=1)
                    if mode == "sampled":
                        y = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(x.device)
                    else:
                        k = probs.shape[1]
                        x, y = x.repeat_interleave(k, 0), torch.arange(k, device=x.device).repeat(probs.shape[0])
                        weights = probs.flatten().to(reference.dtype)
                for start in range(0, x.shape[0], batch_size):
                    grads = per_example(params, x[start:start + batch_size], y[start:start + batch_size])
                    w = weights[start:start + batch_size]
                    for name, g in grads.items():
                        sums[name] += (w.view(-1, *[1] * (g.ndim - 1)) * g.pow(2)).sum(0)
                count += inputs.shape[0]
    finally:
        for m, training in modes.items():
            m.training = training
    if count == 0:
        raise ValueError("data yielded no examples; the Fisher needs at least one.")
    return {name: s / count for name, s in sums.items()}


def ewc_penalty(model: nn.Module, fisher: dict, anchor, lam: float = 1.0) -> torch.Tensor:
    """EWC penalty of Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks" (PNAS 2017):

    ``lam / 2 * sum_i F_i (theta_i - theta*_i)^2`` over the parameters named in ``fisher``: a quadratic
    (Laplace) approximation of the old task's loss around its solution ``theta*``. Add it to the new
    task's loss inside a step; it computes in float32 (or float64) and reads nothing back to the host.

    Args:
        model: the ``nn.Module`` being trained (``theta``). fisher: ``{name: tensor}`` from
            :func:`diagonal_fisher` on the old task's data. anchor: ``theta*``, a copy of the old model or
            ``{name: tensor}`` (``{n: p.detach().clone() for n, p in model.named_parameters()}``).
        lam: ``>= 0``, how much the old task counts. Returns a scalar tensor.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    anchor = dict(anchor.named_parameters()) if isinstance(anchor, nn.Module) else anchor
    for value, name in ((fisher, "fisher"), (anchor, "anchor")):
        if not isinstance(value, dict) or not value:
            raise TypeError(f"{name} must be a non-empty dict {{parameter name: tensor}}, got {type(value).__name__}.")
    lam = non_negative_number(lam, "lam")
    params = dict(model.named_parameters())
    total = None
    for name, f in fisher.items():
        if name not in params:
            raise ValueError(f"fisher has an entry {name!r} that is not a parameter of model; "
                             f"compute it with diagonal_fisher on this model (parameters: {', '.join(list(params)[:5])}, ...).")
        if name not in anchor:
            raise ValueError(f"anchor has no entry {name!r}; save every parameter of the old model (named_parameters()).")
        theta, star = params[name], anchor[name]
        if not (torch.is_tensor(f) and torch.is_tensor(star) and f.shape == star.shape == theta.shape):
            raise ValueError(f"fisher and anchor entries for {name!r} must be tensors shaped like the parameter "
                             f"{tuple(theta.shape)}, got {tuple(getattr(f, 'shape', ()))} and "
                             f"{tuple(getattr(star, 'shape', ()))}.")
        term = (full_precision(f) * (full_precision(theta) - full_precision(star.detach())).pow(2)).sum()
        total = term if total is None else total + term
    return lam / 2 * total
