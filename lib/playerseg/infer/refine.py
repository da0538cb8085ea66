"""Optional SAM refinement of post-processed instances: each instance's box prompts SAM on the
frame (model resolution), SAM's mask replaces the instance mask (`playerseg.sam.refine`).

`SamRefineConfig.checkpoint` (`infer.pipeline`) is a playerseg SAM training checkpoint
(`sam_trained.pt`), official SAM weights for `model_type`, or "untrained" (tests only: the
deterministic random `tiny_untrained`).
The instance keeps the segmentation model's score; an empty SAM mask keeps the original mask.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from playerseg.classes import TaskClasses
from playerseg.data.reader import mask_box
from playerseg.data.sample import Instance


def load_sam(checkpoint: str, model_type: str, device: str = "cpu"):
    from playerseg.sam.build import build_sam
    from playerseg.sam.checkpoint import load_finetuned_sam

    if checkpoint == "untrained":
        return build_sam(model_type, None, device)
    if checkpoint.endswith(".pt"):
        with contextlib.suppress(ValueError):  # not a playerseg training checkpoint: official weights below
            return load_finetuned_sam(checkpoint, device)
    return build_sam(model_type, checkpoint, device)


class SamInstanceRefiner:
    def __init__(self, cfg, classes: TaskClasses, device: str | None = None):
        import torch

        from playerseg.sam.refine import SamRefiner

        device = device or ("cuda" if cfg.num_gpus > 0 and torch.cuda.is_available() else "cpu")
        self.refiner = SamRefiner(load_sam(cfg.checkpoint, cfg.model_type, device), device)
        self.class_ids = {classes.id(n) for n in cfg.classes}

    def __call__(self, image: np.ndarray, instances: list[Instance]) -> list[Instance]:
        """Instances of the refined classes get SAM's mask for their box; others pass through."""
        chosen = [i for i, inst in enumerate(instances) if inst.class_id in self.class_ids]
        if not chosen:
            return instances
        if image.shape[:2] != instances[chosen[0]].mask.shape:
            raise ValueError(f"image {image.shape[:2]} and masks {instances[chosen[0]].mask.shape} differ in size")
        boxes = np.array([instances[i].box for i in chosen], np.float32)
        masks, _ = self.refiner.refine(image, boxes)
        out = list(instances)
        for i, m in zip(chosen, masks):
            if m.any():
                out[i] = dataclasses.replace(instances[i], mask=m, box=mask_box(m))
        return out
