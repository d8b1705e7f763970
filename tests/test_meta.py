"""Tests of tlbook.meta: episodes against their definition (distinct classes, disjoint support and query,
one class per label, seeding), the evaluation protocol against its formula, sinusoid tasks against
``A sin(x - phase)``, and the reference meta-learners against independent computations: a double loop
for prototypes, central finite differences for the second-order MAML meta-gradient.
"""
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import tlbook as tl
from tlbook import data as tldata
from tlbook import meta

CLASSES, PER_CLASS, SIDE = 12, 6, 8


def synthetic(sizes=None, seed=0) -> tl.ImageData:
    """Classes of 1x8x8 images: a random binary pattern per class plus a little noise, so that raw
    pixels separate the classes."""
    gen = torch.Generator().manual_seed(seed)
    sizes = sizes or [PER_CLASS] * CLASSES
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    patterns = (torch.rand(len(sizes), 1, SIDE, SIDE, generator=gen) > 0.5).float()
    images = (0.1 + 0.8 * patterns[labels] + 0.05 * torch.rand(len(labels), 1, SIDE, SIDE, generator=gen)).clamp(0, 1)
    return tl.ImageData(images, labels, [f"alphabet/character{k:02d}" for k in range(len(sizes))], name="synthetic")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- episodes ---------------------------------------------------------------------------------


def test_episodes_shapes_and_labels():
    tasks = meta.Episodes(synthetic(), ways=5, shots=2, queries=3, tasks_per_batch=4)
    xs, ys, xq, yq = tasks.sample(gen())
    assert xs.shape == (4, 10, 1, SIDE, SIDE) and xq.shape == (4, 15, 1, SIDE, SIDE)
    assert ys.dtype == yq.dtype == torch.int64
    assert torch.equal(ys, torch.arange(5).repeat_interleave(2).repeat(4, 1))
    assert torch.equal(yq, torch.arange(5).repeat_interleave(3).repeat(4, 1))
    assert tasks.device == torch.device("cpu")


def check_episode(data, tasks, generator):
    """Every property an episode must have, checked on the rows it draws."""
    state = generator.get_state()
    support, query = tasks.indices(generator)
    generator.set_state(state)
    xs, ys, xq, yq = tasks.sample(generator)
    assert torch.equal(xs, data.images[support]) and torch.equal(xq, data.images[query])  # sample draws these rows
    w, s, q = tasks.ways, tasks.shots, tasks.queries
    for t in range(tasks.tasks_per_batch):
        sup, qry = support[t].tolist(), query[t].tolist()
        assert len(set(sup)) == w * s and len(set(qry)) == w * q and not set(sup) & set(qry)
        original = {}
        for rows, labels in ((sup, ys[t]), (qry, yq[t])):
            for row, label in zip(rows, labels.tolist()):
                original.setdefault(label, set()).add(int(data.labels[row]))
        assert all(len(c) == 1 for c in original.values())  # label j is one original class
        assert len({c.pop() for c in original.values()}) == w  # and the W classes are distinct
    return support, query


def test_episodes_are_valid_tasks():
    data = synthetic()
    check_episode(data, meta.Episodes(data, ways=5, shots=2, queries=3, tasks_per_batch=20), gen(1))
    check_episode(data, meta.Episodes(data, ways=12, shots=1, queries=5, tasks_per_batch=3), gen(2))


def test_episodes_label_order_is_random_and_classes_uniform():
    data = synthetic()
    support, _ = meta.Episodes(data, ways=5, shots=1, queries=1, tasks_per_batch=3000).indices(gen())
    classes = data.labels[support]  # (T, W): the class behind label j
    assert (classes[:, 1:] < classes[:, :-1]).any(1).float().mean() > 0.9  # not sorted by class
    counts = torch.bincount(classes.flatten(), minlength=CLASSES).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1  # each class 1250 +- 10%


