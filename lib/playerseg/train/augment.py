"""The albumentations pipeline of training crops, built from `AugmentConfig`.

Geometry first (zoom, rotation, distortions, flips), then the random crop of `InputConfig.crop`
out of the scaled full frame (padded with 0 = "nothing known" class sets where the frame is
smaller), then colour. The mask is the class-set map of `playerseg.data.targets`; boxes
(`bboxes`, pascal_voc pixels, with `box_classes`) follow the geometry and are clipped to the crop.
Strengths: scale s -> zoom in [1-s, 1+s]; rotate -> degrees; rgb_shift -> shift per channel;
brightness_contrast -> limit; hsv -> hue shift (saturation / value 1.5x that); blur -> max sigma
(px); elastic -> alpha (px); grid_distortion -> distort limit.
"""
from __future__ import annotations

import albumentations as A
import cv2

from playerseg.train.config import AugmentConfig

NOTHING_KNOWN = 0  # class-set value of padded pixels


def build_augment(cfg: AugmentConfig, crop: tuple[int, int]) -> A.Compose:
    h, w = crop
    ops: list = []
    geo = dict(border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=NOTHING_KNOWN)
    if cfg.scale.p > 0 and cfg.scale.strength > 0:
        s = cfg.scale.strength
        ops.append(A.Affine(scale=(1 - s, 1 + s), keep_ratio=True, p=cfg.scale.p, **geo))
    if cfg.rotate.p > 0:
        ops.append(A.Rotate(limit=cfg.rotate.strength, p=cfg.rotate.p, **geo))
    if cfg.elastic.p > 0:
        ops.append(A.ElasticTransform(alpha=cfg.elastic.strength, sigma=max(5.0, cfg.elastic.strength / 3),
                                      p=cfg.elastic.p, border_mode=cv2.BORDER_CONSTANT, fill=0,
                                      fill_mask=NOTHING_KNOWN))
    if cfg.grid_distortion.p > 0:
        ops.append(A.GridDistortion(distort_limit=cfg.grid_distortion.strength, p=cfg.grid_distortion.p, **geo))
    ops.append(A.PadIfNeeded(min_height=h, min_width=w, position="random", **geo))
    ops.append(A.RandomCrop(height=h, width=w))
    if cfg.hflip.p > 0:
        ops.append(A.HorizontalFlip(p=cfg.hflip.p))
    if cfg.vflip.p > 0:
        ops.append(A.VerticalFlip(p=cfg.vflip.p))
    if cfg.rgb_shift.p > 0:
        s = cfg.rgb_shift.strength
        ops.append(A.RGBShift(r_shift_limit=s, g_shift_limit=s, b_shift_limit=s, p=cfg.rgb_shift.p))
    if cfg.brightness_contrast.p > 0:
        s = cfg.brightness_contrast.strength
        ops.append(A.RandomBrightnessContrast(brightness_limit=s, contrast_limit=s, p=cfg.brightness_contrast.p))
    if cfg.hsv.p > 0:
        s = cfg.hsv.strength
        ops.append(A.HueSaturationValue(hue_shift_limit=s, sat_shift_limit=1.5 * s, val_shift_limit=1.5 * s,
                                        p=cfg.hsv.p))
    if cfg.blur.p > 0:
        ops.append(A.GaussianBlur(sigma_limit=(0.1, max(0.1, cfg.blur.strength)), p=cfg.blur.p))
    # a box cut by the crop keeps its visible part when at least a quarter of it is left
    boxes = A.BboxParams(format="pascal_voc", label_fields=["box_classes"], min_visibility=0.25,
                         clip=True, min_area=4.0)
    return A.Compose(ops, bbox_params=boxes)
