"""Small models that train in seconds, each a mapping ``f = head ∘ body``.

Every model is a :class:`BodyHeadNet`: ``body`` is an ``nn.Sequential`` of *named blocks* (the unit
that transfer freezes, copies or re-initialises) and ``head`` is the task-specific classifier.
``model.features(x)`` is the body's output, the representation that transfer reuses.
"""
from __future__ import annotations

import difflib
from collections import OrderedDict

import torch
from torch import nn


def unknown_name_error(kind: str, name: str, valid) -> ValueError:
    """A ``ValueError`` for an unknown name that lists the valid ones and the closest match."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(map(repr, valid))}.")


class BodyHeadNet(nn.Module):
    """A classifier split into a feature map ``body`` and a classifier ``head``.

    Args:
        body: ``nn.Sequential`` of named blocks; maps images ``(N, C, H, W)`` to features ``(N, D)``.
        head: maps features ``(N, D)`` to logits ``(N, K)``.
        feature_dim: ``D``, the width of the body's output.

    Blocks frozen by :func:`tlbook.freeze` keep their BatchNorm layers in eval mode even after
    ``model.train()``: a frozen block must not keep learning through its running statistics.
    """

    def __init__(self, body: nn.Module, head: nn.Module, feature_dim: int, arch: str = "custom", blocks: dict | None = None):
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.arch = arch
        # Named blocks of a body that is not an nn.Sequential of blocks (a wrapped timm model): a
        # plain dict, not registered, so parameters and state_dict keys are not listed twice.
        self._blocks = dict(blocks) if blocks is not None else None
        if self._blocks is None and not isinstance(body, nn.Sequential):
            raise TypeError("body must be an nn.Sequential of named blocks, or blocks={name: module} must name them.")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Body output: images ``(N, C, H, W)`` -> features ``(N, feature_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        return self.head(self.body(x))

    @property
    def block_names(self) -> list[str]:
        """Names of the body's blocks, input side first."""
        if self._blocks is not None:
            return list(self._blocks)
        return [name for name, _ in self.body.named_children()]

    def block(self, name: str) -> nn.Module:
        """The body block called ``name`` (``'head'`` gives the head); unknown names list the valid ones."""
        if name == "head":
            return self.head
        blocks = self._blocks if self._blocks is not None else dict(self.body.named_children())
        if name not in blocks:
            raise unknown_name_error("block", name, self.block_names + ["head"])
        return blocks[name]

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            # BatchNorm updates its running mean/var in train mode whatever requires_grad says;
            # keep the statistics of frozen blocks as the source model left them.
            for module in self.modules():
                if getattr(module, "_tlbook_frozen", False) and isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def keep_frozen_batchnorm_in_eval(module: nn.Module, inputs) -> None:
    """Forward pre-hook of every BatchNorm that :func:`tlbook.freeze` touched.

    ``BodyHeadNet.train()`` already leaves frozen BatchNorm layers in eval mode, but a call such as
    ``model.body.train()`` or ``model.block('block2').train()`` goes around it. The hook runs before
    every forward pass, so a frozen layer normalises with its stored statistics and never updates
    them, whichever ``.train()`` ran last. A plain function (not a closure), so that ``copy.deepcopy``
    copies it along with the module.
    """
    if getattr(module, "_tlbook_frozen", False):
        module.training = False


def _conv_block(c_in: int, c_out: int, pool: nn.Module, track_running_stats: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out, track_running_stats=track_running_stats),
        nn.ReLU(inplace=True),
        pool,
    )


def cnn(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 128), pool: str = "grid",
        track_running_stats: bool = True) -> BodyHeadNet:
    """A CNN of conv-BN-ReLU-pool blocks, one block per width.

    ``pool='grid'`` (the book's default): 28x28 -> 14 -> 7 -> a 3x3 max grid -> ``9 * widths[-1]``
    features. The body ends in a coarse grid, not a global average: where a stroke is matters for
    digits and characters, and a global average throws that away (on MNIST the global-average
    version of this net needs several epochs to reach the accuracy this one has after one).

    ``pool='global'``: every block halves the image (2x2 max pooling) and the body ends in a global
    average, ``widths[-1]`` features. With ``widths=(64, 64, 64, 64)`` this is the *Conv-4*
    embedding of the few-shot papers (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017 use
    the same four 64-channel blocks): 28x28 -> 14 -> 7 -> 3 -> 1, 64 features.

    ``track_running_stats=False``: BatchNorm always normalises with the current batch's statistics
    (train and eval alike), as MAML's reference code does; evaluation is then transductive.
    """
    widths = tuple(widths)
    if len(widths) < 1 or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"cnn needs at least one positive int width, e.g. widths=(32, 64, 128), got {widths}.")
    if pool not in ("grid", "global"):
        raise unknown_name_error("pool", pool, ["grid", "global"])
    blocks = OrderedDict()
    c_in = in_channels
    for i, width in enumerate(widths, start=1):
        last = i == len(widths)
        if pool == "global":
            down = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten()) if last else nn.MaxPool2d(2)
        else:
            # Adaptive pooling fixes the grid at 3x3 whatever the input size, so feature_dim does too.
            down = nn.Sequential(nn.AdaptiveMaxPool2d(3), nn.Flatten()) if last else nn.MaxPool2d(2)
        blocks[f"block{i}"] = _conv_block(c_in, width, down, track_running_stats)
        c_in = width
    feature_dim = (9 if pool == "grid" else 1) * c_in
    return BodyHeadNet(nn.Sequential(blocks), nn.Linear(feature_dim, num_classes), feature_dim, arch="cnn")