def test_episodes_seeding():
    tasks = meta.Episodes(synthetic(), ways=5, shots=1, queries=2, tasks_per_batch=3)
    a, b, c = tasks.sample(gen(7)), tasks.sample(gen(7)), tasks.sample(gen(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_episodes_unequal_class_sizes():
    sizes = [3, 9, 4, 7, 3, 12, 5]
    data = synthetic(sizes)
    tasks = meta.Episodes(data, ways=3, shots=1, queries=2, tasks_per_batch=400)
    support, query = check_episode(data, tasks, gen(3))
    drawn = torch.cat([support.flatten(), query.flatten()])
    assert drawn.min() >= 0 and set(drawn.tolist()) == set(range(len(data)))  # padding never drawn, every row reachable


def test_rotations_layout_and_exactness():
    data = synthetic()
    rotated = meta.rotations(data)
    n, k = len(data), data.num_classes
    assert rotated.num_classes == 4 * k and len(rotated) == 4 * n
    assert rotated.classes[k + 1] == "alphabet/character01@90" and rotated.classes[1] == "alphabet/character01@0"
    for r in range(4):
        block = rotated.images[r * n : (r + 1) * n]
        assert torch.equal(rotated.labels[r * n : (r + 1) * n], data.labels + r * k)
        assert torch.equal(torch.rot90(block, -r, dims=(2, 3)), data.images)  # turning back gives the original
    assert torch.equal(rotated.images[n:2 * n], data.images.transpose(2, 3).flip(2))  # 90 = counterclockwise
    flipped = meta.rotations(data, degrees=(180,))
    assert torch.equal(flipped.images, data.images.flip(2, 3)) and flipped.classes[0].endswith("@180")


def test_rotated_classes_make_episodes():
    rotated = meta.rotations(synthetic())
    check_episode(rotated, meta.Episodes(rotated, ways=20, shots=1, queries=2, tasks_per_batch=5), gen(4))


def test_omniglot_rotated_episodes(load_or_skip):
    (background,) = load_or_skip(("omniglot", "background"))
    rotated = meta.rotations(background)
    assert rotated.num_classes == 4 * background.num_classes == 968
    assert rotated.classes[background.num_classes].endswith("@90")
    tasks = meta.Episodes(rotated, ways=20, shots=1, queries=5, tasks_per_batch=4)
    xs, ys, xq, yq = tasks.sample(gen())
    assert xs.shape == (4, 20, 1, 28, 28) and xq.shape == (4, 100, 1, 28, 28)
    support, query = tasks.indices(gen())
    assert torch.equal(xs, rotated.images[support])
    assert torch.equal(rotated.labels[support].view(4, 20, 1), rotated.labels[query].view(4, 20, 5)[:, :, :1])


# --- evaluation protocol ----------------------------------------------------------------------


def pixel_prototypes(xs, ys, xq):
    return meta.prototype_logits(xs.flatten(1), ys, xq.flatten(1), ways=int(ys.max()) + 1)


def random_projection(xs, ys, xq):
    """Deterministic given its inputs, and right about half the time: accuracies vary per episode."""
    weights = torch.randn(SIDE * SIDE, 5, generator=gen(11))
    return pixel_prototypes(xs, ys, xq) + 5 * (xq.flatten(1) @ weights)


def test_evaluate_oracle_and_constant():
    data = synthetic()
    assert meta.evaluate(pixel_prototypes, data, ways=5, shots=1, queries=3, episodes=20) == (1.0, 0.0)
    acc, ci95 = meta.evaluate(lambda xs, ys, xq: torch.zeros(len(xq), 4), data, ways=4, shots=1, queries=2, episodes=10)
    assert acc == pytest.approx(0.25) and ci95 == pytest.approx(0.0, abs=1e-12)


def test_evaluate_repeats_and_matches_formula():
    data = synthetic()
    first = meta.evaluate(random_projection, data, ways=5, shots=2, queries=3, episodes=30, seed=5)
    assert meta.evaluate(random_projection, data, ways=5, shots=2, queries=3, episodes=30, seed=5) == first
    # Independent: draw the episodes in sequence from a generator seeded by seed, score them here.
    tasks, generator, accuracies = meta.Episodes(data, 5, 2, 3), tldata._generator(5, "cpu"), []
    for _ in range(30):
        xs, ys, xq, yq = (x[0] for x in tasks.sample(generator))
        accuracies.append((random_projection(xs, ys, xq).argmax(1) == yq).double().mean().item())
    assert 0 < min(accuracies) < max(accuracies) < 1
    assert first[0] == pytest.approx(statistics.mean(accuracies), abs=1e-6)  # accuracies are float32 on the device
    assert first[1] == pytest.approx(1.96 * statistics.stdev(accuracies) / math.sqrt(30), abs=1e-6)
    assert meta.evaluate(random_projection, data, ways=5, shots=2, queries=3, episodes=30, seed=6) != first


def test_evaluate_leaves_gradients_on():
    def needs_grad(xs, ys, xq):
        assert torch.is_grad_enabled()
        return pixel_prototypes(xs, ys, xq)

    meta.evaluate(needs_grad, synthetic(), ways=3, shots=1, queries=1, episodes=2)


# --- sinusoids --------------------------------------------------------------------------------


def test_sinusoid_batches():
    tasks = meta.Sinusoids(tasks_per_batch=6, shots=5, queries=7, device="cpu")
    xs, ys, xq, yq = tasks.sample(gen())
    assert xs.shape == ys.shape == (6, 5, 1) and xq.shape == yq.shape == (6, 7, 1)
    assert all(t.dtype == torch.float32 for t in (xs, ys, xq, yq))
    assert all(torch.equal(a, b) for a, b in zip(tasks.sample(gen(3)), tasks.sample(gen(3))))
    assert not torch.equal(tasks.sample(gen(3))[0], tasks.sample(gen(4))[0])
    assert xs.min() >= -5 and xs.max() <= 5 and ys.abs().max() <= 5


def test_sinusoid_fixed_tasks():
    tasks = meta.Sinusoids.fixed_tasks(200, shots=10, queries=50, seed=0, device="cpu")
    assert tasks["amplitude"].shape == tasks["phase"].shape == (200,) and tasks["x_query"].shape == (200, 50, 1)
    a, p = tasks["amplitude"].double()[:, None, None], tasks["phase"].double()[:, None, None]
    for x, y in (("x_support", "y_support"), ("x_query", "y_query")):
        torch.testing.assert_close(tasks[y].double(), a * torch.sin(tasks[x].double() - p), rtol=1e-5, atol=1e-5)
    assert 0.1 <= tasks["amplitude"].min() and tasks["amplitude"].max() <= 5.0 and tasks["amplitude"].max() > 4.5
    assert 0 <= tasks["phase"].min() and tasks["phase"].max() <= math.pi
    assert -5 <= tasks["x_query"].min() and tasks["x_query"].max() <= 5
    again, other = meta.Sinusoids.fixed_tasks(200, 10, 50, seed=0), meta.Sinusoids.fixed_tasks(200, 10, 50, seed=1)
    assert torch.equal(again["x_query"].cpu(), tasks["x_query"]) and not torch.equal(other["phase"].cpu(), tasks["phase"])
    train = meta.Sinusoids(tasks_per_batch=200, shots=10, queries=50, device="cpu").sample(gen(0))
    assert not torch.equal(train[0], tasks["x_support"])  # the test set is not a training batch of the same seed


def test_sinusoid_net():
    state = torch.random.get_rng_state()
    net, same = meta.sinusoid_net(), meta.sinusoid_net()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [tuple(p.shape) for p in net.parameters()] == [(40, 1), (40,), (40, 40), (40,), (1, 40), (1,)]
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), same.parameters()))
    assert not torch.equal(net.head.weight, meta.sinusoid_net(seed=1).head.weight)
    assert net(torch.zeros(3, 1)).shape == (3, 1)


