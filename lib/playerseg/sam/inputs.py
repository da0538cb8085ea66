"""Frames into SAM's frame: the input image (longest side = the encoder's `img_size`, via
segment_anything's `ResizeLongestSide`), prompts in input coordinates, low-resolution targets.

Everything follows the model's own geometry (`Geometry.of(sam)`): 1024 px input and 256 px masks
for vit_b/l/h, 256 px and 64 px for `tiny_untrained`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from playerseg.classes import IGNORE_INDEX
from playerseg.data.sample import Sample


@dataclass(frozen=True)
class Geometry:
    img_size: int  # side of the square encoder input
    low_res: int  # side of the decoder's mask logits (4 x the embedding grid)

    @classmethod
    def of(cls, sam: Sam) -> "Geometry":
        return cls(int(sam.image_encoder.img_size), 4 * int(sam.prompt_encoder.image_embedding_size[0]))

    @property
    def transform(self) -> ResizeLongestSide:
        return ResizeLongestSide(self.img_size)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        return ResizeLongestSide.get_preprocess_shape(h, w, self.img_size)


def resize_image(image: np.ndarray, geo: Geometry) -> np.ndarray:
    """HxWx3 uint8 RGB -> the model-input-sized uint8 image (longest side = img_size)."""
    return geo.transform.apply_image(np.ascontiguousarray(image))


def to_model_input(sam: Sam, images: list[np.ndarray]) -> torch.Tensor:
    """Resized uint8 images (from `resize_image`) -> B x 3 x S x S normalised, padded, on sam.device."""
    out = [sam.preprocess(torch.as_tensor(im, device=sam.device).permute(2, 0, 1).float()) for im in images]
    return torch.stack(out)


def boxes_to_input(boxes: np.ndarray, original_size: tuple[int, int], geo: Geometry) -> np.ndarray:
    return geo.transform.apply_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), original_size).astype(np.float32)


def low_res_masks(masks: np.ndarray, input_size: tuple[int, int], geo: Geometry) -> np.ndarray:
    """N x H x W bool -> N x L x L bool in the decoder's low-resolution frame (padded like the image)."""
    h, w = input_size
    f = geo.img_size // geo.low_res
    out = np.zeros((len(masks), geo.low_res, geo.low_res), bool)
    for i, m in enumerate(masks):
        r = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        padded = np.zeros((geo.img_size, geo.img_size), np.float32)
        padded[:h, :w] = r
        out[i] = padded.reshape(geo.low_res, f, geo.low_res, f).mean(axis=(1, 3)) >= 0.5
    return out


def low_res_semantic(semantic: np.ndarray, input_size: tuple[int, int], geo: Geometry) -> np.ndarray:
    """H x W class ids -> L x L (nearest, pixel centres), IGNORE_INDEX in the padding."""
    h, w = input_size
    f = geo.img_size // geo.low_res
    r = cv2.resize(semantic, (w, h), interpolation=cv2.INTER_NEAREST)
    padded = np.full((geo.img_size, geo.img_size), IGNORE_INDEX, np.uint8)
    padded[:h, :w] = r
    return padded[f // 2::f, f // 2::f].copy()


def prepare_item(sample: Sample, geo: Geometry, prompt_classes: tuple[int, ...]) -> dict:
    """One training item of a (cropped) sample: the resized image and, per instance of
    `prompt_classes`, its box in input coordinates and its low-res mask; the low-res semantic map."""
    idx = [k for k, i in enumerate(sample.instances) if i.class_id in prompt_classes]
    insts = [sample.instances[k] for k in idx]
    if any(i.mask is None for i in insts):
        raise ValueError(f"{sample.path or sample.id}: SAM training needs instance masks; this source has boxes only")
    original = (sample.height, sample.width)
    input_size = geo.input_size(*original)
    masks = np.stack([i.mask for i in insts]) if insts else np.zeros((0, *original), bool)
    lr = low_res_masks(masks, input_size, geo)
    keep = lr.reshape(len(lr), -1).any(axis=1)  # instances too small to survive the downscale go
    semantic = (low_res_semantic(sample.semantic, input_size, geo) if sample.semantic is not None
                else np.full((geo.low_res, geo.low_res), IGNORE_INDEX, np.uint8))
    return {
        "image": resize_image(sample.image, geo),
        "boxes": boxes_to_input(sample.boxes[idx], original, geo)[keep],
        "masks": lr[keep],
        "class_ids": np.array([i.class_id for i in insts], np.int64)[keep],
        "semantic": semantic,
        "input_size": np.array(input_size, np.int64),
        "original_size": np.array(original, np.int64),
    }
