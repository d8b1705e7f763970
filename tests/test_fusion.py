"""Tests of tlbook.fusion against independent computations: loops over parameters, a stub score with a
known optimum, explicit loops over members and bins, a hand-written convolution for BatchNorm
statistics, and brute force over all permutations.
"""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tlbook as tl
from tlbook import adapt, fusion


def mlps(count, hidden=(16, 8), double=True):
    models = [tl.make_model("mlp", hidden=hidden, seed=s) for s in range(count)]
    return [m.double() for m in models] if double else models


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- weight averaging
def test_average_weights_matches_a_loop_over_parameters_and_leaves_inputs_alone():
    models, weights = mlps(3), [0.2, 0.5, 0.3]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    soup = fusion.average_weights(models, weights)
    for name, param in soup.named_parameters():
        want = sum(w * dict(m.named_parameters())[name].detach() for w, m in zip(weights, models))
        torch.testing.assert_close(param.detach(), want, rtol=1e-14, atol=1e-14)
    assert soup is not models[0]
    for m, state in zip(models, before):
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())


def test_average_of_copies_and_weights_one_zero_are_exact():
    a, b = mlps(2, double=False)
    assert same_state(fusion.average_weights([a, a, a]), a)
    assert same_state(fusion.average_weights([a, b], [1.0, 0.0]), a)
    assert same_state(fusion.interpolate(a, b, 0.0), a)
    assert same_state(fusion.interpolate(a, b, 1.0), b)
    mid = fusion.interpolate(a.double(), b.double(), 0.25)
    for (name, p), q, r in zip(mid.named_parameters(), a.parameters(), b.parameters()):
        torch.testing.assert_close(p, 0.75 * q + 0.25 * r)


def cnns(count):
    models = [tl.make_model("cnn", widths=(4, 8), seed=s).double() for s in range(count)]
    for i, m in enumerate(models):
        for bn in (m.body.block1[1], m.body.block2[1]):
            bn.num_batches_tracked.fill_(10 * (i + 1))
            bn.running_mean.fill_(float(i))
    return models


def test_average_weights_copies_integer_buffers_and_recomputes_batchnorm_on_bn_data():
    models = cnns(2)
    x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = fusion.average_weights(models)
    bn1 = plain.body.block1[1]
    assert bn1.num_batches_tracked.item() == 10  # from the first model, not averaged
    torch.testing.assert_close(bn1.running_mean, torch.full((4,), 0.5, dtype=torch.float64))  # average of statistics
    soup = fusion.average_weights(models, bn_data=x)
    averaged_conv = (models[0].body.block1[0].weight + models[1].body.block1[0].weight) / 2
    inputs = F.conv2d(x, averaged_conv, padding=1).transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(soup.body.block1[1].running_mean, inputs.mean(1))
    torch.testing.assert_close(soup.body.block1[1].running_var, inputs.var(1, unbiased=True))
    for name, p in soup.named_parameters():
        torch.testing.assert_close(p, dict(plain.named_parameters())[name], rtol=0, atol=0)


# ----------------------------------------------------------------------------- greedy soup
def scalar_models(values):
    models = []
    for v in values:
        m = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            m.weight.fill_(v)
        models.append(m)
    return models


def test_greedy_soup_follows_recipe_one_on_a_stub_score():
    # score = -(w - 0)^2: the best soup averages ingredients on both sides of 0.
    values = [1.0, -1.0, 0.9, 5.0, 0.9]
    calls = []

    def score(model):
        calls.append(1)
        return -model.weight.item() ** 2

    soup, chosen, history = fusion.greedy_soup(scalar_models(values), score)
    # By hand: order by own score 2, 4, 0, 1, 3 (ties keep index order). Soup {0.9}: -0.81;
    # + 0.9 -> 0.9, -0.81, kept (not worse); + 1.0 -> 0.933, worse; + -1.0 -> 0.267, better; + 5.0 -> 1.45, worse.
    assert chosen == [2, 4, 1]
    assert [h["index"] for h in history] == [2, 4, 0, 1, 3]
    assert [h["added"] for h in history] == [True, True, False, True, False]
    assert soup.weight.item() == pytest.approx((0.9 + 0.9 - 1.0) / 3, rel=1e-6)
    assert history[3]["soup_score"] == pytest.approx(-((0.8 / 3) ** 2), rel=1e-5)
    assert history[1]["ingredient_score"] == pytest.approx(-0.81, rel=1e-6)
    assert len(calls) == 2 * len(values) - 1


def test_greedy_soup_recomputes_batchnorm_of_each_candidate():
    models = cnns(2)
    x = torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    soup, chosen, _ = fusion.greedy_soup(models, lambda m: 1.0, bn_data=x)  # every soup is "as good": all added
    assert chosen == [0, 1]
    want = adapt.recompute_batchnorm(fusion.average_weights(models), x)
    assert all(torch.allclose(u, v) for u, v in zip(soup.state_dict().values(), want.state_dict().values()))