# --- reference meta-learners ------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [None, 3])
def test_prototype_logits_against_loops(tasks):
    g = gen(5)
    lead = () if tasks is None else (tasks,)
    ways, shots, queries, dim = 4, 3, 5, 6
    support = torch.randn(*lead, ways * shots, dim, generator=g, dtype=torch.float64)
    labels = torch.stack([torch.randperm(ways * shots, generator=g) % ways for _ in range(tasks or 1)]).view(*lead, -1)
    query = torch.randn(*lead, queries, dim, generator=g, dtype=torch.float64)
    logits = meta.prototype_logits(support, labels, query, ways)
    assert logits.shape == (*lead, queries, ways)
    for t in range(tasks or 1):
        s, y, q = (x[t] if tasks else x for x in (support, labels, query))
        for i in range(queries):
            for k in range(ways):
                members = [s[j] for j in range(len(y)) if y[j] == k]
                mean = sum(members) / len(members)
                expected = -sum((q[i][d] - mean[d]) ** 2 for d in range(dim))
                assert (logits[t, i, k] if tasks else logits[i, k]).item() == pytest.approx(expected.item(), rel=1e-12)
    half = meta.prototype_logits(support.bfloat16(), labels, query.bfloat16(), ways)
    assert half.dtype == torch.float32
    single = meta.prototype_logits(support.float(), labels, query.float(), ways)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the class means must not be taken in bf16
        torch.testing.assert_close(meta.prototype_logits(support.float(), labels, query.float(), ways), single)


def tiny_task(seed=0):
    """A 1-3-1 ReLU net in float64 and one sinusoid task."""
    net = meta.sinusoid_net(hidden=(3,), seed=seed).double()
    xs, ys, xq, yq = (t[0].double() for t in meta.Sinusoids(1, shots=4, queries=5, device="cpu").sample(gen(seed)))
    return net, xs, ys, xq, yq


