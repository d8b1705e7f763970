"""ImageData 0.2: per-example columns, unlabelled data, labels checked at construction, validation splits."""
import pytest
import torch

import tlbook as tl


def make_data(n=60, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=g)
    labels = torch.arange(n) % classes
    return tl.ImageData(images, labels, [f"c{k}" for k in range(classes)], "toy")


def test_columns_follow_subsets_splits_moves_and_batches():
    data = make_data()
    rows = torch.arange(len(data))
    with_cols = data.with_columns(row=rows, double=rows[:, None].float() * 2)
    assert list(with_cols.columns) == ["row", "double"]
    part = with_cols.subset(torch.tensor([5, 2, 7]))
    assert part.columns["row"].tolist() == [5, 2, 7]
    assert part.columns["double"][:, 0].tolist() == [10.0, 4.0, 14.0]
    for piece in tl.random_split(with_cols, [20, 40], seed=3) + list(tl.validation_split(with_cols, 12)):
        # every row's column still belongs to the same image
        assert torch.equal(piece.images, data.images[piece.columns["row"]])
        assert torch.equal(piece.labels, data.labels[piece.columns["row"]])
    small = tl.per_class_subset(with_cols, 2, seed=1)
    assert torch.equal(small.images, data.images[small.columns["row"]])
    moved = with_cols.to("cpu")
    assert moved.columns["row"].device.type == "cpu"
    images, labels, row, double = with_cols[torch.tensor([4, 9])]
    assert row.tolist() == [4, 9] and labels.tolist() == data.labels[[4, 9]].tolist()
    assert list(with_cols.without_columns("double").columns) == ["row"]
    assert with_cols.without_columns().columns == {}


def test_fit_hands_columns_to_the_step_in_order():
    data = make_data().with_columns(row=torch.arange(60), weight=torch.ones(60))
    seen = []

    def step(model, batch):
        images, labels, row, weight = batch
        seen.append(bool(torch.equal(labels, data.labels[row])) and torch.equal(weight, torch.ones_like(weight)))
        return (weight * torch.nn.functional.cross_entropy(model(images), labels, reduction="none")).mean()

    tl.fit(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), data, step, epochs=2, batch_size=16, progress=False)
    assert seen and all(seen)


def test_unlabelled_data_never_hands_out_labels():
    target = make_data().with_columns(domain=torch.ones(60, dtype=torch.long)).unlabelled()
    assert not target.has_labels and "unlabelled" in repr(target)
    with pytest.raises(ValueError, match="has no labels"):
        target.labels
    with pytest.raises(ValueError, match="has no labels"):
        tl.evaluate(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), target)
    with pytest.raises(ValueError, match="default cross-entropy step"):
        tl.fit(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), target, steps=1, progress=False)
    batches = []

    def step(model, batch):
        batches.append(len(batch))
        images, domain = batch  # no labels: exactly (images, *columns)
        return model(images).logsumexp(1).mean()

    tl.fit(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), target, step, steps=3, batch_size=8, progress=False)
    assert batches == [2, 2, 2]
    assert len(tl.predict(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), target)) == 60


def test_labels_of_a_source_and_target_pair_cannot_leak():
    source, target = make_data(seed=0), make_data(seed=1).unlabelled()

    def step(model, batch):
        (x_s, y_s), (x_t,) = batch  # the target part has no labels to unpack
        return torch.nn.functional.cross_entropy(model(x_s), y_s) + 0 * model(x_t).sum()

    tl.fit(tl.make_model("mlp", num_classes=3, image_size=4, hidden=(8,)), (source, target), step, steps=4,
           batch_size=8, progress=False)


def test_labels_are_checked_at_construction():
    images = torch.rand(4, 1, 2, 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\].*got values in \[0, 12\]"):
        tl.ImageData(images, torch.tensor([0, 1, 12, 3]), [str(d) for d in range(10)])
    with pytest.raises(ValueError, match="got values in \\[-1, 1\\]"):
        tl.ImageData(images, torch.tensor([0, 1, -1, 1]), ["a", "b"])


def test_validation_split_is_stratified_disjoint_and_seeded():
    data = make_data(n=300, classes=3).with_columns(row=torch.arange(300))
    train, val = tl.validation_split(data, 30, seed=0)
    assert len(train) == 270 and len(val) == 30
    assert set(train.columns["row"].tolist()).isdisjoint(val.columns["row"].tolist())
    assert val.class_counts().tolist() == [10, 10, 10]
    again = tl.validation_split(data, 30, seed=0)[1]
    other = tl.validation_split(data, 30, seed=1)[1]
    assert torch.equal(again.columns["row"], val.columns["row"])
    assert not torch.equal(other.columns["row"], val.columns["row"])
    assert len(tl.validation_split(data, 0.2)[1]) == 60


