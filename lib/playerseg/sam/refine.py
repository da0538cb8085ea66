"""SAM as a refinement step: a frame and player boxes (a Unet's instances, any detector) in, one
mask per box out. The encoder runs once per frame; all boxes of a frame go in one decoder call.

    refiner = SamRefiner(load_finetuned_sam("sam_trained.pt"), device="cuda")
    masks, scores = refiner.refine(image, boxes)      # HxWx3 uint8 RGB, N x 4 xyxy px
    # masks: N x H x W bool, scores: N predicted IoU
"""
from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import Sam

from playerseg.sam.inputs import Geometry, boxes_to_input, resize_image, to_model_input
from playerseg.sam.model import decode


class SamRefiner:
    def __init__(self, sam: Sam, device: str | torch.device | None = None, max_boxes_per_call: int = 256):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.sam = sam.to(device).eval()
        self.device = torch.device(device)
        self.geo = Geometry.of(sam)
        self.max_boxes = max_boxes_per_call  # bounds decoder memory on crowded frames

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """(1 x C x h x w image embedding, input size) of an HxWx3 uint8 RGB frame."""
        resized = resize_image(image, self.geo)
        return self.sam.image_encoder(to_model_input(self.sam, [resized])), resized.shape[:2]

    @torch.no_grad()
    def refine(self, image: np.ndarray, boxes: np.ndarray, embedding: tuple | None = None,
               multimask: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One mask per box: (N x H x W bool, N float32 predicted IoU). With `multimask`, the
        best of SAM's three masks (by predicted IoU) is kept. `embedding`: from `embed`, to reuse."""
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, h, w), bool), np.zeros(0, np.float32)
        emb, input_size = embedding if embedding is not None else self.embed(image)
        tb = torch.as_tensor(boxes_to_input(boxes, (h, w), self.geo), device=self.device)
        masks, scores = [], []
        for s in range(0, len(tb), self.max_boxes):
            logits, iou = decode(self.sam, emb, boxes=tb[s:s + self.max_boxes], multimask=multimask)
            best = iou.argmax(dim=1)
            idx = torch.arange(len(best), device=best.device)
            logits, iou = logits[idx, best].unsqueeze(1), iou[idx, best]
            full = self.sam.postprocess_masks(logits, input_size, (h, w))[:, 0] > self.sam.mask_threshold
            masks.append(full.cpu().numpy())
            scores.append(iou.float().cpu().numpy())
        return np.concatenate(masks), np.concatenate(scores).astype(np.float32)