def finite_difference_grad(f, params, h=1e-6):
    grads = {}
    for name, p in params.items():
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            plus, minus = p.detach().clone(), p.detach().clone()
            plus.view(-1)[i] += h
            minus.view(-1)[i] -= h
            g.view(-1)[i] = (f({**params, name: plus}) - f({**params, name: minus})).item() / (2 * h)
        grads[name] = g
    return grads


@pytest.mark.parametrize("steps, names", [(1, None), (2, None), (2, ["head"])])
def test_maml_second_order_against_finite_differences(steps, names):
    net, xs, ys, xq, yq = tiny_task()
    params = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}

    def loss(p):
        return meta.maml_query_loss(net, p, xs, ys, xq, yq, F.mse_loss, inner_lr=0.05, steps=steps, names=names)

    autograd = dict(zip(params, torch.autograd.grad(loss(params), list(params.values()))))
    numeric = finite_difference_grad(lambda p: loss(p).detach(), params)
    for name in params:
        torch.testing.assert_close(autograd[name], numeric[name], rtol=1e-5, atol=1e-7)
    loss_first = meta.maml_query_loss(net, params, xs, ys, xq, yq, F.mse_loss, 0.05, steps, first_order=True, names=names)
    first = dict(zip(params, torch.autograd.grad(loss_first, list(params.values()))))
    assert loss_first.item() == pytest.approx(loss(params).item())  # same adapted weights, other gradient
    assert any(not torch.allclose(first[n], autograd[n]) for n in params)  # the second-order terms are there


def test_first_order_meta_gradient_is_query_gradient_at_adapted():
    net, xs, ys, xq, yq = tiny_task(1)
    params = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    loss = meta.maml_query_loss(net, params, xs, ys, xq, yq, F.mse_loss, inner_lr=0.05, steps=2, first_order=True)
    meta_grad = torch.autograd.grad(loss, list(params.values()))
    adapted = {n: p.detach().requires_grad_() for n, p in meta.adapt(net, params, xs, ys, F.mse_loss, 0.05, 2).items()}
    at_adapted = torch.autograd.grad(F.mse_loss(functional_call(net, adapted, (xq,)), yq), list(adapted.values()))
    for a, b in zip(meta_grad, at_adapted):
        torch.testing.assert_close(a, b)


def test_adapt_one_step_and_anil():
    net, xs, ys, xq, yq = tiny_task(2)
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(F.mse_loss(net(xs), ys), list(params.values()))
    adapted = meta.adapt(net, params, xs, ys, F.mse_loss, inner_lr=0.1)
    for (name, p), g in zip(params.items(), grads):
        torch.testing.assert_close(adapted[name], p - 0.1 * g)
    anil = meta.adapt(net, params, xs, ys, F.mse_loss, inner_lr=0.1, steps=3, names=["head"])
    assert anil["hidden1.weight"] is params["hidden1.weight"] and anil["hidden1.bias"] is params["hidden1.bias"]
    assert not torch.equal(anil["head.weight"], params["head.weight"])
    with torch.no_grad():  # evaluation code may adapt under no_grad
        detached = meta.adapt(net, {n: p.detach() for n, p in params.items()}, xs, ys, F.mse_loss, 0.1)
    torch.testing.assert_close(detached["head.bias"], adapted["head.bias"])


def test_reptile_update_formula():
    theta = {"w": torch.randn(3, 2, generator=gen(1), requires_grad=True), "b": torch.randn(2, generator=gen(2))}
    phis = [{n: p.detach() + torch.randn(p.shape, generator=gen(10 + i)) for n, p in theta.items()} for i in range(3)]
    new = meta.reptile_update(theta, phis[0], outer_lr=0.25)
    for n in theta:
        torch.testing.assert_close(new[n], theta[n].detach() + 0.25 * (phis[0][n] - theta[n].detach()))
        assert not new[n].requires_grad
    batched = meta.reptile_update(theta, phis, outer_lr=0.5)
    for n in theta:
        torch.testing.assert_close(batched[n], theta[n].detach() + 0.5 * sum(phi[n] - theta[n].detach() for phi in phis) / 3)


