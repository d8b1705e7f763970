"""Claims of Chapter 3 (book/03_meta_learning.ipynb), checked with real runs at a size CPU CI can afford.

1. Sinusoids (Finn et al. 2017, section 5.1): after meta-training, MAML's 5-shot query MSE after 10 SGD
   steps is well below that of a model pretrained on all tasks, on the same fixed test tasks, per seed.
2. Omniglot, at the small budget (100 steps of 60 images): Prototypical Networks beat chance, an
   untrained Conv-4 with the same nearest-centroid rule (random features are far above chance: the
   boring explanation), and the plain pretrained body, on the same fixed episodes, per seed.
3. After a short meta-training (300 steps of 6 tasks, Finn et al.'s 5-way 1-shot task), second-order MAML is
   clearly ahead of first-order MAML at the same budget, and adapting only the head of the MAML body at test time
   loses clearly to adapting every parameter (each query normalised with the support set, the book's rule), on each
   seed: Raghu et al.'s "feature reuse" (head-only matches full adaptation), measured on converged models, does
   not hold this early. The chapter (400 steps, 3 seeds, 40 episodes) measures both gaps; at 150 steps (an earlier
   version of this test) the head-only gap was not yet consistent (head only 3.7 points ahead on one seed), so the
   budget here is the shortest at which both orderings held on every seed we ran.

Data from ``TLBOOK_DATA``. Margins were measured on this setup (2-core CPU) and set well below the gaps.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

import tlbook as tl

pytestmark = pytest.mark.usefixtures("fresh_cache")


def sinusoid_step(method):
    def step(model, batch):
        params = dict(model.named_parameters())
        if method == "MAML":  # torch.func over the tasks of the batch, as in the chapter (checked there against tl.meta)
            def task_loss(p, x, y):
                return F.mse_loss(functional_call(model, p, (x,)), y)

            def query_loss(p, xs, ys, xq, yq):
                g = grad(task_loss)(p, xs, ys)
                return task_loss({n: v - 0.01 * g[n] for n, v in p.items()}, xq, yq)
            return vmap(query_loss, in_dims=(None, 0, 0, 0, 0))(params, *batch).mean()
        x, y = torch.cat([batch[0], batch[2]], 1), torch.cat([batch[1], batch[3]], 1)
        return F.mse_loss(model(x.reshape(-1, 1)), y.reshape(-1, 1))
    return step


def mse_after_steps(model, tasks, shots=5, steps=10):
    params = {n: p.detach() for n, p in model.named_parameters()}
    losses = []
    for i in range(len(tasks["x_query"])):
        adapted = tl.meta.adapt(model, params, tasks["x_support"][i, :shots], tasks["y_support"][i, :shots],
                                F.mse_loss, 0.01, steps, first_order=True)
        losses.append(F.mse_loss(functional_call(model, adapted, (tasks["x_query"][i],)), tasks["y_query"][i]))
    return torch.stack(losses).mean().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_maml_adapts_to_a_new_sinusoid_far_better_than_the_pretrained_model(seed):
    tasks = tl.meta.Sinusoids(25, shots=10, queries=10, device="cpu")
    test = tl.meta.Sinusoids.fixed_tasks(50, shots=10, queries=50, seed=0, device="cpu")
    mse = {}
    for method in ("MAML", "pretrained"):
        model = tl.meta.sinusoid_net(seed=seed)
        tl.fit(model, tasks, sinusoid_step(method), steps=3000, lr=1e-3, schedule="constant", seed=seed, progress=False)
        mse[method] = mse_after_steps(model, test)
    # measured (3,000 steps): MAML 1.42 vs 3.28 (seed 0), 0.90 vs 3.53 (seed 1); at 2,000 steps seed 0 still
    # diverged when taking 5-10 steps of 0.01 (an initialisation tuned for one step sits near the edge of stability)
    assert mse["MAML"] < 0.7 * mse["pretrained"], mse


@pytest.fixture(scope="module")
def omniglot(load_or_skip):
    background, evaluation = load_or_skip(("omniglot", "background"), ("omniglot", "evaluation"))
    return tl.meta.rotations(background), tl.class_subset(evaluation, range(100))


def conv4(num_classes, seed, **kwargs):
    return tl.make_model("cnn", num_classes=num_classes, widths=(64,) * 4, pool="global", seed=seed, **kwargs)


def protonet_step(model, batch):
    sx, sy, qx, qy = batch
    t, s = sx.shape[:2]
    f = model.features(torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)]))
    logits = tl.meta.prototype_logits(f[: t * s].view(t, s, -1), sy, f[t * s :].view(t, qx.shape[1], -1), 20)
    return F.cross_entropy(logits.flatten(0, 1), qy.flatten())


def centroid_accuracy(model, data, ways=5, shots=5, episodes=200):
    model.eval()

    def predict(sx, sy, qx):
        with torch.no_grad():
            return tl.meta.prototype_logits(model.features(sx), sy, model.features(qx), ways)
    return tl.meta.evaluate(predict, data, ways, shots, queries=5, episodes=episodes, seed=0)[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_protonets_beat_chance_random_features_and_the_pretrained_body_at_the_small_budget(omniglot, seed):
    meta_train, test = omniglot
    proto = conv4(1, seed)
    tl.fit(proto, tl.meta.Episodes(meta_train, 20, 1, 2), protonet_step, steps=100, lr=1e-3, seed=seed, progress=False)
    pretrained = conv4(meta_train.num_classes, seed)
    tl.fit(pretrained, meta_train, steps=100, batch_size=60, lr=1e-3, seed=seed, progress=False)
    acc = {name: centroid_accuracy(m, test) for name, m in
           (("ProtoNet", proto), ("pretrained", pretrained), ("untrained", conv4(1, seed)))}
    # measured, 5-way 5-shot on 100 test characters: ProtoNet 0.951 / 0.957 (seeds 0 / 1), pretrained 0.774 / 0.743,
    # untrained 0.832 / 0.844 (at 100 steps the pretrained body is below random features, as in the chapter); chance 0.2
    assert acc["ProtoNet"] > acc["untrained"] + 0.05 and acc["untrained"] > 0.2 + 0.3, acc
    assert acc["ProtoNet"] > acc["pretrained"] + 0.05, acc


@pytest.mark.parametrize("seed", [0, 1])
def test_second_order_maml_leads_and_its_body_is_not_yet_reused_as_is(omniglot, seed):
    meta_train, test = omniglot
    tasks = tl.meta.Episodes(meta_train, 5, 1, 1, tasks_per_batch=6)   # 6 x 5 x (1 + 1) = 60 images per step
    models = {}
    for first_order in (False, True):
        model = conv4(5, seed, track_running_stats=False)

        def step(m, batch, first_order=first_order):
            params = dict(m.named_parameters())
            return torch.stack([tl.meta.maml_query_loss(m, params, *task, F.cross_entropy, 0.4, first_order=first_order)
                                for task in zip(*batch)]).mean()
        tl.fit(model, tasks, step, steps=300, lr=1e-3, seed=seed, progress=False)
        models["first-order" if first_order else "MAML"] = model

    def accuracy(model, names=None, episodes=40):
        params = {n: p.detach() for n, p in model.named_parameters()}

        def scores(sx, sy, qx):
            adapted = tl.meta.adapt(model, params, sx, sy, F.cross_entropy, 0.4, 3, first_order=True, names=names)
            with torch.no_grad():  # each query with the support set in the batch: inductive
                return torch.stack([functional_call(model, adapted, (torch.cat([sx, q[None]]),))[-1] for q in qx])
        return tl.meta.evaluate(scores, test, 5, 1, queries=5, episodes=episodes, seed=0)[0]

    maml, first_order, head = accuracy(models["MAML"]), accuracy(models["first-order"]), accuracy(models["MAML"], ["head"])
    # measured (300 steps, 40 episodes, seeds 0 / 1): MAML 0.745 / 0.763, first-order 0.586 / 0.566, MAML head only
    # 0.572 / 0.622; chance 0.2
    assert maml > first_order + 0.05, (maml, first_order)
    assert head < maml - 0.05, (head, maml)
