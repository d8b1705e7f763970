"""Tests of tlbook.transferability against independent computations: loops over the papers' formulas,
tables with a known conditional entropy, a brute-force grid over LogME's (alpha, beta) scored with
the Gaussian marginal's own log-density, and numpy covariances.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl
from tlbook import transferability as tr


def rng(seed):
    return np.random.default_rng(seed)


def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- LEEP
def leep_loop(probs, labels):
    """LEEP by explicit loops over Nguyen et al.'s three equations."""
    n, num_z, num_y = len(probs), len(probs[0]), max(labels) + 1
    joint = [[0.0] * num_z for _ in range(num_y)]
    for i in range(n):
        for z in range(num_z):
            joint[labels[i]][z] += probs[i][z] / n
    p_z = [sum(joint[y][z] for y in range(num_y)) for z in range(num_z)]
    total = 0.0
    for i in range(n):
        total += math.log(sum(joint[labels[i]][z] / p_z[z] * probs[i][z] for z in range(num_z)))
    return total / n


@pytest.mark.parametrize("num_z,num_y,as_torch", [(5, 3, False), (2, 6, True), (4, 4, True)])
def test_leep_matches_a_loop_over_the_formula(num_z, num_y, as_torch):
    r = rng(num_z)
    probs = softmax_rows(2 * r.normal(size=(40, num_z)))
    labels = r.integers(0, num_y, 40)
    want = leep_loop(probs.tolist(), labels.tolist())
    got = tr.leep(torch.tensor(probs, dtype=torch.float32) if as_torch else probs,
                  torch.tensor(labels) if as_torch else labels)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-6 if as_torch else 1e-12)
    assert tr.leep(probs[:, ::-1].copy(), labels) == pytest.approx(want, rel=1e-12)  # source classes are unordered


def test_leep_with_hard_source_labels_is_nce():
    r = rng(1)
    z, y = r.integers(0, 6, 50), r.integers(0, 4, 50)
    assert tr.leep(np.eye(6)[z], y) == pytest.approx(tr.nce(z, y), rel=1e-12)
    assert tr.leep(np.eye(3)[y % 3], y % 3) == pytest.approx(0.0, abs=1e-12)  # a perfect source


# ----------------------------------------------------------------------------- NCE
def nce_loop(z, y):
    n = len(z)
    pair, count_z = {}, {}
    for a, b in zip(z, y):
        pair[a, b] = pair.get((a, b), 0) + 1
        count_z[a] = count_z.get(a, 0) + 1
    return sum(c / n * math.log(c / count_z[a]) for (a, _), c in pair.items())


@pytest.mark.parametrize("num_z,num_y", [(7, 3), (2, 9), (5, 5)])
def test_nce_matches_a_loop_for_label_sets_of_different_sizes(num_z, num_y):
    r = rng(num_z * 10 + num_y)
    z, y = r.integers(0, num_z, 60), r.integers(0, num_y, 60)
    want = nce_loop(z.tolist(), y.tolist())
    assert tr.nce(z, y) == pytest.approx(want, rel=1e-12)
    assert tr.nce(torch.tensor(z), torch.tensor(y, dtype=torch.int32)) == pytest.approx(want, rel=1e-12)


def test_nce_is_zero_when_the_source_label_determines_the_target():
    z = np.array([0, 5, 5, 2, 0, 2, 7, 7, 7])  # unused source ids 1, 3, 4, 6 in between
    y = np.array([1, 0, 0, 1, 1, 1, 2, 2, 2])  # y = f(z), f not one-to-one
    assert tr.nce(z, y) == 0.0


def test_nce_of_independent_labels_is_minus_the_target_entropy():
    y_weights, z_weights = [1, 2, 3], [2, 1, 1, 4]  # n(y, z) = n(y) n(z) / N exactly
    pairs = [(z, y) for y, a in enumerate(y_weights) for z, b in enumerate(z_weights) for _ in range(a * b)]
    z, y = np.array(pairs).T
    p_y = np.array(y_weights) / sum(y_weights)
    assert tr.nce(z, y) == pytest.approx((p_y * np.log(p_y)).sum(), rel=1e-12)


# ----------------------------------------------------------------------------- LogME
def gaussian_log_evidence(f, y, alpha, beta):
    """log N(y; 0, I / beta + F F^T / alpha), straight from the density (numpy)."""
    cov = np.eye(len(y)) / beta + f @ f.T / alpha
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (logdet + y @ np.linalg.solve(cov, y) + len(y) * math.log(2 * math.pi))


