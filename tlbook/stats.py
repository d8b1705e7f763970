"""How the book tests a paired comparison: the exact two-sided sign test over paired differences.

A claim "A beats B" in the book is a set of paired differences (A minus B on the same seed, episode or
label draw) reported with :func:`tlbook.spread` and tested with :func:`sign_test`, which assumes nothing
about their distribution. With 3 seeds the smallest two-sided p-value is 0.25, so a chapter says
"higher on every seed" rather than "significant" unless it has more pairs.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class SignTest(NamedTuple):
    """The counts of a paired comparison and its two-sided p-value."""

    higher: int     # differences > 0
    lower: int      # differences < 0
    ties: int       # differences == 0, left out of the test
    p_value: float  # two-sided, exact; 1.0 when every difference is a tie


def sign_test(differences) -> SignTest:
    """Two-sided exact sign test of paired differences (A minus B), ties dropped.

    Under the null hypothesis each nonzero difference is positive with probability 1/2, so the number
    of positive ones among the ``n`` nonzero differences is Binomial(n, 1/2); the p-value doubles the
    tail beyond the larger count (capped at 1), as ``scipy.stats.binomtest(higher, n).pvalue`` does.
    Dixon & Mood (1946), "The statistical sign test".

    differences: numbers of any shape (list, NumPy array or tensor), flattened; none NaN or infinite.
    Returns ``SignTest(higher, lower, ties, p_value)``: ``tl.sign_test([1.2, 0.4, 2.0]).p_value == 0.25``.
    """
    if isinstance(differences, torch.Tensor):
        differences = differences.detach().cpu().double()
    try:
        d = np.asarray(differences, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"differences must be numbers (A minus B per pair), got {differences!r}.") from err
    if d.size == 0:
        raise ValueError("differences is empty: pass one difference per pair, e.g. one per seed.")
    if not np.isfinite(d).all():
        bad = np.flatnonzero(~np.isfinite(d)).tolist()
        raise ValueError(f"differences has NaN or infinity at flat index {bad[:5]}: a run diverged or was never "
                         "filled in; fix it or drop that pair from both sides.")
    higher, lower = int((d > 0).sum()), int((d < 0).sum())
    n = higher + lower
    if n == 0:
        return SignTest(0, 0, int(d.size), 1.0)
    tail = sum(math.comb(n, j) for j in range(max(higher, lower), n + 1))
    return SignTest(higher, lower, int(d.size) - n, min(1.0, 2 * tail / 2**n))
