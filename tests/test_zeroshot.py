"""Tests of tlbook.zeroshot against independent computations: the ESZSL solution checked against the
paper's normal equations solved as one Kronecker-product linear system, and on synthetic data whose
unseen classes are recognisable from their attributes.
"""
import itertools

import numpy as np
import pytest
import torch

from tlbook import zeroshot as zs


def rng(seed):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- ESZSL
def test_eszsl_solves_the_papers_normal_equations():
    r = rng(6)
    f, s, y = r.normal(size=(30, 5)), r.normal(size=(4, 3)), r.integers(0, 4, 30)
    gamma, lam = 0.7, 2.0
    labels = 2 * np.eye(4)[y] - 1
    # (F^T F + g I) V (S^T S + l I) = F^T Y S, as one linear system in vec(V) (column-major).
    system = np.kron(s.T @ s + lam * np.eye(3), f.T @ f + gamma * np.eye(5))
    want = np.linalg.solve(system, (f.T @ labels @ s).flatten(order="F")).reshape(5, 3, order="F")
    V = zs.eszsl(f, s, y, gamma=gamma, lam=lam)
    assert V.shape == (5, 3) and V.dtype == torch.float64
    np.testing.assert_allclose(V.numpy(), want, rtol=1e-10)
    v = V.clone().requires_grad_()  # the paper's objective is stationary there
    ft, st, yt = torch.tensor(f), torch.tensor(s), torch.tensor(labels)
    loss = ((ft @ v @ st.T - yt) ** 2).sum() + gamma * (v @ st.T).pow(2).sum()
    loss = loss + lam * (ft @ v).pow(2).sum() + gamma * lam * v.pow(2).sum()
    (grad,) = torch.autograd.grad(loss, v)
    assert grad.abs().max().item() < 1e-9
    np.testing.assert_allclose(zs.eszsl_scores(f, V, s).numpy(), f @ want @ s.T, rtol=1e-10)


def test_eszsl_recognises_unseen_classes_from_their_attributes():
    # 20 classes, each described by 3 of 6 binary attributes: equal norms, so no class wins on size alone.
    r = rng(7)
    attributes = np.array([[float(i in on) for i in range(6)] for on in itertools.combinations(range(6), 3)])[r.permutation(20)]
    mixing = r.normal(size=(6, 20))
    seen, unseen = np.arange(15), np.arange(15, 20)

    def images_of(classes, per_class):
        labels = np.repeat(classes, per_class)
        return attributes[labels] @ mixing + r.normal(size=(len(labels), 20)), labels

    f_train, y_train = images_of(seen, 10)
    V = zs.eszsl(f_train, attributes[seen], y_train, gamma=1.0, lam=1.0)
    f_test, y_test = images_of(unseen, 20)
    predicted = unseen[zs.eszsl_scores(f_test, V, attributes[unseen]).argmax(1).numpy()]
    assert (predicted == y_test).mean() > 0.9  # chance: 1/5


# ----------------------------------------------------------------------------- bad input
P = np.full((5, 3), 1 / 3)
Y5 = np.array([0, 1, 2, 1, 0])
BAD_INPUTS = {
    "eszsl_gamma": (lambda: zs.eszsl(P, np.eye(3), Y5, gamma=-1.0), ValueError, "gamma"),
    "eszsl_label_beyond_classes": (lambda: zs.eszsl(P, np.eye(2), Y5), ValueError, r"labels must lie in \[0, 1\]"),
    "eszsl_scores_widths": (lambda: zs.eszsl_scores(P, np.ones((3, 4)), np.eye(3)), ValueError, r"V must be \(D, A\)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