def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, hidden=(256, 256), dropout: float = 0.0) -> BodyHeadNet:
    """A fully connected net; each hidden layer (Linear-ReLU-Dropout) is one block."""
    hidden = tuple(hidden)
    if len(hidden) < 1 or not all(isinstance(w, int) and w >= 1 for w in hidden):
        raise ValueError(f"mlp needs at least one positive int hidden width, e.g. hidden=(256, 256), got {hidden}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    blocks = OrderedDict()
    d_in = in_channels * image_size * image_size
    for i, width in enumerate(hidden, start=1):
        layers = [nn.Flatten()] if i == 1 else []
        layers += [nn.Linear(d_in, width), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        blocks[f"block{i}"] = nn.Sequential(*layers)
        d_in = width
    return BodyHeadNet(nn.Sequential(blocks), nn.Linear(d_in, num_classes), d_in, arch="mlp")


class _ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 128)) -> BodyHeadNet:
    """A small ResNet: stem, one residual stage per width (stride 2 after the first), global pooling."""
    blocks = OrderedDict()
    blocks["stem"] = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    c_in = widths[0]
    for i, width in enumerate(widths, start=1):
        blocks[f"stage{i}"] = _ResidualBlock(c_in, width, stride=1 if i == 1 else 2)
        c_in = width
    blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return BodyHeadNet(nn.Sequential(blocks), nn.Linear(c_in, num_classes), c_in, arch="resnet")


ARCHITECTURES = {"mlp": mlp, "cnn": cnn, "resnet": resnet}


def make_model(arch: str = "cnn", num_classes: int = 10, in_channels: int = 1, seed: int = 0, **kwargs) -> BodyHeadNet:
    """Build a model by name with a seeded initialisation (the global RNG is left untouched).

    Args:
        arch: one of ``'mlp'``, ``'cnn'``, ``'resnet'``.
        num_classes: ``K``, the head's output size.
        in_channels: ``C`` of the input images ``(N, C, H, W)``.
        seed: initialisation seed; the same seed gives the same weights.
        **kwargs: architecture options: ``widths=``, ``pool=`` (``'grid'`` or ``'global'``: Conv-4 is
            ``widths=(64, 64, 64, 64), pool='global'``), ``track_running_stats=`` for cnn;
            ``widths=`` for resnet; ``hidden=``, ``dropout=``, ``image_size=`` for mlp.
    """
    import inspect

    from .checks import seed_value, whole_number

    if arch not in ARCHITECTURES:
        raise unknown_name_error("architecture", arch, ARCHITECTURES)
    num_classes = whole_number(num_classes, "num_classes")
    in_channels = whole_number(in_channels, "in_channels")
    seed = seed_value(seed)
    options = [p for p in inspect.signature(ARCHITECTURES[arch]).parameters if p not in ("num_classes", "in_channels")]
    for key in kwargs:
        if key not in options:
            raise unknown_name_error(f"option of {arch!r}", key, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, **kwargs)


def reset_head(model: BodyHeadNet, num_classes: int | None = None, seed: int = 0) -> BodyHeadNet:
    """Replace the head by a freshly initialised one with ``num_classes`` outputs (default: as before).

    This is the "replace the classifier" step of every transfer recipe: the body is kept, the
    task-specific mapping from features to labels is learned anew. Returns the model (changed in place).
    """
    from .checks import seed_value, whole_number

    if not isinstance(model, BodyHeadNet):
        raise TypeError(
            f"reset_head needs a tlbook BodyHeadNet (with .body and .head), got {type(model).__name__}; "
            "wrap an outside model with tl.wrap_model(model, head=...)."
        )
    num_classes = whole_number(model.num_classes if num_classes is None else num_classes, "num_classes")
    seed = seed_value(seed)
    old = model.head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = nn.Linear(model.feature_dim, num_classes)
    model.head = new.to(device=old.weight.device, dtype=old.weight.dtype)
    return model


