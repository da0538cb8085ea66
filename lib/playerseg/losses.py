"""Segmentation losses by name, combined as a weighted sum.

    loss_fn = build_loss(LossConfig(terms={"ce": 1.0, "dice": 1.0}), num_classes=3)
    total, parts = loss_fn(logits, target)   # logits N x C x H x W, target N x H x W long (255 = ignore)

Every term takes multi-class logits and a class-id target and skips IGNORE_INDEX pixels. `bce` is
one-vs-rest sigmoid BCE on the one-hot target (for a binary player-only task: classes
[background, player]). Dice, Focal, Lovasz and Tversky are smp's multiclass losses.
`class_weights` (one per class) weigh CE, BCE, Dice, Focal and Tversky.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import segmentation_models_pytorch.losses as smp_losses
import torch
import torch.nn.functional as F
from torch import nn

from playerseg.classes import IGNORE_INDEX


@dataclass
class LossConfig:
    terms: dict[str, float] = field(default_factory=lambda: {"ce": 1.0, "dice": 1.0})  # name -> weight
    class_weights: list[float] = field(default_factory=list)  # one per class; [] = equal
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3  # weight of false positives
    tversky_beta: float = 0.7  # weight of false negatives
    label_smoothing: float = 0.0  # CE only


class BCELoss(nn.Module):
    """Sigmoid BCE of each class channel against the one-hot target; ignored pixels masked out."""

    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE_INDEX
        onehot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        if self.class_weights.numel():
            loss = loss * self.class_weights.view(1, -1, 1, 1).to(loss.dtype)
        mask = valid.unsqueeze(1).to(loss.dtype)
        return (loss * mask).sum() / (mask.sum() * logits.shape[1]).clamp_min(1.0)


def _weights(cfg: LossConfig, num_classes: int) -> list[float] | None:
    if not cfg.class_weights:
        return None
    if len(cfg.class_weights) != num_classes:
        raise ValueError(f"loss.class_weights has {len(cfg.class_weights)} values for {num_classes} classes")
    return list(cfg.class_weights)


LOSSES: dict[str, Callable[[LossConfig, int], nn.Module]] = {
    "ce": lambda c, k: nn.CrossEntropyLoss(
        weight=torch.tensor(_weights(c, k), dtype=torch.float32) if _weights(c, k) else None,
        ignore_index=IGNORE_INDEX, label_smoothing=c.label_smoothing),
    "bce": lambda c, k: BCELoss(torch.tensor(_weights(c, k), dtype=torch.float32) if _weights(c, k) else None),
    "dice": lambda c, k: smp_losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX, class_weights=_weights(c, k)),
    "focal": lambda c, k: smp_losses.FocalLoss("multiclass", gamma=c.focal_gamma, ignore_index=IGNORE_INDEX,
                                               class_weights=_weights(c, k)),
    "lovasz": lambda c, k: smp_losses.LovaszLoss("multiclass", ignore_index=IGNORE_INDEX),
    "tversky": lambda c, k: smp_losses.TverskyLoss("multiclass", alpha=c.tversky_alpha, beta=c.tversky_beta,
                                                   ignore_index=IGNORE_INDEX, class_weights=_weights(c, k)),
}


class CombinedLoss(nn.Module):
    """sum(weight * term(logits, target)); returns (total, {name: term value (detached)})."""

    def __init__(self, terms: dict[str, tuple[float, nn.Module]]):
        super().__init__()
        self.weights = {name: w for name, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({name: fn for name, (_, fn) in terms.items()})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits.float()  # losses in fp32 under AMP
        target = target.long()
        total = logits.new_zeros(())
        parts = {}
        for name, fn in self.terms.items():
            value = fn(logits, target)
            parts[name] = float(value.detach())
            total = total + self.weights[name] * value
        return total, parts


def build_loss(cfg: LossConfig, num_classes: int) -> CombinedLoss:
    if not cfg.terms:
        raise ValueError("loss.terms is empty; give at least one of " + ", ".join(sorted(LOSSES)))
    unknown = sorted(set(cfg.terms) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss(es) {unknown}; losses are {sorted(LOSSES)}")
    return CombinedLoss({name: (float(w), LOSSES[name](cfg, num_classes)) for name, w in cfg.terms.items()})
