"""Tests of tlbook.adapt against independent computations: double sums over pairs, numpy.cov, loops
over the definitions, NumPy versions of the papers' code, and a hand-written forward pass for AdaBN.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl
from tlbook import adapt


def randn(seed, *shape, scale=1.0, dtype=torch.float64):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- gradient reversal and schedules
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, torch.tensor(0.7), torch.tensor(2.0, dtype=torch.float64)])
def test_grad_reverse_is_identity_forward_and_minus_lambda_backward(lam):
    x = randn(0, 4, 3).requires_grad_()
    upstream = randn(1, 4, 3)
    y = adapt.grad_reverse(x, lam)
    torch.testing.assert_close(y, x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -float(lam) * upstream)


def test_grad_reverse_inside_a_network_flips_only_the_layers_below():
    w_below, w_above = randn(2, 3, 3).requires_grad_(), randn(3, 3, 1).requires_grad_()
    x = randn(4, 5, 3)
    (torch.tanh(adapt.grad_reverse(x @ w_below, 0.5)) @ w_above).sum().backward()
    g_below, g_above = w_below.grad.clone(), w_above.grad.clone()
    w_below.grad = w_above.grad = None
    (torch.tanh(x @ w_below) @ w_above).sum().backward()
    torch.testing.assert_close(g_below, -0.5 * w_below.grad)
    torch.testing.assert_close(g_above, w_above.grad)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_dann_schedules_match_the_paper_formulas(p):
    assert adapt.dann_lambda(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1, rel=1e-12, abs=1e-15)
    assert adapt.dann_lambda(p, gamma=3.0) == pytest.approx(math.tanh(1.5 * p), rel=1e-12, abs=1e-15)
    assert adapt.dann_lr(p) == pytest.approx(0.01 / (1 + 10 * p) ** 0.75, rel=1e-12)
    assert adapt.dann_lr(p, lr0=0.1, alpha=1.0, beta=1.0) == pytest.approx(0.1 / (1 + p), rel=1e-12)
    assert adapt.dann_lambda(0.0) == 0.0 and adapt.dann_lr(0.0, lr0=0.3) == 0.3


# ----------------------------------------------------------------------------- MMD and CORAL
def mmd_double_sum(s, t, kernel_mul=2.0, kernel_num=5, bandwidth=None):
    """Biased MMD^2 by explicit loops over all pairs of points, in float64."""
    s, t = s.tolist(), t.tolist()
    pooled = s + t
    sq = lambda a, b: sum((ai - bi) ** 2 for ai, bi in zip(a, b))
    n = len(pooled)
    if bandwidth is None:
        bandwidth = sum(sq(a, b) for i, a in enumerate(pooled) for j, b in enumerate(pooled) if i != j) / (n * n - n)
    widths = [bandwidth * kernel_mul ** (i - kernel_num // 2) for i in range(kernel_num)]
    k = lambda a, b: sum(math.exp(-sq(a, b) / w) for w in widths)
    mean_k = lambda xs, ys: sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    return mean_k(s, s) + mean_k(t, t) - 2 * mean_k(s, t)


@pytest.mark.parametrize("kernel_mul,kernel_num,bandwidth", [(2.0, 5, None), (2.0, 1, None), (1.5, 4, None), (2.0, 3, 0.7)])
def test_mmd_matches_a_double_sum(kernel_mul, kernel_num, bandwidth):
    s, t = randn(0, 6, 3), randn(1, 5, 3) + 0.5
    got = adapt.mmd(s, t, kernel_mul=kernel_mul, kernel_num=kernel_num, bandwidth=bandwidth)
    want = mmd_double_sum(s, t, kernel_mul, kernel_num, bandwidth)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_mmd_is_zero_for_equal_samples_and_grows_with_the_shift():
    x = randn(2, 8, 4)
    assert adapt.mmd(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert adapt.mmd(x[:1], x[:1].clone()).item() == pytest.approx(0.0, abs=1e-12)  # one point each: distance 0
    values = [adapt.mmd(x, randn(3, 8, 4) + shift, bandwidth=4.0).item() for shift in (0.0, 1.0, 3.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_mmd_bandwidth_is_a_constant_for_the_gradient():
    s, t = randn(4, 5, 2).requires_grad_(), randn(5, 4, 2)
    (grad,) = torch.autograd.grad(adapt.mmd(s, t), s)
    with torch.no_grad():
        pooled = torch.cat([s, t])
        b = torch.cdist(pooled, pooled).pow(2).sum() / (9 * 9 - 9)
    (want,) = torch.autograd.grad(adapt.mmd(s, t, bandwidth=b.item()), s)
    torch.testing.assert_close(grad, want)


def test_coral_matches_numpy_cov():
    s, t = randn(6, 20, 5), randn(7, 13, 5, scale=2.0)
    c_s, c_t = np.cov(s.numpy(), rowvar=False), np.cov(t.numpy(), rowvar=False)
    want = ((c_s - c_t) ** 2).sum() / (4 * 5**2)
    assert adapt.coral(s, t).item() == pytest.approx(want, rel=1e-12)
    assert adapt.coral(s, s + 3.0).item() == pytest.approx(0.0, abs=1e-12)  # a shift of the mean is invisible


@pytest.mark.parametrize("loss", ["mmd", "coral", "snd", "entropy", "information_maximization"])
def test_losses_compute_in_float32_under_autocast(loss):
    a, b = randn(8, 16, 12, scale=3, dtype=torch.float32), randn(9, 16, 12, scale=3, dtype=torch.float32)
    fn = getattr(adapt, loss)
    args = (a, b) if loss in ("mmd", "coral") else (a,)
    want = fn(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(*args)
        half = fn(*(x.bfloat16() for x in args))
    assert got.dtype == torch.float32 and half.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(half, fn(*(x.bfloat16().float() for x in args)), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- prediction-based losses
def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_entropy_and_information_maximization_match_loops():
    z = randn(10, 7, 4, scale=2.0)
    p = softmax_rows(z.numpy())
    entropies = [-sum(pk * math.log(pk) for pk in row) for row in p]
    mean_p = [sum(p[i, k] for i in range(7)) / 7 for k in range(4)]
    h_mean = -sum(q * math.log(q) for q in mean_p)
    assert adapt.entropy(z).item() == pytest.approx(sum(entropies) / 7, rel=1e-12)
    im = adapt.information_maximization(z).item()
    assert im == pytest.approx(sum(entropies) / 7 - h_mean, rel=1e-12)
    assert -math.log(4) <= im <= 0  # minus a mutual information


def test_information_maximization_extremes():
    confident_and_diverse = 50.0 * torch.eye(4, dtype=torch.float64)
    assert adapt.information_maximization(confident_and_diverse).item() == pytest.approx(-math.log(4), abs=1e-9)
    collapsed = 50.0 * torch.eye(4, dtype=torch.float64)[[0, 0, 0, 0]]
    assert adapt.information_maximization(collapsed).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_snd_matches_a_loop_over_the_definition(temperature):
    z = randn(11, 6, 5, scale=3.0)
    p = softmax_rows(z.numpy())
    p = p / np.sqrt((p**2).sum(axis=1, keepdims=True))
    total = 0.0
    for i in range(6):
        scores = [float(p[i] @ p[j]) / temperature for j in range(6) if j != i]
        top = max(scores)
        norm = sum(math.exp(s - top) for s in scores)
        probs = [math.exp(s - top) / norm for s in scores]
        total += -sum(q * math.log(q) for q in probs)
    assert adapt.snd(z, temperature).item() == pytest.approx(total / 6, rel=1e-10)


# ----------------------------------------------------------------------------- validation criteria
def dev_numpy(losses, weights):
    """get_dev_risk of the DEV authors' code (thuml/Deep-Embedded-Validation), with np.cov."""
    w, l = weights.reshape(-1, 1), losses.reshape(-1, 1)
    weighted = w * l
    cov = np.cov(np.concatenate((weighted, w), axis=1), rowvar=False)[0][1]
    eta = -cov / np.var(w, ddof=1)
    return np.mean(weighted) + eta * np.mean(w) - eta


