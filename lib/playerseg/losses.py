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
    # partial labels (`playerseg.data.targets`): weight of -log(sum of p over a pixel's class set),
    # and of the box terms for classes labelled only by boxes (BoxInst-style projection: the mask's
    # column and row maxima inside a box fill the box; pairwise: neighbouring pixels of similar colour
    # inside a box take the same label)
    partial: float = 1.0
    box_projection: float = 1.0
    box_pairwise: float = 0.0
    pairwise_threshold: float = 0.3  # colour similarity exp(-||LAB difference|| / 8) above which pairs count
    class_weights: list[float] = field(default_factory=list)  # one per class; [] = equal
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3  # weight of false positives
    tversky_beta: float = 0.7  # weight of false negatives
    label_smoothing: float = 0.0  # CE only
    # the centre head (`ModelConfig.centre_head`): weight of CenterNet's focal loss on the players'
    # centre heatmap, a Gaussian at each person box's centre (sigma = `centre_sigma` x the box's width
    # and height), on the frames whose source boxes every player (`centre_loss`); 0 = off
    centre: float = 0.0
    centre_sigma: float = 0.15


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


def exact_target(allowed: torch.Tensor) -> torch.Tensor:
    """N x H x W class ids where a pixel's class set has exactly one bit, else IGNORE_INDEX."""
    a = allowed.long()
    single = (a > 0) & ((a & (a - 1)) == 0)
    ids = torch.zeros_like(a)
    for c in range(1, 8):
        ids = torch.where(a == (1 << c), c, ids)
    return torch.where(single, ids, torch.full_like(a, IGNORE_INDEX))


