"""A light semantic head (background / player / led_board) on frozen SAM image embeddings.

    head = SamEmbeddingHead(num_classes=3)          # 256 x 64 x 64 embeddings -> 3 x 256 x 256 logits
    model = build_sam_head(num_classes=3, model_type="vit_b", sam_checkpoint="sam_vit_b.pth",
                           head_checkpoint="runs/sam_head/checkpoints/.../sam_trained.pt")
    logits = model(x)   # x: N x 3 x H x W, ImageNet-normalised RGB (as every playerseg model) -> N x C x H x W

The head trains on the embedding cache (`playerseg train sam --set sam.mode=head`), so its epochs
never run the encoder; `SamHeadModel` puts the frozen encoder in front for inference, taking the
same normalised input as the Unets (SAM's pixel mean/std are ImageNet's x 255).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from playerseg.sam.build import PROMPT_EMBED_DIM, build_sam


class SamEmbeddingHead(nn.Module):
    """Embeddings C x h x w -> class logits at 4h x 4w (the resolution of SAM's mask logits),
    upscaled like SAM's mask decoder: two transposed convolutions with LayerNorm2d + GELU."""

    def __init__(self, num_classes: int = 3, in_channels: int = PROMPT_EMBED_DIM, hidden: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), LayerNorm2d(hidden), nn.GELU(),
            nn.ConvTranspose2d(hidden, hidden // 2, 2, stride=2), LayerNorm2d(hidden // 2), nn.GELU(),
            nn.ConvTranspose2d(hidden // 2, hidden // 4, 2, stride=2), nn.GELU(),
            nn.Conv2d(hidden // 4, num_classes, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.body(embeddings)


class SamHeadModel(nn.Module):
    """Frozen SAM image encoder + `SamEmbeddingHead`: normalised images of any size -> logits."""

    def __init__(self, sam: Sam, head: SamEmbeddingHead):
        super().__init__()
        self.encoder, self.head = sam.image_encoder, head
        self.encoder.requires_grad_(False)
        self.img_size = int(sam.image_encoder.img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.img_size / max(h, w)
        nh, nw = int(h * s + 0.5), int(w * s + 0.5)
        x = F.interpolate(x, (nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = F.pad(x, (0, self.img_size - nw, 0, self.img_size - nh))  # zero = the mean after normalising
        with torch.no_grad():
            emb = self.encoder(x)
        logits = F.interpolate(self.head(emb), (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return F.interpolate(logits[..., :nh, :nw], (h, w), mode="bilinear", align_corners=False)


def build_sam_head(num_classes: int = 3, model_type: str = "tiny_untrained", sam_checkpoint: str | None = None,
                   head_checkpoint: str | None = None, hidden: int = 128) -> SamHeadModel:
    """The SAM encoder `model_type` (weights `sam_checkpoint`) with a head (weights from a
    `playerseg train sam` mode-head checkpoint file, else freshly initialised)."""
    head = SamEmbeddingHead(num_classes, hidden=hidden)
    if head_checkpoint:
        from playerseg.sam.checkpoint import load_trained

        state = load_trained(head_checkpoint)
        if state["mode"] != "head":
            raise ValueError(f"{head_checkpoint}: a SAM {state['mode']!r} checkpoint, not a head checkpoint")
        head.load_state_dict(state["head"])
    return SamHeadModel(build_sam(model_type, sam_checkpoint), head).eval()