def test_dev_risk_matches_numpy_and_handles_equal_weights():
    rng = np.random.default_rng(0)
    losses, weights = rng.exponential(size=40), rng.gamma(2.0, 0.5, size=40)
    assert adapt.dev_risk(torch.from_numpy(losses), torch.from_numpy(weights)).item() == pytest.approx(
        dev_numpy(losses, weights), rel=1e-12)
    assert adapt.dev_risk(losses, weights).item() == pytest.approx(dev_numpy(losses, weights), rel=1e-12)
    equal = np.full(40, 0.1)  # no spread: eta = 0, the plain importance-weighted mean
    assert adapt.dev_risk(losses, equal).item() == pytest.approx(np.mean(0.1 * losses), rel=1e-12)


def test_proxy_a_distance():
    assert adapt.proxy_a_distance(0.5) == 0.0 and adapt.proxy_a_distance(0.0) == 2.0
    assert adapt.proxy_a_distance(0.1) == pytest.approx(1.6)
    torch.testing.assert_close(adapt.proxy_a_distance(torch.tensor([0.25, 1.0])), torch.tensor([1.0, -2.0]))


# ----------------------------------------------------------------------------- AdaBN
def bn_model(seed=0):
    model = tl.make_model("cnn", widths=(4, 8), seed=seed).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # affine parameters and stale statistics that matter
                m.weight.copy_(randn(seed + 1, m.num_features).abs() + 0.5)
                m.bias.copy_(randn(seed + 2, m.num_features))
                m.running_mean.fill_(5.0)
                m.running_var.fill_(9.0)
    return model


