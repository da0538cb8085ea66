"""What of SAM trains (`MODES`), and SAM as one module for DDP: embeddings or images in, masks out.

    model = SamTrainModel(sam, mode="decoder")           # sets requires_grad per the mode
    outs = model(batch)      # [(low-res mask logits N x K x L x L, iou predictions N x K)] per image

`decoder`, `decoder_prompt` and `head` never run the encoder in training: they read cached image
embeddings (`batch["embeddings"]`); `last_n_blocks` and `full` take images (`batch["images"]`).
Every prompt of an image goes through one decoder call.
"""
from __future__ import annotations

import torch
from segment_anything.modeling import Sam
from torch import nn

MODES = ("decoder", "decoder_prompt", "last_n_blocks", "full", "head")
CACHED_MODES = ("decoder", "decoder_prompt", "head")


def trainable_prefixes(mode: str, sam: Sam, last_n: int = 2) -> list[str]:
    """State-dict prefixes (of Sam) trained in `mode`; `head` trains no SAM parameter."""
    if mode not in MODES:
        raise ValueError(f"unknown SAM training mode {mode!r}; modes are {list(MODES)}")
    if mode == "head":
        return []
    if mode == "decoder":
        return ["mask_decoder."]
    if mode == "full":
        return ["image_encoder.", "prompt_encoder.", "mask_decoder."]
    prefixes = ["prompt_encoder.", "mask_decoder."]
    if mode == "last_n_blocks":
        depth = len(sam.image_encoder.blocks)
        if not 1 <= last_n <= depth:
            raise ValueError(f"last_n_blocks={last_n} must be in 1..{depth} (encoder depth)")
        prefixes += [f"image_encoder.blocks.{i}." for i in range(depth - last_n, depth)] + ["image_encoder.neck."]
    return prefixes


def set_trainable(sam: Sam, prefixes: list[str]) -> list[str]:
    """requires_grad on the parameters under `prefixes`, off elsewhere; returns the trained names."""
    names = []
    for name, p in sam.named_parameters():
        p.requires_grad_(any(name.startswith(pre) for pre in prefixes))
        if p.requires_grad:
            names.append(name)
    return names


def encode(sam: Sam, images: torch.Tensor, trainable_blocks: int = 0) -> torch.Tensor:
    """Image embeddings of preprocessed images; only the last `trainable_blocks` blocks (and the
    neck) keep a graph, the rest runs under no_grad. trainable_blocks < 0: the whole encoder does."""
    enc = sam.image_encoder
    depth = len(enc.blocks)
    frozen = depth if trainable_blocks == 0 else (0 if trainable_blocks < 0 else depth - trainable_blocks)
    with torch.set_grad_enabled(torch.is_grad_enabled() and frozen == 0):
        x = enc.patch_embed(images)
        if enc.pos_embed is not None:
            x = x + enc.pos_embed
    for i, blk in enumerate(enc.blocks):
        with torch.set_grad_enabled(torch.is_grad_enabled() and i >= frozen):
            x = blk(x)
    with torch.set_grad_enabled(torch.is_grad_enabled() and trainable_blocks != 0):
        return enc.neck(x.permute(0, 3, 1, 2))


def decode(sam: Sam, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
           points: tuple[torch.Tensor, torch.Tensor] | None = None, multimask: bool = False):
    """All prompts of ONE image in one decoder call.

    embedding 1 x C x h x w (or C x h x w); boxes N x 4 and points (N x P x 2, N x P) in the model's
    input frame. Returns low-res mask logits N x K x L x L and IoU predictions N x K (K = 3 or 1).
    """
    if embedding.dim() == 3:
        embedding = embedding.unsqueeze(0)
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask)


class SamTrainModel(nn.Module):
    """SAM (and optionally a head on its embeddings) as one module, so DDP sees one forward."""

    def __init__(self, sam: Sam, mode: str = "decoder", last_n: int = 2, head: nn.Module | None = None,
                 multimask: bool = False):
        super().__init__()
        self.sam, self.mode, self.head, self.multimask = sam, mode, head, multimask
        self.trained = set_trainable(sam, trainable_prefixes(mode, sam, last_n))
        self.encoder_blocks = {"last_n_blocks": last_n, "full": -1}.get(mode, 0)
        if mode == "head" and head is None:
            raise ValueError("mode 'head' needs a head module")

    def embeddings(self, batch: dict) -> torch.Tensor:
        if "embeddings" in batch:
            return batch["embeddings"]
        return encode(self.sam, batch["images"], self.encoder_blocks if self.training else 0)

    def forward(self, batch: dict):
        """batch: "embeddings" B x C x h x w or "images" B x 3 x S x S; "boxes": B tensors N_i x 4;
        optional "point_coords"/"point_labels": B tensors N_i x P x 2 / N_i x P.
        Returns the head's logits (mode head) or [(mask logits, iou)] per image."""
        emb = self.embeddings(batch)
        if self.mode == "head":
            return self.head(emb)
        outs = []
        for b in range(emb.shape[0]):
            pts = None
            if batch.get("point_coords") is not None:
                pts = (batch["point_coords"][b], batch["point_labels"][b])
            outs.append(decode(self.sam, emb[b], batch["boxes"][b], pts, self.multimask))
        return outs
