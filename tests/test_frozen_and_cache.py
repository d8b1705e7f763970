"""Frozen stays frozen (train(), deepcopy, save/load, cache), outside models (torchvision ResNet-18),
the Conv-4 option, and the cache's key and stale-entry errors."""
import copy

import pytest
import torch

import tlbook as tl


def batch(n=8, channels=1, side=28, seed=0):
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


def bn_state(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def frozen_cnn():
    model = tl.make_model("cnn", widths=(4, 8), seed=0)
    model.train()
    model(batch())  # non-trivial running statistics first
    return tl.freeze(model, 1)


@pytest.mark.parametrize("how", ["model.train()", "model.body.train()", "block.train()", "deepcopy", "save/load"])
def test_a_frozen_block_keeps_its_batchnorm_statistics(how, tmp_path):
    model = frozen_cnn()
    before = bn_state(model.block("block1"))
    if how == "model.train()":
        model.train()
    elif how == "model.body.train()":
        model.body.train()
    elif how == "block.train()":
        model.block("block1").train()
    elif how == "deepcopy":
        model = copy.deepcopy(model)
        model.body.train()
    else:
        tl.save_model(model, tmp_path / "m.pt")
        model = tl.load_model(tmp_path / "m.pt", tl.make_model("cnn", widths=(4, 8), seed=5))
        assert not any(p.requires_grad for p in model.block("block1").parameters())
        assert all(p.requires_grad for p in model.block("block2").parameters())
        model.body.train()
    model(batch(seed=1))
    after = bn_state(model.block("block1"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the unfrozen block does learn its statistics
    assert model.block("block2")[1].num_batches_tracked.item() >= 1


def test_unfreeze_lets_statistics_move_again():
    model = frozen_cnn()
    tl.unfreeze(model)
    before = bn_state(model.block("block1"))
    model.body.train()
    model(batch(seed=2))
    assert not torch.equal(before["1.running_mean"], model.block("block1")[1].running_mean)


def test_cached_model_returns_the_same_frozen_state_on_a_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    data = tl.ImageData(batch(32), torch.arange(32) % 10, [str(d) for d in range(10)], "toy")

    def train(m):
        tl.freeze(m, 1)
        return tl.fit(m, data, steps=3, batch_size=8, progress=False)

    build = lambda: tl.make_model("cnn", widths=(4, 8), seed=0)
    miss, info_miss = tl.cached_model({"test": "frozen"}, build, train, name="t", verbose=False)
    hit, info_hit = tl.cached_model({"test": "frozen"}, build, train, name="t", verbose=False)
    assert not info_miss["cached"] and info_hit["cached"]
    assert tl.trainable_blocks(hit) == tl.trainable_blocks(miss)
    assert all(torch.equal(a, b) for a, b in zip(miss.state_dict().values(), hit.state_dict().values()))
    hit.train()
    hit(batch().to(next(hit.parameters()).device))
    assert torch.equal(hit.block("block1")[1].running_mean, miss.block("block1")[1].running_mean)


def test_a_miss_returns_a_model_that_predicts_exactly_like_the_hit(tmp_path, monkeypatch):
    """A run from an empty cache must repeat a run from a full one, to the last bit. tl.fit leaves the
    convolution weights channels_last, a loaded model has them contiguous, and the two layouts round
    differently (measured: 6e-7 in the logits, enough to change a distilled student's test errors)."""
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    data = tl.ImageData(batch(64, seed=3), torch.arange(64) % 10, [str(d) for d in range(10)], "toy")
    build = lambda: tl.make_model("cnn", widths=(16, 32, 64), seed=0)
    train = lambda m: tl.fit(m, data, steps=5, batch_size=16, progress=False)
    miss, info_miss = tl.cached_model({"test": "layout"}, build, train, name="t", verbose=False)
    hit, info_hit = tl.cached_model({"test": "layout"}, build, train, name="t", verbose=False)
    assert not info_miss["cached"] and info_hit["cached"]
    assert [p.stride() for p in miss.parameters()] == [p.stride() for p in hit.parameters()]
    assert torch.equal(tl.predict(miss, data), tl.predict(hit, data))


def test_a_torchvision_resnet18_works_with_the_transfer_tools():
    from torchvision.models import resnet18

    with torch.random.fork_rng():
        torch.manual_seed(0)
        original = resnet18(num_classes=10)  # random weights: nothing is downloaded
    net = tl.wrap_model(original, head="fc")
    assert net.block_names == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert net.feature_dim == 512
    x = batch(4, channels=3, side=32)
    net.eval(), original.eval()
    torch.testing.assert_close(net(x), original(x))
    assert net.features(x).shape == (4, 512)
    tl.freeze(net, 3)
    stats = bn_state(net.block("layer2"))
    weights = {k: v.clone() for k, v in net.block("layer2").state_dict().items()}
    top = {k: v.clone() for k, v in net.block("layer4").state_dict().items()}
    data = tl.ImageData(batch(16, channels=3, side=32), torch.arange(16) % 10, [str(d) for d in range(10)], "rgb")
    tl.fit(net, data, steps=2, batch_size=8, progress=False)
    assert all(torch.equal(weights[k], v) for k, v in net.block("layer2").state_dict().items())
    assert all(torch.equal(stats[k], v) for k, v in bn_state(net.block("layer2")).items())
    moved = net.block("layer4").state_dict()
    assert not torch.equal(top["0.0.conv1.weight"], moved["0.0.conv1.weight"])  # trainable blocks do train
    groups = tl.param_groups(net, 1e-3, decay=0.5)
    assert [g["name"] for g in groups] == ["head", "layer4", "layer3"]
    tl.reset_head(net, 5)
    assert net(x).shape == (4, 5)


def test_wrap_model_checks_what_it_wraps():
    from torchvision.models import resnet18

    with pytest.raises(ValueError, match="head must name the model's final nn.Linear child; got 'classifier'.*\\['fc'\\]"):
        tl.wrap_model(resnet18(), head="classifier")
    with pytest.raises(ValueError, match="missing"):
        tl.wrap_model(resnet18(), head="fc", blocks={"stem": ["conv1", "bn1", "relu", "maxpool"], "rest": ["layer1"]})


def test_conv4_is_the_papers_64_dimensional_embedding():
    conv4 = tl.make_model("cnn", widths=(64, 64, 64, 64), pool="global", num_classes=5)
    assert conv4.block_names == ["block1", "block2", "block3", "block4"] and conv4.feature_dim == 64
    assert conv4.features(batch(3)).shape == (3, 64)
    # four 3x3 convolutions of 64 channels (no bias: BatchNorm's shift makes it redundant) + BatchNorm scale and shift;
    # the papers' code keeps the redundant bias, 256 parameters more
    expected = (1 * 64 * 9 + 2 * 64) + 3 * (64 * 64 * 9 + 2 * 64)
    assert sum(p.numel() for p in conv4.body.parameters()) == expected == 111_680
    transductive = tl.make_model("cnn", widths=(8,), track_running_stats=False)
    assert transductive.block("block1")[1].running_mean is None


def test_cache_key_refuses_what_has_no_stable_text():
    with pytest.raises(TypeError, match=r"config\['augment'\] is a function"):
        tl.cache.config_key({"augment": lambda x: x})
    with pytest.raises(TypeError, match="is a object"):
        tl.cache.config_key({"nested": [1, {"x": object()}]})
    assert tl.cache.config_key({"a": 1, "b": [1, 2]}) == tl.cache.config_key({"b": (1, 2), "a": 1})


def test_a_stale_entry_says_so_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    data = tl.ImageData(batch(16), torch.arange(16) % 10, [str(d) for d in range(10)], "toy")
    train = lambda m: tl.fit(m, data, steps=1, batch_size=8, progress=False)
    tl.cached_model({"arch": "cnn"}, lambda: tl.make_model("cnn", widths=(4, 8)), train, name="stale", verbose=False)
    with pytest.raises(RuntimeError, match="another architecture.*add the missing setting.*delete"):
        tl.cached_model({"arch": "cnn"}, lambda: tl.make_model("cnn", widths=(4, 16)), train, name="stale", verbose=False)


def test_source_model_is_keyed_by_its_arguments(tmp_path, monkeypatch, load_or_skip):
    load_or_skip(("usps", "train"))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    kwargs = dict(dataset="usps", arch="mlp", hidden=(16,), train_size=200, epochs=1, seed=0)
    first, info = tl.source_model(**kwargs)
    again, info_again = tl.source_model(**kwargs)
    other, info_other = tl.source_model(**dict(kwargs, seed=1))
    assert not info["cached"] and info_again["cached"] and not info_other["cached"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert len(list((tmp_path / "models").glob("source-usps-mlp-*.pt"))) == 2
    with pytest.raises(TypeError, match="has no stable text form"):
        tl.source_model(**dict(kwargs, hidden=(16,), widths=object()))



def test_source_model_trains_on_the_first_split_of_a_dataset_without_train(tmp_path, monkeypatch, load_or_skip):
    background, = load_or_skip(("omniglot", "background"))
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    model, info = tl.source_model("omniglot", "mlp", hidden=(8,), train_size=64, epochs=1, seed=0)
    assert not info["cached"] and model.head.out_features == background.num_classes

BAD_MODELS = [
    (lambda: tl.make_model("cnn", widths=(4, 8), pool="globl"), "Did you mean 'global'"),
    (lambda: tl.make_model("cnn", width=(4,)), "Unknown option of 'cnn' 'width'.*'widths'"),
    (lambda: tl.make_model("cnn", num_classes=2.5), "num_classes must be a whole number"),
    (lambda: tl.make_model("mlp", in_channels=0), "in_channels must be >= 1"),
    (lambda: tl.make_model("mlp", seed=-3), "seed must be >= 0"),
    (lambda: tl.make_model("mlp", dropout=1.5), "dropout must be in \\[0, 1\\)"),
    (lambda: tl.make_model("cnn", widths=(4, 0)), "positive int width"),
    (lambda: tl.reset_head(tl.make_model("mlp"), 0), "num_classes must be >= 1"),
    (lambda: tl.reset_head(torch.nn.Linear(2, 2), 3), "tl.wrap_model"),
    (lambda: tl.freeze(tl.make_model("cnn"), 1.5), "depth must be a whole number"),
    (lambda: tl.freeze(tl.make_model("cnn"), 4), "depth must be between 0 and 3"),
    (lambda: tl.freeze(tl.make_model("cnn"), "blok2"), "Did you mean 'block2'"),
    (lambda: tl.freeze(tl.make_model("cnn"), bn="eval"), "Unknown bn mode"),
    (lambda: tl.freeze(torch.nn.Linear(2, 2)), "tl.wrap_model"),
    (lambda: tl.freeze(tl.make_model("cnn"), {"block1"}), "blocks must be None, an int depth"),
    (lambda: tl.wrap_model("resnet", head="fc"), "wrap_model needs an nn.Module"),
]


@pytest.mark.parametrize("call, message", BAD_MODELS, ids=[m[:30] for _, m in BAD_MODELS])
def test_bad_input_models_and_transfer(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()
