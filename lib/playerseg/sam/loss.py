"""SAM's training loss (SAM paper, section 3 and appendix A): focal + dice on the mask logits,
MSE between the predicted IoU and the IoU of the predicted mask with its target.

With several masks per prompt (multimask output) only the lowest-loss mask is backpropagated,
its IoU prediction included; the default weights 20 : 1 : 1 are the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SamLossConfig:
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss (mean over pixels): ... x H x W -> ..."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss: ... x H x W -> ..."""
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask IoU of (logits > 0) with the target: ... x H x W -> ... (1 where both are empty)."""
    pred = (logits > 0).flatten(-2)
    t = target.flatten(-2) > 0.5
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class SamLoss(nn.Module):
    def __init__(self, cfg: SamLossConfig = SamLossConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, mask_logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """mask_logits N x K x H x W, iou_pred N x K, target N x H x W (bool / 0-1).

        Returns {"loss", "focal", "dice", "iou_mse", "iou"} (means over the N prompts; "iou" is
        the measured IoU of the chosen masks, not differentiable)."""
        c = self.cfg
        t = target.float().unsqueeze(1).expand_as(mask_logits)
        focal = focal_loss(mask_logits, t, c.focal_alpha, c.focal_gamma)
        dice = dice_loss(mask_logits, t)
        with torch.no_grad():
            iou = mask_iou(mask_logits, t)
        iou_mse = (iou_pred - iou) ** 2
        per_mask = c.focal * focal + c.dice * dice
        best = per_mask.argmin(dim=1, keepdim=True)  # multimask: backprop the best mask only

        def pick(x):
            return x.gather(1, best).squeeze(1)

        focal, dice, iou_mse, iou = pick(focal), pick(dice), pick(iou_mse), pick(iou)
        loss = c.focal * focal + c.dice * dice + c.iou * iou_mse
        if loss.numel() == 0:
            zero = mask_logits.sum() * 0
            return {"loss": zero, "focal": zero, "dice": zero, "iou_mse": zero, "iou": zero.detach()}
        return {"loss": loss.mean(), "focal": focal.mean(), "dice": dice.mean(),
                "iou_mse": iou_mse.mean(), "iou": iou.mean()}