@pytest.mark.parametrize("n,d,dead", [(15, 4, 0), (6, 9, 0), (12, 3, 2)])
def test_bayesian_evidence_is_the_log_density_of_the_marginal_gaussian(n, d, dead):
    r = rng(n + d)
    f = np.concatenate([r.normal(size=(n, d)), np.zeros((n, dead))], axis=1)
    y = r.normal(size=(n, 2))
    alpha, beta = torch.tensor([0.3, 4.0]), torch.tensor([2.0, 0.7])
    got = tr.bayesian_evidence(f, y, alpha, beta)
    want = [gaussian_log_evidence(f, y[:, k], alpha[k].item(), beta[k].item()) for k in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    one = tr.bayesian_evidence(f, y[:, 0], 0.5, 3.0)
    assert one.ndim == 0 and one.item() == pytest.approx(gaussian_log_evidence(f, y[:, 0], 0.5, 3.0), rel=1e-10)


def grid_maximum(f, y, log_alphas, log_betas):
    """Brute force: the marginal's log-density on every grid point, from one eigendecomposition of F F^T."""
    eigenvalues, q = np.linalg.eigh(f @ f.T)
    proj2 = (q.T @ y) ** 2
    a, b = np.exp(log_alphas)[:, None, None], np.exp(log_betas)[None, :, None]
    variances = 1 / b + np.clip(eigenvalues, 0, None) / a  # (A, B, N)
    values = -0.5 * (np.log(variances).sum(-1) + (proj2 / variances).sum(-1) + len(y) * math.log(2 * math.pi))
    i, j = np.unravel_index(values.argmax(), values.shape)
    return values[i, j], log_alphas[i], log_betas[j]


def test_logme_fixed_point_finds_the_maximum_of_a_brute_force_grid():
    r = rng(3)
    labels = np.arange(24) % 3
    f = r.normal(size=(24, 3)) + 0.8 * np.eye(3)[labels]
    score, alphas, betas = tr.logme(f, labels, return_params=True)
    maxima = []
    for k in range(3):
        y = (labels == k).astype(float)
        best, la, lb = grid_maximum(f, y, np.linspace(-8, 10, 361), np.linspace(-6, 8, 281))  # steps of 0.05
        best, la, lb = grid_maximum(f, y, np.linspace(la - 0.1, la + 0.1, 201), np.linspace(lb - 0.1, lb + 0.1, 201))
        evidence = gaussian_log_evidence(f, y, alphas[k].item(), betas[k].item())
        assert best - 1e-9 <= evidence <= best + 1e-5  # the fixed point is the maximum, to the grid's resolution
        assert math.log(alphas[k]) == pytest.approx(la, abs=2e-3)
        assert math.log(betas[k]) == pytest.approx(lb, abs=2e-3)
        maxima.append(evidence)
    assert score == pytest.approx(np.mean(maxima) / 24, rel=1e-10)


def test_logme_ignores_dead_features_and_feature_scale_and_prefers_informative_features():
    r = rng(4)
    labels = r.integers(0, 4, 120)
    noise = r.normal(size=(120, 6))
    informative = noise + 1.5 * np.eye(6)[labels]
    base = tr.logme(informative, labels)
    padded = np.concatenate([informative, np.zeros((120, 5))], axis=1)  # dead ReLUs: the reference code's bias
    assert tr.logme(padded, labels) == pytest.approx(base, rel=1e-8)
    assert tr.logme(1e3 * informative, labels) == pytest.approx(base, rel=1e-8)
    assert tr.logme(noise, labels) < base
    assert tr.logme(torch.tensor(informative, dtype=torch.float32), torch.tensor(labels)) == pytest.approx(base, rel=1e-5)


# ----------------------------------------------------------------------------- H-score
def h_score_numpy(f, y, shrinkage=0.0):
    cov_f = np.cov(f, rowvar=False, bias=True)
    cov_f = (1 - shrinkage) * cov_f + shrinkage * np.trace(cov_f) / f.shape[1] * np.eye(f.shape[1])
    g = np.stack([f[y == label].mean(0) for label in y])
    return np.trace(np.linalg.pinv(cov_f) @ np.cov(g, rowvar=False, bias=True))


@pytest.mark.parametrize("shrinkage", [0.0, 0.3, 1.0])
def test_h_score_matches_numpy(shrinkage):
    r = rng(5)
    y = r.integers(0, 4, 50)
    f = r.normal(size=(50, 5)) + np.eye(5)[y]
    f = np.concatenate([f, f[:, :1] * 2], axis=1)  # a redundant feature: the pseudo-inverse copes
    assert tr.h_score(f, y, shrinkage) == pytest.approx(h_score_numpy(f, y, shrinkage), rel=1e-8)


def test_h_score_of_one_feature_is_its_between_class_share_of_the_variance():
    y = np.array([0, 0, 1, 1, 1, 2])
    f = np.array([1.0, 2.0, 4.0, 5.0, 6.0, 0.0])
    means = np.array([f[y == label].mean() for label in y])
    assert tr.h_score(f[:, None], y) == pytest.approx(means.var() / f.var(), rel=1e-12)


# ----------------------------------------------------------------------------- bad input
P = softmax_rows(rng(0).normal(size=(5, 3)))
Y5 = np.array([0, 1, 2, 1, 0])
BAD_INPUTS = {
    "leep_logits_not_probs": (lambda: tr.leep(np.log(P), Y5), ValueError, "source_probs must be probabilities"),
    "leep_probs_1d": (lambda: tr.leep(P[0], Y5[:3]), ValueError, "source_probs"),
    "leep_label_count": (lambda: tr.leep(P, Y5[:4]), ValueError, r"labels must be \(N,\) with N = 5"),
    "leep_float_labels": (lambda: tr.leep(P, Y5.astype(float)), TypeError, "labels must be integer"),
    "nce_negative_label": (lambda: tr.nce(np.array([0, -1, 2]), np.array([0, 1, 1])), ValueError, "source_labels"),
    "nce_2d_source": (lambda: tr.nce(P, Y5), ValueError, "source_labels"),
    "nce_length_mismatch": (lambda: tr.nce(Y5, Y5[:3]), ValueError, "target_labels"),
    "logme_nan_features": (lambda: tr.logme(np.full((5, 2), np.nan), Y5), ValueError, "features contains NaN"),
    "logme_one_example": (lambda: tr.logme(P[:1], Y5[:1]), ValueError, "features"),
    "logme_string": (lambda: tr.logme("features.npy", Y5), TypeError, "features"),
    "logme_zero_features": (lambda: tr.logme(np.zeros((5, 3)), Y5), ValueError, "features are all zero"),
    "evidence_alpha_zero": (lambda: tr.bayesian_evidence(P, Y5, 0.0, 1.0), ValueError, "alpha"),
    "h_score_shrinkage": (lambda: tr.h_score(P, Y5, shrinkage=1.5), ValueError, "shrinkage"),
    "h_score_3d": (lambda: tr.h_score(P[None], Y5), ValueError, "features"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
