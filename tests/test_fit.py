"""fit 0.2: samplers, the step contract, the caller's random state, and model/data checks before the first step."""
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl


def toy(n=64, classes=4, side=6, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, channels, side, side, generator=g) * 0.5
    images[:, :, 0, 0] = labels[:, None].float() / classes  # learnable signal
    return tl.ImageData(images, labels, [str(k) for k in range(classes)], "toy")


def mlp(**kw):
    return tl.make_model("mlp", num_classes=4, image_size=6, hidden=(16,), **kw)


class LineTasks(tl.Sampler):
    """Regression tasks y = a x, drawn on the device: (x (T, K, 1), y (T, K, 1))."""

    def __init__(self, tasks=4, points=5):
        self.device, self.tasks, self.points = torch.device("cpu"), tasks, points
        self.draws = 0

    def sample(self, generator):
        self.draws += 1
        a = torch.rand(self.tasks, 1, 1, generator=generator) * 2
        x = torch.rand(self.tasks, self.points, 1, generator=generator) * 2 - 1
        return x, a * x


def test_fit_trains_from_a_sampler_once_per_step():
    tasks = LineTasks()
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def step(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y)

    history = tl.fit(net, tasks, step, steps=30, lr=1e-2, progress=False)
    assert tasks.draws == 30 and history["step"][-1] == 30 and len(history["round"]) == 10
    # same seed, same draws, same result
    first = tl.fit(_fresh_line_net(), LineTasks(), step, steps=10, seed=3, progress=False)["train_loss"]
    second = tl.fit(_fresh_line_net(), LineTasks(), step, steps=10, seed=3, progress=False)["train_loss"]
    assert first == second


def _fresh_line_net():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_fit_leaves_the_callers_random_state_as_it_found_it():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tl.fit(mlp(dropout=0.5), toy(), epochs=1, batch_size=16, seed=7, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_fit_is_reproducible_for_a_seed():
    runs = []
    for _ in range(2):
        model = mlp(seed=1, dropout=0.3)
        tl.fit(model, toy(), epochs=2, batch_size=16, seed=5, progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(*runs)


@pytest.mark.parametrize(
    "step, message",
    [
        (lambda model, batch: 0.5, "returned float"),
        (lambda model, batch: None, "returned NoneType"),
        (lambda model, batch: F.cross_entropy(model(batch[0]), batch[1], reduction="none"), "shape \\(16,\\).*\\.mean\\(\\)"),
        (lambda model, batch: F.cross_entropy(model(batch[0]), batch[1]).detach(), "without a gradient"),
        (lambda model, batch: batch[1].sum(), "torch.int64 tensor"),
    ],
    ids=["float", "None", "per-example", "detached", "integer"],
)
def test_bad_input_step_contract_fails_on_the_first_step(step, message):
    with pytest.raises((TypeError, ValueError), match=message) as info:
        tl.fit(mlp(), toy(), step, steps=5, batch_size=16, progress=False)
    assert "scalar tensor with a gradient" in str(info.value)


BAD_FIT = [
    (dict(data=toy(channels=3)), "first layer takes 36 inputs but toy has 3x6x6"),
    (dict(data=toy(side=8)), "size=28|image_size=8"),
    (dict(model=tl.make_model("cnn", num_classes=4, in_channels=3, widths=(4,))), "takes 3-channel images but toy has 1"),
    (dict(model=tl.make_model("cnn", num_classes=4, widths=(4,)), data=toy(channels=3)), "channels=1"),
    (dict(model=tl.make_model("mlp", num_classes=2, image_size=6, hidden=(4,))), "reset_head\\(model, 4\\)"),
    (dict(data=toy().subset(torch.arange(0))), "is empty"),
    (dict(data=[1, 2, 3]), "fit needs an ImageData"),
    (dict(step="cross_entropy"), "step must be a function"),
    (dict(steps=2.5), "steps must be a whole number"),
    (dict(steps=None, epochs=True), "epochs must be a whole number"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(seed=1.5), "seed must be a whole number"),
    (dict(augment="flip"), "augment must be a function"),
    (dict(eval_data=toy().unlabelled()), "eval_data must be labelled"),
    (dict(data=LineTasks(), steps=None, epochs=1), "a Sampler has no epochs"),
    (dict(optimizer="adam"), "Did you mean 'adamw'"),
]


@pytest.mark.parametrize("kwargs, message", BAD_FIT, ids=[m[:30] for _, m in BAD_FIT])
def test_bad_input_fit(kwargs, message):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", mlp())
    data = kwargs.pop("data", toy())
    step = kwargs.pop("step", tl.cross_entropy_step)
    kwargs.setdefault("steps", 2) if "epochs" not in kwargs else None
    if kwargs.get("steps") is None:
        kwargs.pop("steps", None)
    with pytest.raises((TypeError, ValueError), match=message):
        tl.fit(model, data, step, progress=False, **kwargs)


def test_bad_input_nan_lr_inside_parameter_groups():
    model = mlp()
    groups = tl.param_groups(model, 1e-3)
    opt = torch.optim.AdamW(groups)
    opt.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="parameter group 'head' has lr=nan"):
        tl.fit(model, toy(), optimizer=opt, steps=1, progress=False)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: tl.param_groups(mlp(), float("nan")), "lr must be a finite number"),
        (lambda: tl.param_groups(mlp(), 1e-3, decay=0.0), "decay must be > 0"),
        (lambda: tl.param_groups(mlp(), 1e-3, decay=1.5), "decay must be in \\(0, 1\\]"),
        (lambda: tl.param_groups(mlp(), 1e-3, lrs={"block1": -1.0}), "lrs\\['block1'\\] must be > 0"),
        (lambda: tl.param_groups(mlp(), 1e-3, lrs={"blok1": 1e-4}), "Did you mean 'block1'"),
        (lambda: tl.accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long)), "logits \\(N, K\\) and labels \\(N,\\)"),
        (lambda: tl.predict(mlp(), toy(), batch_size=0), "batch_size must be >= 1"),
        (lambda: tl.random_translate(torch.rand(2, 1, 4, 4), 1.5), "max_shift must be a whole number"),
    ],
    ids=["nan lr", "zero decay", "decay > 1", "negative block lr", "block typo", "accuracy shapes", "predict batch", "shift"],
)
def test_bad_input_training_helpers(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


def test_accuracy_matches_a_loop():
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(1))
    expected = sum(int(max(range(5), key=lambda k: logits[i, k]) == labels[i]) for i in range(50)) / 50
    assert tl.accuracy(logits, labels) == pytest.approx(expected)
