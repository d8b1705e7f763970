"""Claim of Chapter 5 (book/05_distillation.ipynb), checked with real runs at a size CPU CI can afford.

A small student distilled from a teacher's soft targets beats the same student trained alone on the
same images with their hard labels, at an equal number of steps; and it beats the two controls of the
chapter's second edition, at equal data and steps: a student trained on the teacher's hard labels
(its argmax, the pseudo-labels of self-training), and a student trained with the same loss on
label smoothing of the same entropy as the teacher's soft targets (the teacher's top class kept,
the rest spread uniformly; Yuan et al. 2020, Mueller et al. 2019). The smoothed student gets exactly
what the distilled one gets (same loss, T, alpha and labels) except the ranking of the wrong classes;
the hard-label student gets the teacher's argmax and no true label, as the chapter's KMNIST control
does. The chapter finds the opposite order there (hard pseudo-labels ahead of soft targets on KMNIST
with a 68%-accurate teacher, alpha = 1); this test asserts the order at its own setting, a 96%
teacher on MNIST, where it holds on every seed.

Setting (a scaled-down version of the chapter's): the teacher is an MLP with dropout trained on
20,000 MNIST images with +-2-pixel jitter; the transfer set is 2,000 other MNIST images; the student
is a 100-100 MLP trained for the same number of steps either on their labels alone or with the
distillation loss (T = 4, alpha = 0.9). Accuracy on the 10,000 MNIST test images, three seeds (the
seed picks the transfer set, the student's initialisation and its batch order).

The data comes from ``TLBOOK_DATA`` (CI sets it); the model cache is a fresh temporary folder, so
the teacher is really trained here. The margin was measured on this setup and set well below the
measured gap; with the teacher's logits replaced by random ones (std 7.7, like the teacher's) the
distilled student falls to 0.147 and the assertion fails.
"""

import pytest
import torch

import tlbook as tl

TEACHER_SIZE = 20_000
TRANSFER_SIZE = 2_000
SEEDS = (0, 1, 2)
STEPS = 1_500
LR = 1e-3
TEMPERATURE, ALPHA = 4.0, 0.9
STUDENT = dict(hidden=(100, 100))
MARGIN = 0.015  # mean accuracy gain required (measured: +3.5 points)
CONTROL_MARGIN = {"hard": 0.01, "smoothed": 0.005}  # gains over the controls required on average (measured: see below)


def distillation_step(student, batch):
    """The chapter's step: the transfer set carries the teacher's logits as a column."""
    images, labels, teacher_logits = batch
    return tl.distillation_loss(student(images), teacher_logits, labels, TEMPERATURE, ALPHA)


def entropy(p):
    return -(p * p.clamp_min(1e-30).log()).sum(1)


def same_entropy_smoothing(logits, T, iterations=60):
    """The chapter's control: logits T log u, u = q on the teacher's top class and (1 - q) / (K - 1) elsewhere,
    q solved by bisection so that H(u) = H(softmax(logits / T))."""
    p = (logits / T).softmax(1)
    n, k = p.shape
    goal = entropy(p)
    low, high = torch.full_like(goal, 1 / k), torch.full_like(goal, 1 - 1e-6)
    for _ in range(iterations):
        q = (low + high) / 2
        rest = (1 - q) / (k - 1)
        h = -(q * q.log() + (k - 1) * rest * rest.log())
        low, high = torch.where(h > goal, q, low), torch.where(h > goal, high, q)
    q = (low + high) / 2
    u = ((1 - q) / (k - 1)).unsqueeze(1).repeat(1, k)
    u[torch.arange(n, device=u.device), p.argmax(1)] = q
    return T * u.log()


