"""Claims of Chapter 1 (book/01_concepts.ipynb), checked with real runs at a size CPU CI can afford.

1. With few target labels (10 per class), fine-tuning a CNN whose body was pretrained on MNIST beats
   training the same CNN from scratch on the book's KMNIST task, on every seed.
2. A body that has memorised MNIST images with shuffled labels (the chapter's bad source) transfers
   worse than the body pretrained on the true labels, and worse than no transfer at all, on every seed.
3. Section 1.6: on KMNIST with inverted colours, plain fine-tuning forgets MNIST (through the original
   head re-attached) far more than joint training L_s + lambda L_t with lambda = 1, on every seed,
   while the joint model's target accuracy is not far below fine-tuning's.

As in the chapter, the sources come from the book's recipe (``tl.source_model``, smaller here), the
labelled target examples are drawn from the KMNIST pool without its 1,000 validation images, and
the comparisons are paired by seed (the same seed draws the same labelled subset). The data comes
from ``TLBOOK_DATA`` (CI sets it); the model cache is a fresh temporary folder, so the source models
are really trained here (the file takes about 110 s on one CPU thread). Margins were measured on
this setup (3 seeds) and set well below the measured gaps; swapping the two sources, or fine-tuning
in place of joint training, makes the assertions fail.
"""
import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F

import tlbook as tl

WIDTHS = (16, 32, 64)
SEEDS = (0, 1, 2)
PER_CLASS = 10
STEPS = 200
LR = 3e-3
SOURCE_SIZE = 60_000
MEMORISE_SIZE, MEMORISE_EPOCHS = 1_000, 60
JOINT_PER_CLASS, JOINT_BATCH = 100, 64


@pytest.fixture(scope="module")
def setup(fresh_cache, load_or_skip):
    mnist, pool, test, mnist_test = load_or_skip(("mnist", "train"), ("kmnist", "train"), ("kmnist", "test"),
                                                 ("mnist", "test"))
    train, _ = tl.validation_split(pool, 1_000, seed=0)   # the chapter's choices are made on the held-out part
    recipe = dict(lr=2e-3, widths=WIDTHS)
    sources = {"true": tl.source_model("mnist", "cnn", train_size=SOURCE_SIZE, epochs=1, **recipe)[0],
               "shuffled": tl.source_model("mnist", "cnn", train_size=MEMORISE_SIZE, labels="shuffled",
                                           epochs=MEMORISE_EPOCHS, **recipe)[0]}
    # The bad source must really have memorised its labels, or it is not the chapter's bad source.
    memorise_set = tl.random_split(mnist, [MEMORISE_SIZE, len(mnist) - MEMORISE_SIZE], seed=0)[0]
    order = torch.randperm(MEMORISE_SIZE, generator=torch.Generator().manual_seed(1))
    assert tl.evaluate(sources["shuffled"], memorise_set.replace(labels=memorise_set.labels[order])) > 0.95
    return dict(mnist=mnist, mnist_test=mnist_test, train=train, test=test, sources=sources)


@pytest.fixture(scope="module")
def runs(setup):
    def target_accuracy(source, seed):
        data = tl.per_class_subset(setup["train"], PER_CLASS, seed=seed)
        if source is None:
            model = tl.make_model("cnn", widths=WIDTHS, seed=seed)
        else:
            model = tl.reset_head(copy.deepcopy(setup["sources"][source]), 10, seed=seed)
        tl.fit(model, data, steps=STEPS, batch_size=min(128, len(data)), lr=LR, seed=seed, progress=False)
        return tl.evaluate(model, setup["test"])

    result = {name: [target_accuracy(source, seed) for seed in SEEDS]
              for name, source in (("scratch", None), ("true", "true"), ("shuffled", "shuffled"))}
    print("KMNIST test accuracy per seed:", {k: [round(a, 3) for a in v] for k, v in result.items()})
    return result


def paired(runs, a, b):
    """Per-seed differences a - b (the same seed draws the same labelled subset)."""
    return [x - y for x, y in zip(runs[a], runs[b])]


def test_mnist_body_beats_scratch_with_few_labels(runs):
    gains = paired(runs, "true", "scratch")
    # measured on the 1-thread CPU: +2.9, +6.0, +3.7 points (mean +4.2), positive on all 3 seeds
    assert min(gains) > 0 and sum(gains) / len(gains) >= 0.02, f"fine-tune from MNIST minus scratch per seed: {gains}"


def test_memorised_random_label_source_transfers_worse(runs):
    vs_good = paired(runs, "true", "shuffled")
    vs_scratch = paired(runs, "scratch", "shuffled")
    # measured on the 1-thread CPU: good minus bad +8.1, +8.3, +5.7 points; scratch minus bad +5.2, +2.3, +2.0
    assert min(vs_good) > 0 and sum(vs_good) / len(vs_good) >= 0.04, f"good minus bad source per seed: {vs_good}"
    assert min(vs_scratch) > 0, f"scratch minus bad source per seed (negative transfer expected): {vs_scratch}"


def joint_step(model, batch, lam):
    """The chapter's step: L_s + lam * L_t on one batch of each task, lam = inf is plain fine-tuning."""
    (x_s, y_s), (x_t, y_t) = batch
    if math.isinf(lam):
        return F.cross_entropy(model.head(model.features(x_t)), y_t)
    z = model.features(torch.cat([x_s, x_t]))
    return F.cross_entropy(model.source_head(z[: len(x_s)]), y_s) + lam * F.cross_entropy(model.head(z[len(x_s):]), y_t)


def test_fine_tuning_forgets_the_source_joint_training_does_not(setup):
    inverted = lambda data: data.replace(images=1 - data.images)
    target_train, target_test, mnist_test = inverted(setup["train"]), inverted(setup["test"]), setup["mnist_test"]
    rows = {}
    for lam in (1.0, math.inf):
        for seed in SEEDS:
            model = copy.deepcopy(setup["sources"]["true"])
            model.source_head = copy.deepcopy(model.head)
            tl.reset_head(model, 10, seed=seed)
            few = tl.per_class_subset(target_train, JOINT_PER_CLASS, seed=seed)
            tl.fit(model, (setup["mnist"], few), step=functools.partial(joint_step, lam=lam), steps=STEPS,
                   batch_size=JOINT_BATCH, lr=LR, seed=seed, progress=False)
            source_logits = model.source_head(tl.predict(model.body, mnist_test))
            source = (source_logits.argmax(1) == mnist_test.labels).float().mean().item()
            rows[lam, seed] = (tl.evaluate(model, target_test), source)
    print("(target, MNIST) accuracy per (lambda, seed):", {k: tuple(round(v, 3) for v in r) for k, r in rows.items()})
    for seed in SEEDS:
        (joint_target, joint_source), (ft_target, ft_source) = rows[1.0, seed], rows[math.inf, seed]
        # measured on the 1-thread CPU: MNIST 0.985-0.986 after joint training, 0.338-0.521 after fine-tuning;
        # target 0.846-0.864 joint against 0.851-0.865 fine-tuned (joint minus fine-tuned -0.5 to 0.0 points)
        assert joint_source - ft_source > 0.2, \
            f"seed {seed}: joint MNIST {joint_source:.3f}, fine-tuned {ft_source:.3f}"
        assert joint_target > ft_target - 0.05, \
            f"seed {seed}: joint target {joint_target:.3f}, fine-tuned {ft_target:.3f}"
