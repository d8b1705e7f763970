"""Claim of Chapter 5 (book/05_distillation.ipynb), checked with real runs at a size CPU CI can afford.

A small student distilled from a teacher's soft targets beats the same student trained alone on the
same images with their hard labels, at an equal number of steps.

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

import tlbook as tl

TEACHER_SIZE = 20_000
TRANSFER_SIZE = 2_000
SEEDS = (0, 1, 2)
STEPS = 1_500
LR = 1e-3
TEMPERATURE, ALPHA = 4.0, 0.9
STUDENT = dict(hidden=(100, 100))
MARGIN = 0.015  # mean accuracy gain required (measured: +3.5 points)


def distillation_step(student, batch):
    """The chapter's step: the transfer set carries the teacher's logits as a column."""
    images, labels, teacher_logits = batch
    return tl.distillation_loss(student(images), teacher_logits, labels, TEMPERATURE, ALPHA)


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

    result = {"teacher": tl.evaluate(teacher, test), "alone": [], "distilled": []}
    for seed in SEEDS:
        transfer = tl.random_split(rest, [TRANSFER_SIZE, len(rest) - TRANSFER_SIZE], seed=seed)[0]
        alone = tl.make_model("mlp", seed=seed, **STUDENT)
        tl.fit(alone, transfer, steps=STEPS, lr=LR, seed=seed, progress=False)
        result["alone"].append(tl.evaluate(alone, test))

        with_teacher = transfer.with_columns(teacher_logits=tl.predict(teacher, transfer))
        distilled = tl.make_model("mlp", seed=seed, **STUDENT)
        tl.fit(distilled, with_teacher, distillation_step, steps=STEPS, lr=LR, seed=seed, progress=False)
        result["distilled"].append(tl.evaluate(distilled, test))
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