def images(n, seed=3):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mean_and_unbiased_var(x):
    """Per-channel statistics of (N, C, H, W) over N, H, W, by moving the channel axis first."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    mean = flat.mean(1)
    return mean, ((flat - mean[:, None]) ** 2).sum(1) / (flat.shape[1] - 1)


def layer_inputs(model, x, batch_size, frozen_first=False):
    """Inputs of the two BatchNorm layers, written out: batches normalised by their own statistics."""
    conv1, bn1 = model.body.block1[0], model.body.block1[1]
    inputs1, inputs2 = [], []
    for batch in x.split(batch_size):
        h = F.conv2d(batch, conv1.weight, padding=1)
        inputs1.append(h)
        if frozen_first:
            mean, var = bn1.running_mean.view(1, -1, 1, 1), bn1.running_var.view(1, -1, 1, 1)
        else:
            mean = h.mean((0, 2, 3), keepdim=True)
            var = ((h - mean) ** 2).mean((0, 2, 3), keepdim=True)  # biased, as BatchNorm normalises
        h = (h - mean) / torch.sqrt(var + bn1.eps) * bn1.weight.view(1, -1, 1, 1) + bn1.bias.view(1, -1, 1, 1)
        h = F.max_pool2d(torch.relu(h), 2)
        inputs2.append(F.conv2d(h, model.body.block2[0].weight, padding=1))
    return torch.cat(inputs1), torch.cat(inputs2)


def test_recompute_batchnorm_gives_each_layers_mean_and_unbiased_variance():
    model, x = bn_model(), images(48)
    want1, want2 = layer_inputs(model, x, 16)
    model.train()
    assert adapt.recompute_batchnorm(model, x, batch_size=16) is model
    assert model.training
    for bn, inputs in ((model.body.block1[1], want1), (model.body.block2[1], want2)):
        mean, var = mean_and_unbiased_var(inputs)
        torch.testing.assert_close(bn.running_mean, mean)
        torch.testing.assert_close(bn.running_var, var)
        assert bn.num_batches_tracked.item() == 3


def test_recompute_batchnorm_weighs_uneven_batches_exactly_and_matches_update_bn_on_one_batch():
    model, x = bn_model(), images(50)
    adapt.recompute_batchnorm(model.eval(), x, batch_size=16)  # 3 batches of 17, 17, 16 examples
    assert not any(m.training for m in model.modules())
    mean, var = mean_and_unbiased_var(F.conv2d(x, model.body.block1[0].weight, padding=1))
    torch.testing.assert_close(model.body.block1[1].running_mean, mean)
    torch.testing.assert_close(model.body.block1[1].running_var, var)
    ours, theirs = bn_model().float(), bn_model().float()
    data = tl.ImageData(x.float(), torch.zeros(50, dtype=torch.long), classes=("a",), name="target").unlabelled()
    adapt.recompute_batchnorm(ours, data, batch_size=64)
    torch.optim.swa_utils.update_bn([x.float()], theirs)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_recompute_batchnorm_leaves_frozen_layers_and_models_without_batchnorm_alone():
    model, x = bn_model(), images(32)
    tl.freeze(model, "block1")
    model.train()
    bn1, bn2 = model.body.block1[1], model.body.block2[1]
    before = {k: v.clone() for k, v in bn1.state_dict().items()}
    _, want2 = layer_inputs(model, x, 32, frozen_first=True)
    adapt.recompute_batchnorm(model, x, batch_size=32)
    for k, v in bn1.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    mean, var = mean_and_unbiased_var(want2)
    torch.testing.assert_close(bn2.running_mean, mean)
    torch.testing.assert_close(bn2.running_var, var)
    assert model.training and bn2.training and not bn1.training  # modes restored, frozen BN still in eval
    mlp = tl.make_model("mlp", hidden=(8,), seed=0)
    state = {k: v.clone() for k, v in mlp.state_dict().items()}
    adapt.recompute_batchnorm(mlp, images(4).float())
    assert all(torch.equal(v, state[k]) for k, v in mlp.state_dict().items())


def test_adda_losses_match_the_log_sigmoid_formulas():
    s, t, t_enc = randn(0, 7).double() * 3, randn(1, 5).double() * 3, randn(2, 5).double()
    sig = lambda z: 1 / (1 + np.exp(-z.numpy()))  # noqa: E731
    want_d = -np.log(sig(s)).mean() - np.log(1 - sig(t)).mean()
    d, m = adapt.adda_losses(s, t)
    np.testing.assert_allclose(d.item(), want_d, rtol=1e-12)
    np.testing.assert_allclose(m.item(), -np.log(sig(t)).mean(), rtol=1e-12)   # inverted labels: target as source
    _, m_enc = adapt.adda_losses(s, t, t_enc)
    np.testing.assert_allclose(m_enc.item(), -np.log(sig(t_enc)).mean(), rtol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d16, _ = adapt.adda_losses(s.float().bfloat16(), t.float().bfloat16())
    assert d16.dtype == torch.float32


# ----------------------------------------------------------------------------- bad input
X = randn(0, 4, 3)
BAD_INPUTS = {
    "lam_negative": (lambda: adapt.grad_reverse(X, -1.0), ValueError, "lam"),
    "lam_vector": (lambda: adapt.grad_reverse(X, torch.ones(2)), ValueError, "lam"),
    "lam_string": (lambda: adapt.grad_reverse(X, "big"), TypeError, "lam"),
    "progress_above_one": (lambda: adapt.dann_lambda(1.5), ValueError, "progress"),
    "gamma_zero": (lambda: adapt.dann_lambda(0.5, gamma=0), ValueError, "gamma"),
    "lr0_zero": (lambda: adapt.dann_lr(0.5, lr0=0.0), ValueError, "lr0"),
    "mmd_width_mismatch": (lambda: adapt.mmd(X, randn(1, 4, 5)), ValueError, r"source and target.*\(4, 3\) and \(4, 5\)"),
    "mmd_source_1d": (lambda: adapt.mmd(X[0], X), ValueError, "source"),
    "mmd_kernel_num_zero": (lambda: adapt.mmd(X, X, kernel_num=0), ValueError, "kernel_num"),
    "mmd_bandwidth_negative": (lambda: adapt.mmd(X, X, bandwidth=-1.0), ValueError, "bandwidth"),
    "mmd_kernel_mul_zero": (lambda: adapt.mmd(X, X, kernel_mul=0.0), ValueError, "kernel_mul"),
    "coral_one_row": (lambda: adapt.coral(X[:1], X), ValueError, "source"),
    "coral_width_mismatch": (lambda: adapt.coral(X, randn(1, 4, 2)), ValueError, r"\(4, 3\) and \(4, 2\)"),
    "entropy_1d": (lambda: adapt.entropy(X[0]), ValueError, "logits"),
    "im_not_tensor": (lambda: adapt.information_maximization([[0.0, 1.0]]), TypeError, "logits"),
    "snd_temperature_zero": (lambda: adapt.snd(X, temperature=0.0), ValueError, "temperature"),
    "snd_one_row": (lambda: adapt.snd(X[:1]), ValueError, "logits"),
    "dev_shape_mismatch": (lambda: adapt.dev_risk(torch.ones(5), torch.ones(4)), ValueError, r"losses and weights.*\(5,\) and \(4,\)"),
    "dev_negative_weight": (lambda: adapt.dev_risk(torch.ones(3), torch.tensor([1.0, -1.0, 1.0])), ValueError, "weights"),
    "dev_nan_loss": (lambda: adapt.dev_risk(torch.tensor([1.0, math.nan]), torch.ones(2)), ValueError, "losses"),
    "pad_error_above_one": (lambda: adapt.proxy_a_distance(1.2), ValueError, "domain_error"),
    "adabn_batch_size_one": (lambda: adapt.recompute_batchnorm(bn_model(), images(4), batch_size=1), ValueError, "batch_size"),
    "adabn_data_list": (lambda: adapt.recompute_batchnorm(bn_model(), [images(4)]), TypeError, "data"),
    "adabn_data_nan": (lambda: adapt.recompute_batchnorm(bn_model(), images(4) * math.nan), ValueError, "data"),
    "adabn_one_example": (lambda: adapt.recompute_batchnorm(bn_model(), images(1)), ValueError, "data"),
    "adda_2d_scores": (lambda: adapt.adda_losses(randn(0, 4, 1), randn(1, 4)), ValueError, "source_scores"),
    "adda_not_tensor": (lambda: adapt.adda_losses(randn(0, 4), [0.0]), TypeError, "target_scores"),
    "adabn_not_a_model": (lambda: adapt.recompute_batchnorm("model", images(4)), TypeError, "model"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