# ----------------------------------------------------------------------------- ensembles
@pytest.mark.parametrize("shape,weights", [((5, 20), None), ((4, 10, 3), [0.1, 0.2, 0.3, 0.4])])
def test_ambiguity_decomposition_is_exact_and_matches_a_loop(shape, weights):
    gen = torch.Generator().manual_seed(0)
    preds = torch.randn(*shape, generator=gen, dtype=torch.float64)
    targets = torch.randn(*shape[1:], generator=gen, dtype=torch.float64)
    out = fusion.ambiguity_decomposition(preds, targets, weights)
    torch.testing.assert_close(out["ensemble_error"], out["mean_member_error"] - out["ambiguity"], rtol=1e-12, atol=1e-12)
    m, n = shape[:2]
    w = weights or [1 / m] * m
    p, y = preds.reshape(m, n, -1).tolist(), targets.reshape(n, -1).tolist()
    sq = lambda u, v: sum((ui - vi) ** 2 for ui, vi in zip(u, v))
    ens = [[sum(w[k] * p[k][i][j] for k in range(m)) for j in range(len(y[i]))] for i in range(n)]
    member = [sum(sq(p[k][i], y[i]) for i in range(n)) / n for k in range(m)]
    assert out["ensemble_error"].item() == pytest.approx(sum(sq(ens[i], y[i]) for i in range(n)) / n, rel=1e-12)
    assert out["mean_member_error"].item() == pytest.approx(sum(wk * e for wk, e in zip(w, member)), rel=1e-12)
    ambiguity = sum(w[k] * sum(sq(p[k][i], ens[i]) for i in range(n)) / n for k in range(m))
    assert out["ambiguity"].item() == pytest.approx(ambiguity, rel=1e-12)
    torch.testing.assert_close(out["member_errors"], torch.tensor(member, dtype=torch.float64))


# ----------------------------------------------------------------------------- calibration
def bins_by_loop(probs, labels, bins):
    conf = [max(row) for row in probs.tolist()]
    pred = [row.index(max(row)) for row in probs.tolist()]
    out = []
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        members = [i for i, c in enumerate(conf) if lo < c <= hi]
        acc = sum(pred[i] == int(labels[i]) for i in members) / len(members) if members else math.nan
        mean_conf = sum(conf[i] for i in members) / len(members) if members else math.nan
        out.append((len(members), mean_conf, acc))
    return out


