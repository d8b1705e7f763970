"""Tests of tlbook.zeroshot against independent computations: the ESZSL solution checked against the
paper's normal equations solved as one Kronecker-product linear system, and on synthetic data whose
unseen classes are recognisable from their attributes; DAP against the posterior summed over every
attribute configuration; ConSE against a loop over sorted probabilities; the generalised accuracy
against a count by hand.
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


# ----------------------------------------------------------------------------- DAP
def test_dap_is_the_posterior_summed_over_every_attribute_configuration():
    # Lampert et al.: p(z | x) = sum_a p(z | a) p(a | x), p(a | z) = [a = a^z], p(z | a) = p(a | z) p(z) / p(a),
    # with the factorised prior p(a) = prod_m pi_m^a_m (1 - pi_m)^(1 - a_m) and equal p(z).
    r = rng(3)
    probs, prior = r.uniform(0.05, 0.95, size=(6, 4)), r.uniform(0.1, 0.9, size=4)
    classes = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=float)
    want = np.zeros((6, 3))
    for config in itertools.product((0, 1), repeat=4):
        a = np.array(config)
        p_a_given_x = np.prod(np.where(a == 1, probs, 1 - probs), axis=1)        # (6,)
        p_a = np.prod(np.where(a == 1, prior, 1 - prior))
        for z, description in enumerate(classes):
            if np.array_equal(a, description):
                want[:, z] += (1 / 3) * p_a_given_x / p_a
    got = zs.dap_scores(probs, classes, prior, eps=1e-9)
    assert got.shape == (6, 3) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), np.log(want * 3), rtol=1e-10)   # the log-score drops the constant p(z)
    # no prior given: 0.5 for every attribute, so the prior term is a constant across classes
    flat = zs.dap_scores(probs, classes)
    no_prior = np.log(np.prod(np.where(classes[None] == 1, probs[:, None], 1 - probs[:, None]), axis=2) / 0.5 ** 4)
    np.testing.assert_allclose(flat.numpy(), no_prior, rtol=1e-10)


def test_dap_clips_probabilities_so_one_attribute_cannot_veto():
    scores = zs.dap_scores(np.array([[0.0, 0.99, 0.99, 0.99]]), np.array([[1.0, 1, 1, 1], [0, 0, 0, 0]]), eps=1e-3)
    assert torch.isfinite(scores).all()
    assert scores[0, 0] > scores[0, 1]   # three confident attributes outweigh one clipped zero (log 1e-3 = -6.9)


# ----------------------------------------------------------------------------- ConSE
def test_conse_embeds_by_the_top_t_probabilities_as_a_loop_does():
    r = rng(4)
    probs = r.dirichlet(np.ones(6), size=8)
    seen, candidates = r.normal(size=(6, 5)), r.normal(size=(3, 5))
    for top in (1, 2, 6):
        want_embedding, want_scores = np.zeros((8, 5)), np.zeros((8, 3))
        for n in range(8):
            order = sorted(range(6), key=lambda k: -probs[n, k])[:top]
            e = sum(probs[n, k] * seen[k] for k in order) / sum(probs[n, k] for k in order)
            want_embedding[n] = e
            for z in range(3):
                want_scores[n, z] = e @ candidates[z] / (np.linalg.norm(e) * np.linalg.norm(candidates[z]))
        np.testing.assert_allclose(zs.conse_embedding(probs, seen, top).numpy(), want_embedding, rtol=1e-10)
        np.testing.assert_allclose(zs.conse_scores(probs, seen, candidates, top).numpy(), want_scores, rtol=1e-10, atol=1e-12)
    # T = 1 on the seen classes themselves: the top class's own description, cosine 1
    assert zs.conse_scores(probs, seen, seen, 1).argmax(1).tolist() == probs.argmax(1).tolist()


# ----------------------------------------------------------------------------- generalised accuracy
def test_generalised_accuracy_averages_per_class_then_takes_the_harmonic_mean():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 0, 0, 0])
    got = zs.generalised_accuracy(predicted, labels, unseen=[2])
    seen = (3 / 4 + 1 / 2) / 2          # per class, not per image (which would be 4/6)
    assert got["seen"] == pytest.approx(seen) and got["unseen"] == pytest.approx(1 / 4)
    assert got["harmonic"] == pytest.approx(2 * seen * 0.25 / (seen + 0.25))
    assert zs.generalised_accuracy(torch.zeros(10, dtype=torch.long), labels, [1, 2])["harmonic"] == 0.0


# ----------------------------------------------------------------------------- bad input
P = np.full((5, 3), 1 / 3)
Y5 = np.array([0, 1, 2, 1, 0])
BAD_INPUTS = {
    "eszsl_gamma": (lambda: zs.eszsl(P, np.eye(3), Y5, gamma=-1.0), ValueError, "gamma"),
    "eszsl_label_beyond_classes": (lambda: zs.eszsl(P, np.eye(2), Y5), ValueError, r"labels must lie in \[0, 1\]"),
    "eszsl_scores_widths": (lambda: zs.eszsl_scores(P, np.ones((3, 4)), np.eye(3)), ValueError, r"V must be \(D, A\)"),
    "dap_not_probabilities": (lambda: zs.dap_scores(P - 1, np.eye(3)), ValueError, "attribute_probs must be probabilities"),
    "dap_attribute_count": (lambda: zs.dap_scores(P, np.eye(4)), ValueError, "one column per attribute"),
    "dap_non_binary": (lambda: zs.dap_scores(P, np.full((2, 3), 0.5)), ValueError, "must be 0 or 1"),
    "dap_prior_shape": (lambda: zs.dap_scores(P, np.eye(3), attribute_prior=np.ones(2) / 2), ValueError, "attribute_prior must be"),
    "dap_eps": (lambda: zs.dap_scores(P, np.eye(3), eps=0.7), ValueError, "eps must lie in"),
    "dap_nan": (lambda: zs.dap_scores(np.full((2, 3), np.nan), np.eye(3)), ValueError, "NaN"),
    "conse_not_probabilities": (lambda: zs.conse_scores(np.ones((5, 3)), np.eye(3), np.eye(3), 1), ValueError, "seen_probs must be probabilities"),
    "conse_rows": (lambda: zs.conse_scores(P, np.eye(4), np.eye(4), 1), ValueError, "one row per seen class"),
    "conse_top_zero": (lambda: zs.conse_scores(P, np.eye(3), np.eye(3), 0), ValueError, "top"),
    "conse_top_beyond": (lambda: zs.conse_scores(P, np.eye(3), np.eye(3), 4), ValueError, "top"),
    "conse_top_float": (lambda: zs.conse_scores(P, np.eye(3), np.eye(3), 1.5), (TypeError, ValueError), "top"),
    "conse_candidate_width": (lambda: zs.conse_scores(P, np.eye(3), np.eye(4), 1), ValueError, "class_embeddings must have A = 3"),
    "generalised_unseen_absent": (lambda: zs.generalised_accuracy(Y5, Y5, [7]), ValueError, "unseen must name classes present"),
    "generalised_no_seen": (lambda: zs.generalised_accuracy(Y5, Y5, [0, 1, 2]), ValueError, "seen classes too"),
    "generalised_lengths": (lambda: zs.generalised_accuracy(Y5[:3], Y5, [2]), ValueError, "predicted must be"),
    "generalised_float_labels": (lambda: zs.generalised_accuracy(Y5, Y5.astype(float), [2]), TypeError, "integer class ids"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
