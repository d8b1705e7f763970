"""Tests of tlbook.continual against independent computations: per-example gradients computed one
example (and one label) at a time for the Fisher, and a loop over parameters for the EWC penalty.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl
from tlbook import continual as cl


def rng(seed):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- EWC
def small_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()


def fisher_loop(model, x, y=None):
    """Per-example gradients, one example (and one label) at a time."""
    sums = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(x)):
        log_p = F.log_softmax(model(x[i:i + 1]), dim=1)[0]
        labels = [(y[i].item(), 1.0)] if y is not None else [(k, log_p[k].exp().item()) for k in range(len(log_p))]
        for label, weight in labels:
            grads = torch.autograd.grad(log_p[label], list(model.parameters()), retain_graph=True)
            for (name, _), g in zip(model.named_parameters(), grads):
                sums[name] += weight * g.pow(2)
    return {name: s / len(x) for name, s in sums.items()}


@pytest.mark.parametrize("mode", ["empirical", "expected"])
def test_fisher_matches_per_example_gradients_one_by_one(mode):
    model, x = small_net(), torch.tensor(rng(8).normal(size=(7, 3)))
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    data = [(x[:4], y[:4]), (x[4:], y[4:])] if mode == "empirical" else x
    got = cl.diagonal_fisher(model, data, mode=mode, batch_size=3)
    want = fisher_loop(model, x, y if mode == "empirical" else None)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-14)


def test_sampled_fisher_is_seeded_and_averages_to_the_expected_fisher():
    model, x = small_net(1), torch.tensor(rng(9).normal(size=(3, 3)))
    many = x.repeat(1500, 1)
    sampled = cl.diagonal_fisher(model, many, batch_size=1500, seed=2)
    expected = cl.diagonal_fisher(model, x, mode="expected")
    for name in expected:
        torch.testing.assert_close(sampled[name], expected[name], rtol=0.1, atol=1e-3)
    again = cl.diagonal_fisher(model, many[:30], seed=2)
    assert all(torch.equal(again[n], cl.diagonal_fisher(model, many[:30], seed=2)[n]) for n in again)


def test_fisher_on_a_book_model_and_image_data_restores_modes_and_statistics():
    model = tl.make_model("cnn", widths=(4, 8), seed=0)
    tl.freeze(model, model.block_names[:1])
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    data = tl.ImageData(images, torch.tensor([0, 1, 2, 3, 4, 5]), [str(k) for k in range(10)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    fisher = cl.diagonal_fisher(model, data, batch_size=4)
    assert set(fisher) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(fisher[n].shape == p.shape and bool((fisher[n] >= 0).all()) for n, p in model.named_parameters() if n in fisher)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    empirical = cl.diagonal_fisher(model, data, mode="empirical")
    assert empirical.keys() == fisher.keys()


def test_ewc_penalty_matches_a_loop_over_parameters_and_its_gradient():
    model, old = small_net(2), small_net(3)
    r = rng(10)
    fisher = {n: torch.tensor(r.random(p.shape)) for n, p in model.named_parameters()}
    anchor = {n: p.detach().clone() for n, p in old.named_parameters()}
    want = 0.0
    for name, p in model.named_parameters():
        for f_i, theta_i, star_i in zip(fisher[name].flatten().tolist(), p.flatten().tolist(), anchor[name].flatten().tolist()):
            want += f_i * (theta_i - star_i) ** 2
    penalty = cl.ewc_penalty(model, fisher, anchor, lam=3.0)
    assert penalty.ndim == 0 and penalty.item() == pytest.approx(1.5 * want, rel=1e-12)
    assert cl.ewc_penalty(model, fisher, old, lam=3.0).item() == pytest.approx(1.5 * want, rel=1e-12)
    penalty.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 3.0 * fisher[name] * (p.detach() - anchor[name]))
    assert cl.ewc_penalty(model, fisher, model, lam=100.0).item() == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bfloat16 weights, float32 sums
        low = cl.ewc_penalty(small_net(2).bfloat16(), {n: f.float() for n, f in fisher.items()}, old.float(), lam=3.0)
    assert low.dtype == torch.float32 and low.item() == pytest.approx(1.5 * want, rel=2e-2)


# ----------------------------------------------------------------------------- bad input
NET, X2 = small_net(), torch.zeros(2, 3, dtype=torch.float64)
FISHER = {n: torch.ones_like(p) for n, p in NET.named_parameters()}
BAD_INPUTS = {
    "fisher_mode": (lambda: cl.diagonal_fisher(NET, X2, mode="emprical"), ValueError, "mode.*'empirical'"),
    "fisher_no_labels": (lambda: cl.diagonal_fisher(NET, X2, mode="empirical"), ValueError, "data has no labels"),
    "fisher_not_a_model": (lambda: cl.diagonal_fisher(lambda x: x, torch.zeros(2, 3)), TypeError, "model"),
    "fisher_batch_size": (lambda: cl.diagonal_fisher(NET, torch.zeros(2, 3), batch_size=0), ValueError, "batch_size"),
    "ewc_lam_negative": (lambda: cl.ewc_penalty(NET, FISHER, NET, lam=-1.0), ValueError, "lam"),
    "ewc_unknown_parameter": (lambda: cl.ewc_penalty(NET, {"body.0.weight": torch.ones(1)}, NET), ValueError,
                              "fisher has an entry 'body.0.weight'"),
    "ewc_anchor_shape": (lambda: cl.ewc_penalty(NET, FISHER, {n: torch.ones(2) for n in FISHER}), ValueError, "anchor"),
    "ewc_fisher_list": (lambda: cl.ewc_penalty(NET, [1.0], NET), TypeError, "fisher"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
