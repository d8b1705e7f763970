"""Claims of Chapter 7, case 7.2 (zero-shot digits), checked with real runs at a size CPU CI can afford.

On seeded seen/unseen splits of MNIST (3 unseen digits, chance 1/3), a CNN trained on the seven seen
digits only, and the digits' attribute descriptions (seven-segment code plus four stroke attributes):

1. Zero-shot: averaged over the splits, DAP's and ESZSL's unseen-class accuracy is well above chance and
   above the control in which the unseen digits' descriptions are swapped round.
2. Generalised setting (all ten digits compete): on every split and for every method, the unseen digits'
   accuracy falls far below its zero-shot value, and for DAP and ESZSL the seen digits' accuracy is far
   above the unseen digits': the bias towards seen classes.

The chapter chooses hyperparameters by class-wise validation; to stay at CI size this test fixes them at
values the chapter's validation often picks (ESZSL gamma = 100, lambda = 10; DAP L2 penalty 0.01). Data
from ``TLBOOK_DATA``; nothing is cached. Margins were measured on this setup (see the comments).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tlbook as tl

SPLITS = (0, 1, 2)
PER_CLASS, TEST_SIZE, EPOCHS = 200, 3000, 2
GAMMA, LAM, DECAY = 100.0, 10.0, 1e-2
ATTRIBUTES = torch.tensor([  # a b c d e f g, loop above, loop below, diagonal, curved (the chapter's table)
    [1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1],
    [1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1], [0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0], [1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1],
    [1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1], [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
    [1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1]], dtype=torch.float64)


def per_class_accuracy(predicted, labels, classes):
    return sum(float((predicted[labels == k] == k).double().mean()) for k in classes) / len(classes)


def zero_shot(scores, labels, unseen):
    u = torch.tensor(unseen)
    mask = torch.isin(labels, u)
    return per_class_accuracy(u[scores[mask][:, u].argmax(1)], labels[mask], unseen)


def run_split(split, train, test):
    order = torch.randperm(10, generator=torch.Generator().manual_seed(split)).tolist()
    seen, unseen = sorted(order[3:]), sorted(order[:3])
    data = tl.per_class_subset(tl.class_subset(train, seen), PER_CLASS, seed=split)
    model = tl.make_model("cnn", num_classes=7, widths=(16, 32, 64), seed=split)
    tl.fit(model, data, epochs=EPOCHS, lr=3e-3, seed=split, progress=False)
    model.eval()
    with torch.no_grad():
        f_train, f_test = model.features(data.images).double(), model.features(test.images).double()
        logits = model.head(f_test.float()).double()
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    s = torch.tensor(seen)
    normalised = F.normalize(ATTRIBUTES, dim=1)
    V = tl.zeroshot.eszsl(f_train, normalised[s], data.labels, gamma=GAMMA, lam=LAM)
    scores = {"ESZSL": tl.zeroshot.eszsl_scores(f_test, V, normalised)}
    varies = ATTRIBUTES[s].std(0) > 0
    targets = ATTRIBUTES[s][:, varies]
    linear = nn.Linear(f_train.shape[1], int(varies.sum()))
    nn.init.zeros_(linear.weight), nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(linear(f_train.float()), targets[data.labels].float())
        loss = loss + DECAY * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        probs = torch.sigmoid(linear(f_test.float())).double()
    scores["DAP"] = tl.zeroshot.dap_scores(probs, ATTRIBUTES[:, varies], targets.mean(0))
    scores["ConSE"] = tl.zeroshot.conse_scores(logits.softmax(1), ATTRIBUTES[s], ATTRIBUTES, 2)
    u = torch.tensor(unseen)
    result = {}
    for name, sc in scores.items():
        swapped = sum(zero_shot(sc.index_copy(1, u, sc[:, u.roll(r)]), test.labels, unseen) for r in (1, 2)) / 2
        result[name] = dict(zsl=zero_shot(sc, test.labels, unseen), swapped=swapped,
                            **tl.zeroshot.generalised_accuracy(sc.argmax(1), test.labels, unseen))
    return unseen, result


@pytest.fixture(scope="module")
def runs(load_or_skip):
    train, test = load_or_skip(("mnist", "train"), ("mnist", "test"))
    test = tl.random_subset(test, TEST_SIZE, seed=0)
    out = [run_split(split, train, test) for split in SPLITS]
    for unseen, result in out:
        print(unseen, {m: {k: round(v, 3) for k, v in r.items()} for m, r in result.items()})
    return out


def test_zero_shot_accuracy_is_well_above_chance_and_above_swapped_descriptions(runs):
    for method in ("DAP", "ESZSL"):
        zsl = [r[method]["zsl"] for _, r in runs]
        swapped = [r[method]["swapped"] for _, r in runs]
        mean = sum(zsl) / len(zsl)
        # measured on the 2-core CPU: DAP 0.589, ESZSL 0.562 on average (chance 0.333); swapped 0.21, 0.22
        assert mean > 1 / 3 + 0.08, f"{method}: unseen accuracy per split {zsl}"
        assert mean > sum(swapped) / len(swapped) + 0.1, f"{method}: right {zsl}, swapped descriptions {swapped}"


def test_generalised_setting_is_biased_towards_seen_classes_on_every_split(runs):
    for unseen, result in runs:
        for method, r in result.items():
            # measured: unseen accuracy falls from 0.33-0.74 (zero-shot) to 0.00-0.26 when the seen digits compete,
            # seen accuracy 0.82-0.96 for DAP and ESZSL
            assert r["unseen"] < r["zsl"] - 0.15, f"split with unseen {unseen}, {method}: {r}"
            if method != "ConSE":
                assert r["seen"] > r["unseen"] + 0.3, f"split with unseen {unseen}, {method}: {r}"
