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

    def __init__(self, body: nn.Sequential, head: nn.Module, feature_dim: int, arch: str = "custom"):
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.arch = arch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Body output: images ``(N, C, H, W)`` -> features ``(N, feature_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        return self.head(self.body(x))

    @property
    def block_names(self) -> list[str]:
        """Names of the body's blocks, input side first."""
        return [name for name, _ in self.body.named_children()]

    def block(self, name: str) -> nn.Module:
        """The body block called ``name`` (``'head'`` gives the head); unknown names list the valid ones."""
        if name == "head":
            return self.head
        blocks = dict(self.body.named_children())
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


def _conv_block(c_in: int, c_out: int, pool: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        pool,
    )


def cnn(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 128)) -> BodyHeadNet:
    """A three-block CNN (conv-BN-ReLU-pool): 28x28 -> 14 -> 7 -> 3x3 max grid -> ``9 * widths[-1]`` features.

    The body ends in a coarse 3x3 grid, not a global average: where a stroke is matters for
    digits and characters, and a global average throws that away (on MNIST the global-average
    version of this net needs several epochs to reach the accuracy this one has after one).
    """
    if len(widths) < 1:
        raise ValueError("cnn needs at least one width, e.g. widths=(32, 64, 128).")
    blocks = OrderedDict()
    c_in = in_channels
    for i, width in enumerate(widths, start=1):
        last = i == len(widths)
        # Adaptive pooling fixes the grid at 3x3 whatever the input size, so feature_dim does too.
        pool = nn.Sequential(nn.AdaptiveMaxPool2d(3), nn.Flatten()) if last else nn.MaxPool2d(2)
        blocks[f"block{i}"] = _conv_block(c_in, width, pool)
        c_in = width
    feature_dim = 9 * c_in
    return BodyHeadNet(nn.Sequential(blocks), nn.Linear(feature_dim, num_classes), feature_dim, arch="cnn")


def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, hidden=(256, 256), dropout: float = 0.0) -> BodyHeadNet:
    """A fully connected net; each hidden layer (Linear-ReLU-Dropout) is one block."""
    if len(hidden) < 1:
        raise ValueError("mlp needs at least one hidden layer, e.g. hidden=(256, 256).")
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
        in_channels: ``C`` of the input images ``(N, C, 28, 28)``.
        seed: initialisation seed; the same seed gives the same weights.
        **kwargs: architecture options (``widths=`` for cnn/resnet; ``hidden=``, ``dropout=``, ``image_size=`` for mlp).
    """
    if arch not in ARCHITECTURES:
        raise unknown_name_error("architecture", arch, ARCHITECTURES)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, **kwargs)


def reset_head(model: BodyHeadNet, num_classes: int | None = None, seed: int = 0) -> BodyHeadNet:
    """Replace the head by a freshly initialised one with ``num_classes`` outputs (default: as before).

    This is the "replace the classifier" step of every transfer recipe: the body is kept, the
    task-specific mapping from features to labels is learned anew. Returns the model (changed in place).
    """
    if not isinstance(model, BodyHeadNet):
        raise TypeError(f"reset_head needs a tlbook BodyHeadNet (with .body and .head), got {type(model).__name__}.")
    num_classes = model.num_classes if num_classes is None else num_classes
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    old = model.head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = nn.Linear(model.feature_dim, num_classes)
    model.head = new.to(device=old.weight.device, dtype=old.weight.dtype)
    return model