@pytest.mark.parametrize("bins", [1, 5, 15])
def test_reliability_bins_and_ece_match_a_loop(bins):
    gen = torch.Generator().manual_seed(bins)
    probs = torch.softmax(2 * torch.randn(300, 4, generator=gen, dtype=torch.float64), 1)
    labels = torch.randint(0, 4, (300,), generator=gen)
    got = fusion.reliability_bins(probs, labels, bins)
    want = bins_by_loop(probs, labels, bins)
    assert got["count"].tolist() == [c for c, _, _ in want]
    torch.testing.assert_close(got["confidence"], torch.tensor([c for _, c, _ in want], dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(got["accuracy"], torch.tensor([a for _, _, a in want], dtype=torch.float64), equal_nan=True)
    ece = sum(c / 300 * abs(a - conf) for c, conf, a in want if c)
    assert fusion.expected_calibration_error(probs, labels, bins).item() == pytest.approx(ece, rel=1e-12, abs=1e-15)


def test_ece_bin_edges_and_perfect_confidence():
    probs = torch.tensor([[0.2] * 5, [0.6, 0.4, 0, 0, 0], [1.0, 0, 0, 0, 0]], dtype=torch.float64)
    got = fusion.reliability_bins(probs, torch.tensor([0, 1, 0]), bins=5)
    assert got["count"].tolist() == [1, 0, 1, 0, 1]  # (0, 0.2], (0.4, 0.6], (0.8, 1]: right-closed bins
    assert fusion.expected_calibration_error(torch.eye(3), torch.arange(3)).item() == 0.0


# ----------------------------------------------------------------------------- permutation alignment
def outputs(model, seed=5):
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return model.eval()(x)


def random_perms(widths, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(w, generator=gen) for w in widths]


def test_permute_hidden_keeps_the_function_and_matching_recovers_a_known_permutation():
    model = tl.make_model("mlp", hidden=(32, 24, 16), seed=0).double()
    perms = random_perms((32, 24, 16), seed=1)
    shuffled = fusion.permute_hidden(model, perms)
    assert not same_state(shuffled, model)
    torch.testing.assert_close(outputs(shuffled), outputs(model))
    found = fusion.weight_matching(model, shuffled)
    assert [p.tolist() for p in found] == [torch.argsort(p).tolist() for p in perms]
    assert all(torch.equal(u, v) for u, v in zip(fusion.permute_hidden(shuffled, found).state_dict().values(),
                                                  model.state_dict().values()))


def test_weight_matching_a_model_to_itself_gives_identity_and_is_deterministic():
    a, b = mlps(2, hidden=(20, 12))
    assert [p.tolist() for p in fusion.weight_matching(a, a)] == [list(range(20)), list(range(12))]
    first, second = fusion.weight_matching(a, b), fusion.weight_matching(a, b)
    assert [p.tolist() for p in first] == [p.tolist() for p in second]
    aligned = fusion.permute_hidden(b, first)
    torch.testing.assert_close(outputs(aligned), outputs(b))
    agreement = lambda m: sum((p * q).sum() for p, q in zip(a.parameters(), m.parameters())).item()
    assert agreement(aligned) > agreement(b)


def test_weight_matching_with_one_hidden_layer_is_the_best_of_all_permutations():
    a, b = [tl.make_model("mlp", hidden=(5,), image_size=3, seed=s).double() for s in (3, 4)]
    (found,) = fusion.weight_matching(a, b)
    agreement = lambda m: sum((p * q).sum() for p, q in zip(a.parameters(), m.parameters())).item()
    scores = {perm: agreement(fusion.permute_hidden(b, [list(perm)])) for perm in itertools.permutations(range(5))}
    assert tuple(found.tolist()) == max(scores, key=scores.get)


# ----------------------------------------------------------------------------- bad input
A, B = mlps(2, hidden=(8, 8))
CNN = tl.make_model("cnn", widths=(4, 8))
P = torch.full((4, 3), 1 / 3)
BAD_INPUTS = {
    "models_not_a_list": (lambda: fusion.average_weights(A), TypeError, "models"),
    "models_empty": (lambda: fusion.average_weights([]), ValueError, "models"),
    "weights_negative": (lambda: fusion.average_weights([A, B], [1.5, -0.5]), ValueError, "weights"),
    "weights_sum": (lambda: fusion.average_weights([A, B], [0.5, 0.6]), ValueError, "weights"),
    "weights_length": (lambda: fusion.average_weights([A, B], [1.0]), ValueError, "weights"),
    "models_different_keys": (lambda: fusion.average_weights([A, CNN]), ValueError, r"models\[1\]"),
    "models_different_shapes": (lambda: fusion.average_weights([A, mlps(1, hidden=(8, 4))[0]]), ValueError,
                                r"models\[0\] and models\[1\] differ at 'body.block2.0.weight': \(8, 8\)"),
    "alpha_outside": (lambda: fusion.interpolate(A, B, 1.5), ValueError, "alpha"),
    "score_not_callable": (lambda: fusion.greedy_soup([A, B], 0.9), TypeError, "score"),
    "score_nan": (lambda: fusion.greedy_soup([A, B], lambda m: math.nan), ValueError, "score"),
    "ambiguity_shapes": (lambda: fusion.ambiguity_decomposition(torch.ones(3, 5), torch.ones(4)), ValueError,
                         r"member_predictions.*targets.*\(3, 5\) and \(4,\)"),
    "ambiguity_weights": (lambda: fusion.ambiguity_decomposition(torch.ones(3, 5), torch.ones(5), [1, 0]), ValueError, "weights"),
    "ambiguity_nan": (lambda: fusion.ambiguity_decomposition(torch.ones(3, 5) * math.nan, torch.ones(5)), ValueError, "member_predictions"),
    "ece_logits": (lambda: fusion.expected_calibration_error(P * 3, torch.zeros(4, dtype=torch.long)), ValueError, "probs"),
    "ece_labels_shape": (lambda: fusion.expected_calibration_error(P, torch.zeros(3, dtype=torch.long)), ValueError, "labels"),
    "ece_labels_range": (lambda: fusion.expected_calibration_error(P, torch.full((4,), 3)), ValueError, "labels"),
    "ece_bins_zero": (lambda: fusion.reliability_bins(P, torch.zeros(4, dtype=torch.long), bins=0), ValueError, "bins"),
    "matching_cnn": (lambda: fusion.weight_matching(CNN, CNN), ValueError, "model_a is not an MLP.*Conv2d.*BatchNorm"),
    "matching_sizes": (lambda: fusion.weight_matching(A, mlps(1, hidden=(8, 4))[0]), ValueError, "model_a and model_b.*sizes"),
    "permute_count": (lambda: fusion.permute_hidden(A, [torch.arange(8)]), ValueError, "perms"),
    "permute_not_a_permutation": (lambda: fusion.permute_hidden(A, [torch.zeros(8, dtype=torch.long), torch.arange(8)]),
                                  ValueError, r"perms\[0\]"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
