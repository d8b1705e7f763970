"""Tests of tlbook's runtime, models, training loop, transfer utilities and cache.

They check against independent computations (a plain reference loop, a naive translation) and
against states that must not change (frozen weights, BatchNorm statistics), on synthetic data
small enough for a CPU.
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

import tlbook as tl


def synthetic(n=600, classes=4, seed=0, size=28):
    """Noisy stripes, class k of period 2 + k//2, horizontal or vertical: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    pos = torch.arange(size, dtype=torch.float32)
    protos = []
    for k in range(classes):
        stripes = (torch.div(pos, 1 + k // 2, rounding_mode="floor") % 2).expand(size, size)
        protos.append(stripes if k % 2 == 0 else stripes.T)
    protos = torch.stack(protos)[:, None]
    images = (protos[labels] + 0.3 * torch.randn(n, 1, size, size, generator=gen)).clamp(0, 1)
    return tl.ImageData(images, labels, [f"c{k}" for k in range(classes)], "synthetic")


@pytest.fixture(scope="module")
def data():
    return tl.random_split(synthetic(), [400, 200], seed=0)


# --- runtime ---------------------------------------------------------------------------------


def test_quick_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TLBOOK_QUICK", "1")
    assert tl.is_quick() and tl.pick(full=10, quick=1) == 1
    monkeypatch.setenv("TLBOOK_QUICK", "0")
    assert not tl.is_quick() and tl.pick(full=10, quick=1) == 10
    monkeypatch.delenv("TLBOOK_QUICK")
    assert tl.pick(full="full", quick="quick") == "full"


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_precision_follows_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
    assert tl.precision(torch.device("cuda")) == expected


def test_cpu_runs_in_fp32():
    assert tl.precision(torch.device("cpu")) == "fp32"


def test_device_override_and_bad_value(monkeypatch):
    monkeypatch.setenv("TLBOOK_DEVICE", "cpu")
    assert tl.device() == torch.device("cpu")
    monkeypatch.setenv("TLBOOK_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="TLBOOK_DEVICE"):
        tl.device()


def test_setup_and_report_record_the_run(capsys):
    tl.setup(seed=3)
    record = tl.report()
    assert record["seed"] == 3 and record["precision"] == "fp32" and record["wall_time_s"] >= 0
    assert "wall time" in capsys.readouterr().out


# --- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch, blocks", [("cnn", 3), ("mlp", 2), ("resnet", 5)])
def test_models_have_named_body_blocks_and_a_head(arch, blocks):
    model = tl.make_model(arch, num_classes=7)
    x = torch.rand(5, 1, 28, 28)
    assert len(model.block_names) == blocks
    assert model.features(x).shape == (5, model.feature_dim)
    assert model(x).shape == (5, 7)


def test_make_model_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = tl.make_model("cnn", seed=1), tl.make_model("cnn", seed=1), tl.make_model("cnn", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_reset_head_replaces_only_the_head():
    model = tl.make_model("cnn")
    body = {k: v.clone() for k, v in model.body.state_dict().items()}
    tl.reset_head(model, 3)
    assert all(torch.equal(body[k], v) for k, v in model.body.state_dict().items())
    assert model.num_classes == 3 and model(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_unknown_names_list_valid_ones_and_closest_match():
    with pytest.raises(ValueError, match=r"Did you mean 'cnn'.*'mlp', 'cnn', 'resnet'"):
        tl.make_model("cnm")
    with pytest.raises(ValueError, match=r"Did you mean 'block2'"):
        tl.make_model("cnn").block("blok2")


# --- training loop ---------------------------------------------------------------------------


def test_fit_equals_a_plain_reference_loop(data):
    """Same seed, batches, optimiser and steps: tl.fit and a hand-written loop give the same weights."""
    train, _ = data
    ours = tl.make_model("mlp", num_classes=4, hidden=(32,), seed=0)
    ref = tl.make_model("mlp", num_classes=4, hidden=(32,), seed=0)
    tl.fit(ours, train, epochs=2, batch_size=64, lr=1e-2, schedule="constant", progress=False, seed=5)

    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(5)
    ref.train()
    for _ in range(2):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train), 64):
            idx = order[start : start + 64]
            loss = F.cross_entropy(ref(train.images[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)


def test_fit_learns_and_records_history(data):
    train, test = data
    model = tl.make_model("cnn", num_classes=4, widths=(8, 16, 16))
    before = tl.evaluate(model, test)
    history = tl.fit(model, train, epochs=3, batch_size=32, eval_data=test, progress=False)
    assert history["round"] == [1, 2, 3] and len(history["eval_acc"]) == 3
    assert history["step"][-1] == 3 * math.ceil(400 / 32)
    assert history["eval_acc"][-1] > max(before, 0.9)
    assert history["precision"] == "fp32"


def test_fit_is_reproducible(data):
    train, _ = data
    runs = []
    for _ in range(2):
        model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
        tl.fit(model, train, steps=6, progress=False, seed=1, augment=lambda x, g: tl.random_translate(x, 2, g))
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_fit_with_steps_records_ten_rounds(data):
    train, _ = data
    history = tl.fit(tl.make_model("mlp", num_classes=4, hidden=(8,)), train, steps=20, progress=False)
    assert len(history["train_loss"]) == 10 and history["step"][-1] == 20


def test_fit_with_two_datasets_passes_a_pair_of_batches(data):
    train, test = data
    seen = []

    def step(model, batch):
        (xs, ys), (xt, yt) = batch
        seen.append((xs.shape[0], xt.shape[0]))
        return F.cross_entropy(model(xs), ys) + F.cross_entropy(model(xt), yt)

    tl.fit(tl.make_model("mlp", num_classes=4, hidden=(8,)), (train, test), step, epochs=1, batch_size=100, progress=False)
    assert seen == [(100, 100)] * 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of epochs"),
        (dict(epochs=1, steps=2), "exactly one of epochs"),
        (dict(epochs=0), "epochs must be >= 1"),
        (dict(epochs=1, lr=-1.0), "lr must be > 0"),
        (dict(epochs=1, batch_size=0), "batch_size"),
        (dict(epochs=1, schedule="linear"), "Unknown schedule"),
        (dict(epochs=1, optimizer="adam"), "Did you mean 'adamw'"),
    ],
)
def test_fit_rejects_bad_arguments(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tl.fit(tl.make_model("mlp", num_classes=4, hidden=(8,)), data[0], progress=False, **kwargs)


def test_fit_says_when_the_head_is_too_small(data):
    with pytest.raises(ValueError, match=r"reset_head\(model, 4\)"):
        tl.fit(tl.make_model("mlp", num_classes=2, hidden=(8,)), data[0], epochs=1, progress=False)


def test_fit_stops_on_divergence(data):
    with pytest.raises(FloatingPointError, match="lower lr"):
        tl.fit(tl.make_model("mlp", num_classes=4, hidden=(8,)), data[0], epochs=2, lr=1e12, optimizer="sgd", progress=False)


def test_random_translate_is_a_shift_of_each_image():
    """Oracle: each output equals its input shifted by some (dy, dx) within the range, zero filled."""
    images = torch.rand(16, 2, 9, 9)
    shifted = tl.random_translate(images, 2, torch.Generator().manual_seed(0))
    padded = F.pad(images, (2, 2, 2, 2))
    for img, out in zip(padded, shifted):
        matches = [torch.equal(img[:, dy : dy + 9, dx : dx + 9], out) for dy in range(5) for dx in range(5)]
        assert any(matches)
    assert not torch.equal(shifted, images)


# --- transfer --------------------------------------------------------------------------------


def _body_state(model):
    return {k: v.clone() for k, v in model.body.state_dict().items()}


def test_frozen_body_weights_and_bn_statistics_are_bit_identical_after_training(data):
    model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
    tl.freeze(model)
    before = _body_state(model)
    tl.fit(model, data[0], epochs=2, progress=False)
    after = model.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a frozen body changed"


def test_requires_grad_alone_lets_bn_statistics_drift(data):
    """The pitfall the freeze fixes: bn='train' leaves running statistics updating in train mode."""
    model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
    tl.freeze(model, bn="train")
    before = _body_state(model)
    tl.fit(model, data[0], epochs=1, progress=False)
    after = model.body.state_dict()
    assert not torch.equal(before["block1.1.running_mean"], after["block1.1.running_mean"])
    assert torch.equal(before["block1.0.weight"], after["block1.0.weight"])


def test_freeze_by_depth_freezes_the_first_blocks_only(data):
    model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
    tl.freeze(model, 1)
    before = _body_state(model)
    tl.fit(model, data[0], epochs=1, progress=False)
    after = model.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("block1."))
    assert not torch.equal(before["block2.0.weight"], after["block2.0.weight"])
    assert tl.trainable_blocks(model)["block1"][0] == 0


def test_unfreeze_restores_training_and_bn_updates(data):
    model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
    tl.unfreeze(tl.freeze(model))
    before = _body_state(model)
    tl.fit(model, data[0], epochs=1, progress=False)
    assert not torch.equal(before["block1.1.running_mean"], model.body.state_dict()["block1.1.running_mean"])


def test_freeze_rejects_bad_selections():
    model = tl.make_model("cnn")
    with pytest.raises(ValueError, match="Did you mean 'block3'"):
        tl.freeze(model, ["block4"])
    with pytest.raises(ValueError, match="depth must be between 0 and 3"):
        tl.freeze(model, 4)
    with pytest.raises(ValueError, match="Unknown bn mode"):
        tl.freeze(model, bn="fixed")
    with pytest.raises(TypeError, match="BodyHeadNet"):
        tl.freeze(torch.nn.Linear(2, 2))


def test_param_groups_give_lower_blocks_smaller_rates():
    model = tl.make_model("cnn")
    groups = {g["name"]: g["lr"] for g in tl.param_groups(model, lr=1e-2, decay=0.1, lrs={"block1": 5e-3})}
    assert groups == pytest.approx({"head": 1e-2, "block3": 1e-3, "block2": 1e-4, "block1": 5e-3})
    tl.freeze(model, 2)
    assert [g["name"] for g in tl.param_groups(model, lr=1e-2)] == ["head", "block3"]
    with pytest.raises(ValueError, match="decay"):
        tl.param_groups(model, lr=1e-2, decay=2.0)


def test_param_groups_drive_fit(data):
    model = tl.make_model("cnn", num_classes=4, widths=(8, 8, 8))
    opt = torch.optim.AdamW(tl.param_groups(model, lr=1e-2, decay=0.0 + 1e-9))
    before = _body_state(model)
    tl.fit(model, data[0], epochs=1, optimizer=opt, progress=False)
    after = model.body.state_dict()
    # block1's rate is 1e-2 * 1e-27: its weights move by less than float precision can show.
    torch.testing.assert_close(before["block1.0.weight"], after["block1.0.weight"])
    assert not torch.equal(before["block3.0.weight"], after["block3.0.weight"])


# --- cache -----------------------------------------------------------------------------------


def test_cached_model_trains_once_and_reloads_the_same_weights(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    calls = []

    def train(model):
        calls.append(1)
        return tl.fit(model, data[0], epochs=1, progress=False)

    def build():
        return tl.make_model("mlp", num_classes=4, hidden=(16,))

    first, info1 = tl.cached_model({"arch": "mlp", "epochs": 1}, build, train, name="t", verbose=False)
    second, info2 = tl.cached_model({"epochs": 1, "arch": "mlp"}, build, train, name="t", verbose=False)
    assert calls == [1] and not info1["cached"] and info2["cached"]
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    assert info2["history"]["train_loss"] == pytest.approx(info1["history"]["train_loss"])
    third, info3 = tl.cached_model({"arch": "mlp", "epochs": 2}, build, train, name="t", verbose=False)
    assert calls == [1, 1] and info3["path"] != info1["path"]


def test_save_atomic_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "x.pt"
    with pytest.raises(Exception):
        tl.cache.save_atomic({"f": lambda: 0}, target)  # lambdas cannot be pickled
    assert os.listdir(tmp_path) == []


class NotWeights:
    """A pickled object of this class would run code on load: weights_only must refuse it."""


def test_load_weights_refuses_code_and_reports_corrupt_files(tmp_path):
    torch.save(NotWeights(), tmp_path / "code.pt")
    with pytest.raises(RuntimeError, match="Delete it"):
        tl.cache.load_weights(tmp_path / "code.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match="Delete it"):
        tl.cache.load_weights(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        tl.cache.load_weights(tmp_path / "missing.pt")
    tl.cache.save_atomic({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(tl.cache.load_weights(tmp_path / "ok.pt")["w"], torch.ones(2))
