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
