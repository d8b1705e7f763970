"""Choosing what transfers: freeze and unfreeze blocks, and give blocks their own learning rates.

Freezing a block means two things here, and both are needed: its parameters get
``requires_grad=False`` (no gradient, no update) *and* its BatchNorm layers stop updating their
running statistics. ``requires_grad`` alone does not do the second: in train mode BatchNorm
overwrites its running mean and variance with the target batches' statistics at every forward
pass, so a "frozen" body quietly drifts. :class:`tlbook.models.BodyHeadNet` keeps the BatchNorm
layers of frozen blocks in eval mode; ``bn='train'`` reproduces the pitfall on purpose.
"""
from __future__ import annotations

import numbers

from torch import nn

from .checks import non_negative_number, positive_number
from .models import BodyHeadNet, keep_frozen_batchnorm_in_eval, unknown_name_error


def _require_model(model) -> BodyHeadNet:
    if not isinstance(model, BodyHeadNet):
        raise TypeError(
            f"expected a tlbook BodyHeadNet (a model with .body blocks and a .head), got {type(model).__name__}; "
            "build one with tl.make_model(...), or wrap a torchvision/timm model with tl.wrap_model(model, head=...)."
        )
    return model


def resolve_blocks(model: BodyHeadNet, blocks=None) -> list[str]:
    """Turn a block selection into block names.

    ``blocks`` may be ``None`` (the whole body), an int ``k`` (the first ``k`` body blocks, input
    side first), a name, or a list of names (``'head'`` allowed). Unknown names raise an error
    that lists the valid ones.
    """
    model = _require_model(model)
    names = model.block_names
    if blocks is None:
        return list(names)
    if isinstance(blocks, bool):
        raise TypeError("blocks must be None, an int depth, a block name or a list of names, not a bool.")
    if isinstance(blocks, float):
        raise TypeError(f"depth must be a whole number of blocks (0..{len(names)}), got the float {blocks!r}.")
    if isinstance(blocks, numbers.Integral):
        blocks = int(blocks)
        if not 0 <= blocks <= len(names):
            raise ValueError(f"depth must be between 0 and {len(names)} (the body has blocks {names}), got {blocks}.")
        return list(names[:blocks])
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, (list, tuple)):
        raise TypeError(f"blocks must be None, an int depth, a block name or a list of names, got {type(blocks).__name__}.")
    selected = []
    for name in blocks:
        if name not in names and name != "head":
            raise unknown_name_error("block", name, names + ["head"])
        selected.append(name)
    return selected


def _set_frozen(module: nn.Module, frozen: bool, bn: str) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _set_batchnorm_frozen(m, frozen and bn == "freeze")


def _set_batchnorm_frozen(m: nn.Module, frozen: bool) -> None:
    m._tlbook_frozen = frozen
    if frozen:
        m.eval()
        if not getattr(m, "_tlbook_hooked", False):  # once per layer; the hook reads the flag
            m.register_forward_pre_hook(keep_frozen_batchnorm_in_eval)
            m._tlbook_hooked = True


def freeze(model: BodyHeadNet, blocks=None, bn: str = "freeze") -> BodyHeadNet:
    """Freeze the selected blocks (default: the whole body) so training leaves them unchanged.

    Args:
        model: a :class:`~tlbook.models.BodyHeadNet`.
        blocks: ``None`` (whole body), depth ``k`` (first ``k`` blocks), a name or a list of names.
        bn: ``'freeze'`` keeps the running statistics of BatchNorm layers in frozen blocks fixed
            (the right thing); ``'train'`` lets them keep updating in train mode (the common
            pitfall, kept for demonstration).

    Returns the model (changed in place).
    """
    if bn not in ("freeze", "train"):
        raise unknown_name_error("bn mode", bn, ["freeze", "train"])
    for name in resolve_blocks(model, blocks):
        _set_frozen(model.block(name), True, bn)
    return model


def unfreeze(model: BodyHeadNet, blocks=None) -> BodyHeadNet:
    """Make the selected blocks (default: the whole body and the head) trainable again, BatchNorm included."""
    names = resolve_blocks(model, blocks) if blocks is not None else model.block_names + ["head"]
    for name in names:
        _set_frozen(model.block(name), False, "freeze")
    if model.training:
        model.train()
    return model


def trainable_blocks(model: BodyHeadNet) -> dict:
    """``{block name: (trainable parameters, total parameters)}`` for every body block and the head."""
    model = _require_model(model)
    out = {}
    for name in model.block_names + ["head"]:
        params = list(model.block(name).parameters())
        out[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return out


def param_groups(model: BodyHeadNet, lr: float, decay: float = 1.0, lrs: dict | None = None, weight_decay: float = 0.0) -> list:
    """Optimizer parameter groups with discriminative learning rates, one group per block.

    The head gets ``lr``; each body block below it gets ``decay`` times the rate of the block
    above (ULMFiT's rule: lower layers hold more general features and should move less).
    ``lrs={'block1': 1e-5, ...}`` overrides single blocks. Frozen parameters are left out.

    Returns a list of ``{'params', 'lr', 'weight_decay', 'name'}`` dicts for ``torch.optim``.
    """
    model = _require_model(model)
    lr = positive_number(lr, "lr")
    weight_decay = non_negative_number(weight_decay, "weight_decay")
    decay = positive_number(decay, "decay")
    if decay > 1:
        raise ValueError(f"decay must be in (0, 1], got {decay} (1 = one learning rate for all blocks).")
    lrs = dict(lrs or {})
    for name, value in lrs.items():
        if name not in model.block_names and name != "head":
            raise unknown_name_error("block", name, model.block_names + ["head"])
        lrs[name] = positive_number(value, f"lrs[{name!r}]")
    groups = []
    names = ["head"] + model.block_names[::-1]
    for depth, name in enumerate(names):
        params = [p for p in model.block(name).parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lrs.get(name, lr * decay**depth), "weight_decay": weight_decay, "name": name})
    if not groups:
        raise ValueError("Every parameter is frozen: unfreeze a block (tl.unfreeze) or reset the head.")
    return groups


def frozen_state(model: BodyHeadNet) -> dict:
    """What :func:`freeze` changed, as plain lists: ``{'params': [...], 'batchnorm': [...]}`` of names.

    ``state_dict()`` holds weights and statistics but not which of them are frozen; :func:`tlbook.save_model`
    stores this beside it, so a model loaded from disk (or from the cache) is frozen as it was saved.
    """
    model = _require_model(model)
    return {
        "params": [n for n, p in model.named_parameters() if not p.requires_grad],
        "batchnorm": [n for n, m in model.named_modules() if getattr(m, "_tlbook_frozen", False)],
    }


def restore_frozen_state(model: BodyHeadNet, state: dict) -> BodyHeadNet:
    """Freeze exactly what :func:`frozen_state` recorded (parameters and BatchNorm layers)."""
    model = _require_model(model)
    params, modules = dict(model.named_parameters()), dict(model.named_modules())
    frozen_params = set(state.get("params", []))
    for name in frozen_params | set(state.get("batchnorm", [])):
        if name not in params and name not in modules:
            raise ValueError(f"saved frozen {name!r} is not in this model; was it saved from another architecture?")
    for name in state.get("batchnorm", []):
        _set_batchnorm_frozen(modules[name], True)
    for name, p in params.items():
        p.requires_grad_(name not in frozen_params)
    return model
