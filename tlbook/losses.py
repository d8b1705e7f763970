"""Reference losses of the book's methods, each checked by a chapter that writes it out itself.

A chapter writes its method's loss in a few lines and compares it with the function here using
``torch.testing.assert_close``; the tests compare these functions with independent computations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Knowledge-distillation loss of Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    ``alpha * T**2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(y, z_s)``,

    the KL divergence averaged over the batch (``batchmean``), the cross-entropy on the hard labels at
    temperature 1. The factor ``T**2`` keeps the gradient of the soft term with respect to the
    student's logits about as large for every ``T``: without it the gradient shrinks like ``1 / T**2``.

    Args:
        student_logits: ``z_s``, ``(B, K)``; gradients flow into it.
        teacher_logits: ``z_t``, ``(B, K)``; treated as a constant (detached).
        labels: ``y``, ``(B,)`` int64 in ``[0, K)``; may be ``None`` only when ``alpha == 1``
            (soft targets alone, e.g. a transfer set without labels).
        temperature: ``T > 0``, the same for teacher and student.
        alpha: weight of the soft term, in ``[0, 1]``; ``alpha = 0`` is plain cross-entropy.

    Returns:
        A scalar tensor.
    """
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits and teacher_logits must both be (B, K) with the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}."
        )
    temperature, alpha = _number(temperature, "temperature"), _number(alpha, "alpha")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number (T > 0), got {temperature!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (1 = soft targets only, 0 = hard labels only), got {alpha!r}.")
    if labels is None and alpha < 1:
        raise ValueError(
            f"labels are required when alpha < 1 (the hard-label term has weight 1 - alpha = {1 - alpha:g}); "
            "pass labels (B,) or use alpha=1 to train on the teacher's soft targets alone."
        )
    if labels is not None and tuple(labels.shape) != (student_logits.shape[0],):
        raise ValueError(
            f"labels must be (B,) = ({student_logits.shape[0]},) to match the logits {tuple(student_logits.shape)}, "
            f"got {tuple(labels.shape)}."
        )
    # Logits in float32: under bf16/fp16 autocast, softmax at high T differs from uniform by amounts
    # smaller than the half-precision resolution, and the soft term would be rounded away.
    student_logits = student_logits.float()
    teacher_logits = teacher_logits.detach().float()
    loss = student_logits.new_zeros(())
    if alpha > 0:
        soft = F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.log_softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        loss = loss + alpha * temperature**2 * soft
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


def _number(value, name: str) -> float:
    """``value`` as a Python float (ints, floats, NumPy scalars, one-element tensors)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.") from None
