"""Claims of Chapter 6 (book/06_domain_adaptation.ipynb), checked with real runs at a size CPU CI can afford.

1. Framing USPS like MNIST (20x20 box centred in 28x28) raises source-only accuracy on every seed.
2. AdaBN (BatchNorm statistics re-estimated on unlabelled target images) beats source-only by a
   wide margin on MNIST -> USPS, on every seed.
3. Fine-tuning on labelled source and unlabelled target batches beats source-only on every seed
   with the gradient reversal off (lambda = 0, the chapter's control). DANN itself (lambda = 1) is
   *not* asserted to beat source-only: the chapter finds it below source-only on one seed of its
   grid (a collapse after step 75) and below source-only on average on USPS -> MNIST, and this
   test's seed 0 measured 0.680 against 0.785 source-only; the chapter says so plainly.
4. The model that information maximisation (the chapter's best rule without target labels) picks
   from a small grid (lambda x checkpoints) is above source-only and at most the oracle's pick
   (target test labels) on every seed.
5. The labels of an unlabelled target never reach a training step, nor evaluation.
6. ADDA on ADDA's protocol (2,000 MNIST / 1,800 USPS-ESL training images, USPS framed) adds nothing over
   its control, AdaBN (the target encoder's BatchNorm runs on target batches), on every seed, and does
   not collapse. ADDA is *not* asserted to beat source-only: at this size (300 steps in one piece) it
   ends below source-only on seed 0 (measured 0.873 against 0.906; AdaBN 0.921), while the chapter's
   600 steps in three pieces end above it on all three seeds; the chapter says so.

Data from ``TLBOOK_DATA``; every model is trained here (nothing is cached). Margins were measured on
this setup (2-core CPU) and set well below the measured gaps.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tlbook as tl
from tlbook import adapt

WIDTHS = (16, 32, 64)
SEEDS = (0, 1)
SOURCE_SIZE, VALIDATION_SIZE = 10_000, 500   # the chapter's source size
SOURCE_STEPS, ADAPT_STEPS = 400, 300          # the chapter's full-mode lengths


def frame(data, box=20, side=28):
    images = F.interpolate(data.images, size=(box, box), mode="bilinear", antialias=True, align_corners=False)
    pad = (side - box) // 2
    return data.replace(images=F.pad(images, (pad, side - box - pad) * 2).clamp(0, 1))


@pytest.fixture(scope="module")
def data(load_or_skip):
    (mnist,) = load_or_skip(("mnist", "train"))
    try:
        raw = {s: tl.load_dataset("usps", s) for s in ("train", "test")}
        framed = {s: frame(tl.load_dataset("usps", s, size=16)) for s in ("train", "test")}
    except (FileNotFoundError, RuntimeError) as err:
        pytest.skip(f"datasets unavailable: {err}")
    pool = tl.random_split(mnist, [SOURCE_SIZE + VALIDATION_SIZE, len(mnist) - SOURCE_SIZE - VALIDATION_SIZE], seed=0)[0]
    train, val = tl.validation_split(pool, VALIDATION_SIZE, seed=0)
    models = []
    for seed in SEEDS:
        model = tl.make_model("cnn", widths=WIDTHS, seed=seed)
        tl.fit(model, train, steps=SOURCE_STEPS, batch_size=64, lr=2e-3, seed=seed, progress=False)
        models.append(model.eval())
    return dict(train=train, val=val, raw=raw, framed=framed, models=models)


def dann(init, source, target, lam, seed, steps=ADAPT_STEPS, checkpoints=1):
    """The chapter's DANN: a copy of init fine-tuned with gradient reversal; the model after each checkpoint."""
    model = copy.deepcopy(init)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.discriminator = nn.Sequential(nn.Linear(model.feature_dim, 100), nn.ReLU(), nn.Linear(100, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    done = [0]

    def step(model, batch):
        (x_s, y_s), (x_t,) = batch
        p = done[0] / steps
        done[0] += 1
        for group in optimizer.param_groups:
            group["lr"] = adapt.dann_lr(p, 0.01)
        f = model.features(torch.cat([x_s, x_t]))
        d = model.discriminator(adapt.grad_reverse(f, lam * adapt.dann_lambda(p))).squeeze(1)
        domain = torch.cat([d.new_ones(len(x_s)), d.new_zeros(len(x_t))])
        return F.cross_entropy(model.head(f[: len(x_s)]), y_s) + F.binary_cross_entropy_with_logits(d, domain)

    snapshots = []
    for k in range(checkpoints):
        tl.fit(model, (source, target.unlabelled()), step, steps=steps // checkpoints, batch_size=64,
               optimizer=optimizer, schedule="constant", seed=1000 * seed + k, progress=False)
        snapshots.append(copy.deepcopy(model).eval())
    return snapshots


def test_framing_raises_source_only_accuracy(data):
    for model in data["models"]:
        raw, framed = tl.evaluate(model, data["raw"]["test"]), tl.evaluate(model, data["framed"]["test"])
        assert framed > raw + 0.03, f"framing: {raw:.3f} -> {framed:.3f}"


def test_adabn_beats_source_only_by_a_wide_margin(data):
    target = data["framed"]["train"].unlabelled()
    for model in data["models"]:
        before = tl.evaluate(model, data["framed"]["test"])
        adapted = adapt.recompute_batchnorm(copy.deepcopy(model), target, batch_size=len(target))
        after = tl.evaluate(adapted, data["framed"]["test"])
        assert after > before + 0.08, f"AdaBN: {before:.3f} -> {after:.3f}"


def test_adaptation_beats_source_only_and_the_im_rule_lands_between_source_only_and_oracle(data):
    test, target = data["framed"]["test"], data["framed"]["train"].unlabelled()
    for seed, model in zip(SEEDS, data["models"]):
        source_only = tl.evaluate(model, test)
        control = dann(model, data["train"], data["framed"]["train"], 0.0, seed, checkpoints=2)
        adversarial = dann(model, data["train"], data["framed"]["train"], 1.0, seed, checkpoints=2)
        assert tl.evaluate(control[-1], test) > source_only + 0.02, "fine-tuning with target batches (lambda 0)"
        candidates = [model] + control + adversarial
        # no target label: minus the information-maximisation loss of the target predictions
        chosen = max(candidates, key=lambda m: -float(adapt.information_maximization(tl.predict(m, target))))
        oracle = max(tl.evaluate(m, test) for m in candidates)
        assert source_only < tl.evaluate(chosen, test) <= oracle


def adda(source_model, source, target, seed, steps=300):
    """The chapter's ADDA stage 2: target encoder from source_model, classifier fixed, inverted-label GAN loss."""
    source_model.eval()
    model = copy.deepcopy(source_model).requires_grad_(True)
    model.head.requires_grad_(False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.discriminator = nn.Sequential(nn.Linear(model.feature_dim, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(),
                                            nn.Linear(500, 1))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4, betas=(0.5, 0.999))

    def step(model, batch):
        (x_s, _), (x_t,) = batch
        with torch.no_grad():
            f_s = source_model.features(x_s)
        f_t = model.features(x_t)
        D = model.discriminator
        frozen = {k: v.detach() for k, v in D.named_parameters()}
        loss_d, loss_m = adapt.adda_losses(D(f_s).squeeze(1), D(f_t.detach()).squeeze(1),
                                           torch.func.functional_call(D, frozen, (f_t,)).squeeze(1))
        return loss_d + loss_m

    tl.fit(model, (source, target), step, steps=steps, batch_size=64, optimizer=optimizer, schedule="constant",
           seed=1000 * seed, progress=False)
    return model.eval()


def test_adda_adds_nothing_over_its_adabn_control(load_or_skip):
    try:
        esl = {s: frame(tl.load_dataset("usps-esl", s, size=16)) for s in ("train", "test")}
    except (FileNotFoundError, RuntimeError, ImportError) as err:
        pytest.skip(f"usps-esl unavailable: {err}")
    (mnist,) = load_or_skip(("mnist", "train"))
    source = tl.random_split(mnist, [2000, len(mnist) - 2000], seed=5)[0]
    target = tl.random_split(esl["train"], [1800, len(esl["train"]) - 1800], seed=5)[0].unlabelled()
    for seed in SEEDS:
        model = tl.make_model("cnn", widths=WIDTHS, seed=seed)
        tl.fit(model, source, steps=SOURCE_STEPS, batch_size=64, lr=2e-3, seed=seed, progress=False)
        source_only = tl.evaluate(model.eval(), esl["test"])
        control = tl.evaluate(adapt.recompute_batchnorm(copy.deepcopy(model), target, batch_size=len(target)), esl["test"])
        adapted = tl.evaluate(adda(model, source, target, seed), esl["test"])
        assert adapted < control + 0.01, f"ADDA {adapted:.3f} vs AdaBN {control:.3f}"
        assert adapted > source_only - 0.06, f"ADDA collapsed: {adapted:.3f} vs source-only {source_only:.3f}"


def test_unlabelled_target_labels_cannot_reach_a_step_or_evaluation(data):
    target = data["framed"]["train"].unlabelled()
    seen = []

    def step(model, batch):
        (x_s, y_s), target_batch = batch
        seen.append(len(target_batch))          # (images,) only: no labels in the batch
        return F.cross_entropy(model(x_s), y_s) + 0 * model(target_batch[0]).sum()

    model = copy.deepcopy(data["models"][0])
    tl.fit(model, (data["train"], target), step, steps=3, batch_size=32, progress=False)
    assert seen == [1, 1, 1]
    with pytest.raises(ValueError, match="no labels"):
        target.labels
    with pytest.raises(ValueError, match="no labels"):
        tl.evaluate(model, target)