def set_nll(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mean -log(sum_{c in set} p_c) over the pixels whose class set is partial (2+ bits, not all)."""
    k = logits.shape[1]
    a = allowed.long()
    everything = (1 << k) - 1
    partial = (a != 0) & (a != everything) & ((a & (a - 1)) != 0)
    if not bool(partial.any()):
        return logits.new_zeros(())
    bits = torch.stack([(a >> c) & 1 for c in range(k)], 1).bool()  # N x C x H x W
    logp = logits.log_softmax(1).masked_fill(~bits, -1e4)
    return -(torch.logsumexp(logp, 1)[partial]).mean()


def box_projection(proba: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
    """BoxInst projection loss: for each box (class, x0, y0, x1, y1 in pixels of `proba`), the column
    maxima and the row maxima of that class's probability inside the box should be 1 (Dice)."""
    terms = []
    h, w = proba.shape[-2:]
    for i, b in enumerate(boxes):
        for c, x0, y0, x1, y1 in b.tolist():
            x0, y0 = max(0, int(x0)), max(0, int(y0))
            x1, y1 = min(w, int(round(x1))), min(h, int(round(y1)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            region = proba[i, int(c), y0:y1, x0:x1]
            for proj in (region.amax(0), region.amax(1)):
                terms.append(1 - 2 * proj.sum() / (proj.pow(2).sum() + proj.numel()))
    return torch.stack(terms).mean() if terms else proba.new_zeros(())


def _lab(image: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W uint8 RGB -> float CIE Lab (OpenCV's 8-bit scale), for colour similarity."""
    import cv2
    import numpy as np

    arr = image.permute(0, 2, 3, 1).cpu().numpy()
    lab = np.stack([cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2LAB) for a in arr]).astype(np.float32)
    return torch.from_numpy(lab).permute(0, 3, 1, 2).to(image.device)


def box_pairwise(proba: torch.Tensor, boxes: list[torch.Tensor], image: torch.Tensor, threshold: float) -> torch.Tensor:
    """BoxInst pairwise term: right and down neighbours inside a box whose colours are similar
    (exp(-||Lab difference|| / 8) >= threshold) should agree: -log(p_i p_j + (1 - p_i)(1 - p_j))."""
    if not any(len(b) for b in boxes):
        return proba.new_zeros(())
    lab = _lab(image)
    total, count = proba.new_zeros(()), 0
    for i, b in enumerate(boxes):
        if not len(b):
            continue
        inside = torch.zeros(proba.shape[-2:], dtype=torch.bool, device=proba.device)
        for c, x0, y0, x1, y1 in b.tolist():
            inside[max(0, int(y0)):int(round(y1)), max(0, int(x0)):int(round(x1))] = True
        for c in sorted({int(v) for v in b[:, 0].tolist()}):
            p = proba[i, c]
            for dy, dx in ((0, 1), (1, 0)):
                pa, pb = p[: p.shape[0] - dy, : p.shape[1] - dx], p[dy:, dx:]
                la, lb = lab[i, :, : p.shape[0] - dy, : p.shape[1] - dx], lab[i, :, dy:, dx:]
                sim = torch.exp(-(la - lb).norm(dim=0) / 8.0)
                m = (sim >= threshold) & inside[: p.shape[0] - dy, : p.shape[1] - dx] & inside[dy:, dx:]
                if bool(m.any()):
                    agree = (pa * pb + (1 - pa) * (1 - pb)).clamp_min(1e-6)
                    total = total - agree.log()[m].sum()
                    count += int(m.sum())
    return total / max(1, count)


def centre_targets(boxes: torch.Tensor, cls: int, h: int, w: int, sigma: float) -> torch.Tensor:
    """H x W heatmap of the boxes (class, x0, y0, x1, y1) of class `cls`: the max of Gaussians at
    their centres (sigma = `sigma` x width / height), 1 at each centre's pixel."""
    b = boxes[boxes[:, 0] == cls, 1:]
    target = torch.zeros(h, w, device=boxes.device)
    if not len(b):
        return target
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    sx = ((b[:, 2] - b[:, 0]) * sigma).clamp_min(0.8)
    sy = ((b[:, 3] - b[:, 1]) * sigma).clamp_min(0.8)
    xs = torch.arange(w, device=b.device, dtype=b.dtype) + 0.5
    ys = torch.arange(h, device=b.device, dtype=b.dtype) + 0.5
    gx = torch.exp(-((xs[None] - cx[:, None]) ** 2) / (2 * sx[:, None] ** 2))  # B x W
    gy = torch.exp(-((ys[None] - cy[:, None]) ** 2) / (2 * sy[:, None] ** 2))  # B x H
    target = (gy[:, :, None] * gx[:, None, :]).amax(0)
    target[cy.long().clamp(0, h - 1), cx.long().clamp(0, w - 1)] = 1.0
    return target


def centre_loss(logit: torch.Tensor, boxes: list[torch.Tensor], known: torch.Tensor, cls: int,
                sigma: float) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss of the N x H x W centre logits on the frames where
    `known` (their source boxes every object of class `cls`), over the number of centres."""
    total, centres = logit.new_zeros(()), 0
    for i, b in enumerate(boxes):
        if not bool(known[i]):
            continue
        t = centre_targets(b, cls, *logit.shape[-2:], sigma)
        logp, log1mp = F.logsigmoid(logit[i]), F.logsigmoid(-logit[i])
        p = logp.exp()
        pos = t >= 1.0
        total = total - (log1mp.exp() ** 2 * logp)[pos].sum() - ((1 - t) ** 4 * p ** 2 * log1mp)[~pos].sum()
        centres += int(pos.sum())
    if not bool(known.any()):
        return logit.sum() * 0.0  # in the graph: a batch of other sources still backpropagates
    return total / max(1, centres)


class PartialLabelLoss(nn.Module):
    """The training loss over class sets (`playerseg.data.targets`): the named `terms` on pixels with
    one known class, `partial` x set NLL on pixels with a class set, box terms on box-only classes.
    Returns (total, {name: value})."""

    def __init__(self, cfg: LossConfig, num_classes: int, centre_class: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.centre_class = centre_class  # the class whose box centres the centre channel learns
        self.exact = build_loss(cfg, num_classes)

    def forward(self, logits: torch.Tensor, allowed: torch.Tensor, boxes: list[torch.Tensor] | None = None,
                image: torch.Tensor | None = None, centres_known: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """`logits` N x C x H x W (N x (C + 1) x H x W with a centre channel); `centres_known` N bools:
        the frame's boxes list every object of the centre class (its source labels it by box)."""
        logits = logits.float()
        centre = logits[:, self.num_classes] if logits.shape[1] > self.num_classes else None
        logits = logits[:, : self.num_classes]
        target = exact_target(allowed)
        if bool((target != IGNORE_INDEX).any()):
            total, parts = self.exact(logits, target)
        else:
            total, parts = logits.sum() * 0.0, {}
        extra = {}
        if self.cfg.partial:
            extra["partial"] = (self.cfg.partial, set_nll(logits, allowed))
        if boxes is not None and (self.cfg.box_projection or self.cfg.box_pairwise):
            proba = logits.softmax(1)
            if self.cfg.box_projection:
                extra["box_projection"] = (self.cfg.box_projection, box_projection(proba, boxes))
            if self.cfg.box_pairwise and image is not None:
                extra["box_pairwise"] = (self.cfg.box_pairwise,
                                         box_pairwise(proba, boxes, image, self.cfg.pairwise_threshold))
        if self.cfg.centre and centre is not None and boxes is not None and centres_known is not None \
                and self.centre_class is not None:
            extra["centre"] = (self.cfg.centre, centre_loss(centre, boxes, centres_known, self.centre_class,
                                                            self.cfg.centre_sigma))
        for name, (weight, value) in extra.items():
            total = total + weight * value
            parts[name] = float(value.detach())
        return total, parts
