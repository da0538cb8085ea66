"""SAM training items and batches: cached embeddings or frames, prompts drawn per step.

    items = CachedItems(paths)                       # decoder modes: .npz items of the cache
    items = FrameItems(reader, keys, geo, ...)       # encoder modes: frames, cut into crops
    batch = collate([items[i] for i in idx], rng, PromptConfig(), geo, train=True)

One box per instance (jittered in training), optional positive / negative points sampled from
the instance's low-res mask; at most `max_per_image` prompts per item and step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from playerseg.classes import TaskClasses
from playerseg.sam.embeddings import load_item
from playerseg.sam.inputs import Geometry, prepare_item
from playerseg.sam.prompts import CropConfig, crop_sample, jitter_boxes, player_crops, sample_points


@dataclass
class PromptConfig:
    classes: list[str] = field(default_factory=lambda: ["player"])  # instances of these classes are prompted
    box_noise: float = 0.1  # box side jitter std, fraction of the side (SAM paper: 0.1)
    box_max_px: float = 20.0  # jitter cap, model-input pixels
    positive_points: int = 0
    negative_points: int = 0
    max_per_image: int = 32  # prompts per item and step (a random subset beyond)


class CachedItems:
    """Items of the embedding cache, one per (frame, crop)."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[dict]:
        return [load_item(self.paths[i])]


class FrameItems:
    """Frames of a reader; each yields the items of all its crops (with images, for the encoder)."""

    def __init__(self, reader, keys: list[str], geo: Geometry, classes: TaskClasses, crops: CropConfig,
                 prompt_ids: tuple[int, ...]):
        self.reader, self.keys, self.geo, self.classes = reader, list(keys), geo, classes
        self.crops, self.prompt_ids = crops, prompt_ids

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> list[dict]:
        sample = self.reader.load(self.keys[i])
        return [prepare_item(crop_sample(sample, c, self.crops.min_pixels), self.geo, self.prompt_ids)
                for c in player_crops(sample, self.classes, self.crops)]


def collate(groups: list[list[dict]], rng: np.random.Generator, cfg: PromptConfig, geo: Geometry,
            train: bool = True) -> dict | None:
    """Items (lists, flattened) -> a batch for SamTrainModel; items without prompts are dropped.

    Keys: "embeddings" (B x C x h x w float32) or "images" (B resized uint8 arrays); "boxes",
    "masks" (B tensors N_i x 4 / N_i x L x L), maybe "point_coords"/"point_labels"; "semantic" B x L x L.
    None when no item has a prompt."""
    items = [it for g in groups for it in g if len(it["boxes"])]
    if not items:
        return None
    batch: dict = {"boxes": [], "masks": [], "point_coords": [], "point_labels": []}
    scale = geo.img_size / geo.low_res
    for it in items:
        n = len(it["boxes"])
        keep = np.sort(rng.choice(n, cfg.max_per_image, replace=False)) if n > cfg.max_per_image else np.arange(n)
        boxes, masks = it["boxes"][keep], it["masks"][keep]
        if train:
            boxes = jitter_boxes(boxes, rng, cfg.box_noise, cfg.box_max_px, (geo.img_size, geo.img_size))
        batch["boxes"].append(torch.as_tensor(boxes, dtype=torch.float32))
        batch["masks"].append(torch.as_tensor(masks))
        if cfg.positive_points + cfg.negative_points:
            coords, labels = sample_points(masks, it["boxes"][keep], rng, cfg.positive_points,
                                           cfg.negative_points, scale)
            batch["point_coords"].append(torch.as_tensor(coords))
            batch["point_labels"].append(torch.as_tensor(labels))
    if not batch["point_coords"]:
        batch["point_coords"] = batch["point_labels"] = None
    batch["semantic"] = torch.as_tensor(np.stack([it["semantic"] for it in items])).long()
    if "embedding" in items[0]:
        batch["embeddings"] = torch.as_tensor(np.stack([it["embedding"] for it in items])).float()
    else:
        batch["images"] = [it["image"] for it in items]
    return batch


def to_device(batch: dict, device: torch.device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v
    return out
