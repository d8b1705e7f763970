"""Argument checks shared by the public functions: each error names the argument, the value and the fix.

A wrong count or learning rate should fail at the call that received it, with a sentence a reader
can act on, not as a shape error deep inside torch or as a silently wrong result.
"""
from __future__ import annotations

import math
import numbers

import torch


def whole_number(value, name: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (Python or NumPy integer, or a 0-dim integer tensor), within bounds.

    Floats are refused even when whole (``2.0``): a size computed as a float usually hides a bug.
    """
    if torch.is_tensor(value) and value.ndim == 0 and not value.is_floating_point() and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = f" (e.g. {int(value)})" if isinstance(value, float) and math.isfinite(value) else ""
        raise TypeError(f"{name} must be a whole number, got {type(value).__name__} {value!r}; pass an int{hint}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}.")
    return value


def real_number(value, name: str) -> float:
    """``value`` as a finite Python float (ints, floats, NumPy scalars, one-element tensors)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got the bool {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}.")
    return number


def positive_number(value, name: str, what: str = "") -> float:
    """A finite float ``> 0``; ``what`` says what the number is for, in the error."""
    number = real_number(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be > 0{what}, got {number}.")
    return number


def non_negative_number(value, name: str) -> float:
    number = real_number(value, name)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}.")
    return number


def seed_value(value, name: str = "seed") -> int:
    """A seed: a whole number ``>= 0`` (torch and NumPy refuse negative seeds)."""
    return whole_number(value, name, minimum=0)


# ----------------------------------------------------------------------------- array arguments
# The references (transferability, zeroshot, continual, adapt, fusion) take NumPy arrays or tensors: these turn
# one into a tensor or fail with the argument's name, its shape and what it should be.
def tensor_argument(x, name: str) -> torch.Tensor:
    """``x`` (NumPy array, tensor or nested list of numbers) as a tensor; a TypeError naming ``name`` otherwise."""
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(f"{name} must be a tensor or NumPy array, got {type(x).__name__}.")
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or NumPy array of numbers, got {type(x).__name__}.") from None


def matrix_argument(x, name: str, what: str = "(N, D)", min_rows: int = 1) -> torch.Tensor:
    """``x`` as a finite float64 matrix ``what`` with at least ``min_rows`` rows, or an error saying which."""
    x = tensor_argument(x, name)
    if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D {what} with N >= {min_rows} rows, got shape {tuple(x.shape)}.")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {x.dtype}.")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the model outputs it came from.")
    return x


def labels_argument(x, name: str, n: int, device, num_classes: int | None = None) -> torch.Tensor:
    """``x`` as ``(n,)`` int64 class ids on ``device``, in ``[0, num_classes)`` when that is given."""
    x = tensor_argument(x, name)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class ids, got {x.dtype}; convert with .long() if they are whole numbers.")
    if x.ndim != 1 or x.shape[0] != n:
        raise ValueError(f"{name} must be (N,) with N = {n} (one per row of the scores/features), got shape {tuple(x.shape)}.")
    x = x.to(device=device, dtype=torch.long)
    low, high = int(x.min()), int(x.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        valid = f"lie in [0, {num_classes - 1}]" if num_classes is not None else "be >= 0"
        raise ValueError(f"{name} must {valid}, got values in [{low}, {high}].")
    return x


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (and integers) -> float32; float32 and float64 unchanged: losses and statistics
    computed in at least float32 stay safe under autocast."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