@pytest.fixture(scope="module")
def runs(fresh_cache, load_or_skip):
    mnist, test = load_or_skip(("mnist", "train"), ("mnist", "test"))
    teacher_set, rest = tl.random_split(mnist, [TEACHER_SIZE, len(mnist) - TEACHER_SIZE], seed=0)
    jitter = lambda images, gen: tl.random_translate(images, 2, gen)
    teacher, _ = tl.cached_model(
        dict(test="claims-distillation", size=TEACHER_SIZE),
        build=lambda: tl.make_model("mlp", hidden=(800, 800), dropout=0.3, seed=0),
        train=lambda m: tl.fit(m, teacher_set, epochs=3, augment=jitter, seed=0, progress=False),
        name="test-ch05-teacher", verbose=False)

    result = {"teacher": tl.evaluate(teacher, test), "alone": [], "distilled": [], "hard": [], "smoothed": []}
    for seed in SEEDS:
        transfer = tl.random_split(rest, [TRANSFER_SIZE, len(rest) - TRANSFER_SIZE], seed=seed)[0]
        alone = tl.make_model("mlp", seed=seed, **STUDENT)
        tl.fit(alone, transfer, steps=STEPS, lr=LR, seed=seed, progress=False)
        result["alone"].append(tl.evaluate(alone, test))

        teacher_logits = tl.predict(teacher, transfer)
        with_teacher = transfer.with_columns(teacher_logits=teacher_logits)
        distilled = tl.make_model("mlp", seed=seed, **STUDENT)
        tl.fit(distilled, with_teacher, distillation_step, steps=STEPS, lr=LR, seed=seed, progress=False)
        result["distilled"].append(tl.evaluate(distilled, test))

        hard = tl.make_model("mlp", seed=seed, **STUDENT)   # the teacher's argmax as labels, plain cross-entropy
        tl.fit(hard, transfer.replace(labels=teacher_logits.argmax(1)), steps=STEPS, lr=LR, seed=seed, progress=False)
        result["hard"].append(tl.evaluate(hard, test))

        smoothing = same_entropy_smoothing(teacher_logits, TEMPERATURE)
        u = (smoothing / TEMPERATURE).softmax(1)
        assert torch.equal(u.argmax(1), teacher_logits.argmax(1))
        torch.testing.assert_close(entropy(u), entropy((teacher_logits / TEMPERATURE).softmax(1)), atol=1e-4, rtol=0)
        smoothed = tl.make_model("mlp", seed=seed, **STUDENT)
        tl.fit(smoothed, transfer.with_columns(teacher_logits=smoothing), distillation_step, steps=STEPS, lr=LR,
               seed=seed, progress=False)
        result["smoothed"].append(tl.evaluate(smoothed, test))
    print("MNIST test accuracy:", {k: [round(v, 4) for v in vs] if isinstance(vs, list) else round(vs, 4)
                                    for k, vs in result.items()})
    return result


def test_distilled_student_beats_the_student_trained_alone(runs):
    gains = [d - a for d, a in zip(runs["distilled"], runs["alone"])]
    # measured on a 2-core CPU (teacher 0.964): alone 0.902 / 0.904 / 0.909, distilled 0.941 / 0.939 /
    # 0.941, gains +3.8 / +3.5 / +3.2 points; 1.5 points is required on average, and a gain on every seed.
    assert min(gains) > 0, f"distillation lost on some seed: alone {runs['alone']}, distilled {runs['distilled']}"
    mean_gain = sum(gains) / len(gains)
    assert mean_gain >= MARGIN, f"mean gain {mean_gain:+.4f} < {MARGIN}: alone {runs['alone']}, distilled {runs['distilled']}"



@pytest.mark.parametrize("control", ["hard", "smoothed"])
def test_soft_targets_beat_the_controls_at_equal_data(runs, control):
    gains = [d - c for d, c in zip(runs["distilled"], runs[control])]
    # measured on a 2-core CPU (teacher 0.963): distilled 0.940 / 0.940 / 0.940, hard labels 0.908 / 0.905 / 0.908
    # (gains +3.2 / +3.5 / +3.2 points), same-entropy smoothing 0.924 / 0.927 / 0.923 (gains +1.6 / +1.3 / +1.7).
    assert min(gains) > 0, f"{control} beat distillation on some seed: {control} {runs[control]}, distilled {runs['distilled']}"
    mean_gain = sum(gains) / len(gains)
    assert mean_gain >= CONTROL_MARGIN[control], (
        f"mean gain over {control} {mean_gain:+.4f} < {CONTROL_MARGIN[control]}: {control} {runs[control]}, "
        f"distilled {runs['distilled']}")
