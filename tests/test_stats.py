"""tl.sign_test against scipy's exact binomial test, its ties and its refusals."""
import numpy as np
import pytest
import torch
from scipy.stats import binomtest

import tlbook as tl


@pytest.mark.parametrize("higher, lower", [(3, 0), (0, 6), (1, 1), (7, 3), (44, 64), (120, 0), (0, 1), (12, 13)])
def test_p_value_matches_scipy_binomtest(higher, lower):
    d = np.r_[np.linspace(0.1, 2, higher), -np.linspace(0.1, 2, lower)]
    result = tl.sign_test(d)
    assert (result.higher, result.lower, result.ties) == (higher, lower, 0)
    assert result.p_value == pytest.approx(binomtest(higher, higher + lower).pvalue, rel=1e-12)


def test_ties_are_dropped_and_counted():
    result = tl.sign_test(torch.tensor([[0.5, 0.0], [1.0, 0.0], [2.0, 0.0]]))   # any shape, a tensor
    assert result == (3, 0, 3, 0.25)
    assert tl.sign_test([0.0, 0.0]) == (0, 0, 2, 1.0)


def test_known_values_the_chapters_quote():
    assert tl.sign_test([1, 2, 3]).p_value == 0.25            # 3 seeds, all one way: the smallest p with 3
    assert tl.sign_test([-1] * 6).p_value == 2 / 64
    assert tl.sign_test([1, -1]).p_value == 1.0
    higher, lower, ties, p = tl.sign_test([1.0] * 5 + [-1.0])
    assert (higher, lower, ties) == (5, 1, 0) and p == pytest.approx(14 / 64)


@pytest.mark.parametrize("bad, error, message", [
    ([], ValueError, "empty"),
    ([1.0, float("nan")], ValueError, "NaN or infinity at flat index \\[1\\]"),
    (["a", "b"], TypeError, "must be numbers"),
])
def test_bad_input_is_refused_with_a_clear_message(bad, error, message):
    with pytest.raises(error, match=message):
        tl.sign_test(bad)