def wrap_model(model: nn.Module, head: str, blocks: dict | None = None, example_input: torch.Tensor | None = None) -> BodyHeadNet:
    """Give an outside classifier (torchvision, timm) a body of named blocks and a head, for the transfer tools.

    The result is a :class:`BodyHeadNet` that *shares* the model's modules (no copy), so
    :func:`tlbook.freeze`, :func:`tlbook.unfreeze`, :func:`tlbook.param_groups`,
    :func:`reset_head` and ``features`` work on it as on the book's own models::

        from torchvision.models import resnet18
        net = tl.wrap_model(resnet18(num_classes=10), head="fc")
        net.block_names   # ['stem', 'layer1', 'layer2', 'layer3', 'layer4']
        tl.freeze(net, 3) # stem, layer1, layer2 frozen (BatchNorm statistics included)

    Args:
        model: a classifier whose ``forward`` is its top-level children in order, flattened before
            the head (torchvision's ResNets, VGG without its classifier stack, EfficientNet, ...), or
            a timm model (it has ``forward_features`` and ``forward_head``).
        head: name of the final ``nn.Linear`` child (``'fc'`` for ResNets, ``'head'`` or
            ``'classifier'`` in timm).
        blocks: ``{block name: [child names]}`` in input order. Default for torchvision models:
            one block per top-level child that has children of its own, the leaf layers before the
            first of them grouped as ``'stem'`` and later leaves (pooling) joined to the block before.
            Required for timm models (e.g. ``{'stem': ['conv_stem', 'bn1'], 'stage0': ['blocks.0'], ...}``),
            and it must cover every body parameter.
        example_input: ``(N, C, H, W)`` to check that the wrapped model computes what the model does
            (default: two random 64x64 images with the first convolution's channels).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap_model needs an nn.Module, got {type(model).__name__}.")
    children = dict(model.named_children())
    if not isinstance(head, str) or head not in children or not isinstance(children[head], nn.Linear):
        linear = [n for n, m in children.items() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"head must name the model's final nn.Linear child; got {head!r}. "
            f"Linear children: {linear or 'none'} (top-level children: {list(children)})."
        )
    head_module = children[head]
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        wrapped = _wrap_timm(model, head, head_module, blocks)
    else:
        groups = _default_groups(children, head) if blocks is None else _named_groups(blocks, children, head)
        seq = OrderedDict()
        for i, (name, members) in enumerate(groups.items()):
            modules = [children[m] for m in members] + ([nn.Flatten()] if i == len(groups) - 1 else [])
            seq[name] = nn.Sequential(*modules)
        wrapped = BodyHeadNet(nn.Sequential(seq), head_module, head_module.in_features, arch=type(model).__name__)
    _check_wrapped(model, wrapped, example_input)
    return wrapped


def _default_groups(children: dict, head: str) -> OrderedDict:
    groups = OrderedDict()
    for name, child in children.items():
        if name == head:
            continue
        if next(child.children(), None) is not None or not groups:
            groups["stem" if next(child.children(), None) is None else name] = [name]
        else:
            groups[next(reversed(groups))].append(name)
    return groups


def _named_groups(blocks: dict, children: dict, head: str) -> OrderedDict:
    groups, seen = OrderedDict(), []
    for name, members in blocks.items():
        members = [members] if isinstance(members, str) else list(members)
        for m in members:
            if m not in children or m == head:
                raise unknown_name_error("child module", m, [c for c in children if c != head])
        groups[name], seen = members, seen + members
    missing = [c for c in children if c != head and c not in seen]
    if missing or len(seen) != len(set(seen)):
        raise ValueError(f"blocks must list every child but the head exactly once; missing {missing}, listed {seen}.")
    return groups


class _TimmBody(nn.Module):
    """A timm model's features before its classifier: ``forward_head(forward_features(x), pre_logits=True)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _wrap_timm(model, head, head_module, blocks) -> BodyHeadNet:
    if not blocks:
        raise ValueError("a timm model needs blocks={name: [submodule names]} covering its body, input side first.")
    modules = dict(model.named_modules())
    named = OrderedDict()
    for name, members in blocks.items():
        members = [members] if isinstance(members, str) else list(members)
        for m in members:
            if m not in modules:
                raise unknown_name_error("submodule", m, [n for n in modules if n and "." not in n])
        named[name] = nn.ModuleList([modules[m] for m in members])
    covered = {id(p) for block in named.values() for p in block.parameters()} | {id(p) for p in head_module.parameters()}
    left = [n for n, p in model.named_parameters() if id(p) not in covered]
    if left:
        raise ValueError(f"blocks leave body parameters out of every block: {left[:5]}; add them to a block.")
    return BodyHeadNet(_TimmBody(model), head_module, head_module.in_features, arch=type(model).__name__, blocks=named)


def _check_wrapped(model, wrapped, example_input) -> None:
    if example_input is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            example_input = torch.rand(2, first.in_channels, 64, 64)
        example_input = example_input.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                expected = model(example_input)
            except RuntimeError:
                return  # the input does not suit the model (e.g. it needs 224x224): nothing to compare
            got = wrapped(example_input)
    finally:
        model.train(was_training)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        raise ValueError(
            f"the wrapped {type(model).__name__} does not compute what the model does: its forward is not its "
            "children in order; pass blocks= explicitly, or build a BodyHeadNet(body, head, feature_dim) by hand."
        )