def test_validation_split_by_class_holds_out_whole_classes():
    data = make_data(n=120, classes=12)
    train, val = tl.validation_split(data, 3, seed=0, by="class")
    assert val.num_classes == 3 and train.num_classes == 9
    assert set(val.classes).isdisjoint(train.classes)
    assert sorted(set(val.labels.tolist())) == [0, 1, 2]
    assert len(train) + len(val) == len(data)


def test_random_subset_draws_without_replacement():
    data = make_data().with_columns(row=torch.arange(60))
    sub = tl.random_subset(data, 25, seed=4)
    assert len(sub) == 25 and len(set(sub.columns["row"].tolist())) == 25
    assert torch.equal(sub.columns["row"], tl.random_subset(data, 25, seed=4).columns["row"])


def test_per_class_subset_is_unchanged_by_the_rewrite():
    # the 0.1 algorithm (seeded CPU permutation, rank within class): the chapters' stored subsets depend on it
    data = make_data(n=30, classes=3).with_columns(row=torch.arange(30))
    order = torch.randperm(30, generator=torch.Generator().manual_seed(7))
    expected = [int(i) for i in order if sum(int(data.labels[j]) == int(data.labels[i]) for j in order[: list(order).index(i)]) < 2]
    assert sorted(tl.per_class_subset(data, 2, seed=7).columns["row"].tolist()) == sorted(expected)


BAD_DATA = [
    (lambda: tl.ImageData((torch.rand(4, 1, 2, 2) * 255).to(torch.uint8), torch.zeros(4, dtype=torch.long), ["a"]), "images.float\\(\\) / 255"),
    (lambda: tl.ImageData(torch.rand(4, 1, 2, 2).double(), torch.zeros(4, dtype=torch.long), ["a"]), "float32"),
    (lambda: tl.ImageData(torch.rand(4, 1, 2, 2) * 255, torch.zeros(4, dtype=torch.long), ["a"]), "divide by 255"),
    (lambda: tl.ImageData(torch.rand(4, 2, 2), torch.zeros(4, dtype=torch.long), ["a"]), "images must be \\(N, C, H, W\\)"),
    (lambda: tl.ImageData(torch.rand(4, 1, 2, 2), torch.zeros(4), ["a"]), "labels must be integers"),
    (lambda: tl.ImageData(torch.rand(4, 1, 2, 2), torch.zeros(3, dtype=torch.long), ["a"]), "labels must be \\(N,\\)"),
    (lambda: make_data().with_columns(w=torch.ones(5)), "column 'w' must have one row per example"),
    (lambda: make_data().with_columns(labels=torch.ones(60)), "column names"),
    (lambda: make_data().with_columns(w=[1.0] * 60), "column 'w' must be a tensor"),
    (lambda: make_data().with_columns(w=torch.ones(60)).with_columns(w=torch.ones(60)), "already has a column 'w'"),
    (lambda: make_data().without_columns("teacher"), "Unknown column 'teacher'"),
    (lambda: make_data().subset(torch.ones(60, dtype=torch.bool)), "integer indices"),
    (lambda: make_data().replace(pixels=1), "unknown fields"),
    (lambda: tl.per_class_subset(make_data(), 2.5), "per_class must be a whole number"),
    (lambda: tl.per_class_subset(make_data(), True), "per_class must be a whole number"),
    (lambda: tl.per_class_subset(make_data(), 0), "per_class must be >= 1"),
    (lambda: tl.per_class_subset(make_data(), 1, seed=-1), "seed must be >= 0"),
    (lambda: tl.random_split(make_data(), [0.5, 30]), "mixes fractions and counts"),
    (lambda: tl.random_split(make_data(), [10.5, 20.5, 29.0]), "fractions must lie in \\[0, 1\\] and sum to 1"),
    (lambda: tl.random_split(make_data(), [50, 20]), "cannot split into parts"),
    (lambda: tl.random_split(make_data(), []), "at least one part"),
    (lambda: tl.random_subset(make_data(), 61), "size must be <= 60"),
    (lambda: tl.validation_split(make_data(), 60), "size must be <= 59"),
    (lambda: tl.validation_split(make_data(), 1.5), "fraction must lie in \\(0, 1\\)"),
    (lambda: tl.validation_split(make_data(), 5, by="classes"), "Did you mean 'class'"),
    (lambda: tl.class_subset(make_data(), ["c9"]), "Unknown class 'c9'"),
    (lambda: tl.class_subset(make_data(), [0, 0]), "without repeats"),
    (lambda: tl.class_subset(make_data(), [1.5]), "class must be a whole number"),
    (lambda: list(tl.data.batches(10, 2.5)), "batch_size must be a whole number"),
    (lambda: tl.per_class_subset(make_data().unlabelled(), 1), "has no labels"),
]


@pytest.mark.parametrize("call, message", BAD_DATA, ids=[m for _, m in BAD_DATA])
def test_bad_input_data(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