# --- training through tl.fit ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(tldata, "Sampler"), reason="tl.fit does not take samplers yet (no tlbook.data.Sampler)")
def test_protonet_step_trains_through_fit():
    data = synthetic()
    model = tl.make_model("mlp", num_classes=5, image_size=SIDE, hidden=(16,))
    before = [p.detach().clone() for p in model.parameters()]

    def protonet_step(model, batch):
        xs, ys, xq, yq = batch
        t = xs.shape[0]
        fs, fq = model.features(xs.flatten(0, 1)).view(t, -1, 16), model.features(xq.flatten(0, 1)).view(t, -1, 16)
        return F.cross_entropy(meta.prototype_logits(fs, ys, fq, ways=5).flatten(0, 1), yq.flatten())

    tasks = meta.Episodes(data, ways=5, shots=1, queries=2, tasks_per_batch=4)
    history = tl.fit(model, tasks, protonet_step, steps=3, progress=False)
    assert all(math.isfinite(x) for x in history["train_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --- bad input --------------------------------------------------------------------------------

EPISODES_OK = dict(ways=5, shots=1, queries=2, tasks_per_batch=1)


@pytest.mark.parametrize("change, argument", [
    (dict(ways=2.5), "ways"), (dict(ways=True), "ways"), (dict(shots=0), "shots"), (dict(queries=-1), "queries"),
    (dict(tasks_per_batch=0), "tasks_per_batch"), (dict(ways=13), "ways"), (dict(shots=4, queries=3), "shots"),
])
def test_bad_input_episodes(change, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        meta.Episodes(synthetic(), **{**EPISODES_OK, **change})


@pytest.mark.parametrize("make, argument", [
    (lambda: meta.Episodes(synthetic().images, 5, 1, 1), "data"),
    (lambda: meta.Episodes(synthetic().unlabelled(), 5, 1, 1), "labels"),
    (lambda: meta.Episodes(synthetic(), 5, 1, 1).sample(0), "generator"),
    (lambda: meta.rotations(synthetic(), degrees=(0, 45)), "degrees"),
    (lambda: meta.rotations(synthetic(), degrees=(0, 360)), "degrees"),
    (lambda: meta.rotations(synthetic(), degrees=()), "degrees"),
    (lambda: meta.rotations(synthetic().unlabelled()), "labels"),
])
def test_bad_input_data(make, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        make()


@pytest.mark.parametrize("kwargs, argument", [
    (dict(episodes=1), "episodes"), (dict(seed=-1), "seed"), (dict(predict="prototypes"), "predict"),
    (dict(predict=lambda xs, ys, xq: torch.zeros(len(xq), 3)), "predict"),
])
def test_bad_input_evaluate(kwargs, argument):
    kwargs = {"predict": pixel_prototypes, "data": synthetic(), "ways": 5, "shots": 1, "queries": 2, "episodes": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=argument):
        meta.evaluate(**kwargs)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(tasks_per_batch=0), "tasks_per_batch"), (dict(shots=1.0), "shots"),
    (dict(amplitude=(5.0, 0.1)), "amplitude"), (dict(x_range=(float("nan"), 1.0)), "x_range"), (dict(phase=3), "phase"),
])
def test_bad_input_sinusoids(kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        meta.Sinusoids(device="cpu", **kwargs)


def _meta_call(**change):
    net, xs, ys, xq, yq = tiny_task()
    kwargs = dict(model=net, params=dict(net.named_parameters()), x_support=xs, y_support=ys, x_query=xq,
                  y_query=yq, loss_fn=F.mse_loss, inner_lr=0.1)
    return meta.maml_query_loss(**{**kwargs, **change})


@pytest.mark.parametrize("make, argument", [
    (lambda: _meta_call(inner_lr=0), "inner_lr"), (lambda: _meta_call(inner_lr=float("nan")), "inner_lr"),
    (lambda: _meta_call(steps=0), "steps"), (lambda: _meta_call(steps=1.5), "steps"),
    (lambda: _meta_call(names=["haed"]), "'head'"), (lambda: _meta_call(params={"weight": torch.zeros(1)}), "parameter"),
    (lambda: _meta_call(model=F.relu), "model"),
    (lambda: meta.reptile_update({"w": torch.zeros(2)}, {"w": torch.ones(2)}, outer_lr=-1), "outer_lr"),
    (lambda: meta.reptile_update({"w": torch.zeros(2)}, {"v": torch.ones(2)}, outer_lr=0.1), "adapted"),
    (lambda: meta.reptile_update({"w": torch.zeros(2)}, {"w": torch.ones(2, 1)}, outer_lr=0.1), "adapted"),
    (lambda: meta.prototype_logits(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 5), 2), "query_features"),
    (lambda: meta.prototype_logits(torch.zeros(4, 3), torch.zeros(4), torch.zeros(2, 3), 2), "support_labels"),
    (lambda: meta.prototype_logits(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 3), 0), "ways"),
])
def test_bad_input_meta_learners(make, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        make()
