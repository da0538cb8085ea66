"""The training-crop augmentation of the GPU bundle, with numpy and cv2 only (no albumentations there).

`SimpleAugment(cfg.augment, crop)` is called like the albumentations pipeline of
`playerseg.train.augment.build_augment` (`transform(image=, mask=, bboxes=, box_classes=)` -> dict,
`set_random_seed(seed)`), so the project's `train.dataset.CropDataset` takes it unchanged. Per crop,
in this order, with the config's probabilities and strengths:

  scale                 zoom in [1 - s, 1 + s] (cv2 resize: linear image, nearest class sets, boxes scaled)
  pad + random crop     pad to the crop at a random position (image 0, class set 0 = nothing known), crop
  hflip                 horizontal flip
  rgb_shift             a shift per channel in [-s, s]
  brightness_contrast   brightness and contrast factors in [1 - s, 1 + s]

What differs from the Ray training's pipeline: no rotation, HSV shift, blur, elastic or grid
distortion (`rotate`, `hsv`, `blur`, `elastic`, `grid_distortion` of the config are not applied),
and the zoom is a plain resize, not albumentations' Affine. Boxes follow the zoom, crop and flip and
are kept where at least a quarter of them and 4 px^2 are left inside the crop, clipped (as
`build_augment`'s BboxParams).
"""
from __future__ import annotations

import itertools

import cv2
import numpy as np

NOTHING_KNOWN = 0  # class-set value of padded pixels (playerseg.train.augment)
NOT_APPLIED = ("rotate", "hsv", "blur", "elastic", "grid_distortion")


class SimpleAugment:
    def __init__(self, cfg, crop: tuple[int, int]):
        self.cfg = cfg
        self.crop = (int(crop[0]), int(crop[1]))
        self.seed = 0
        self._calls = itertools.count()

    def set_random_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def skipped(self) -> list[str]:
        """The augmentations the config turns on that this pipeline does not apply."""
        return [n for n in NOT_APPLIED if getattr(self.cfg, n).p > 0]

    def _rng(self) -> np.random.Generator:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()  # each DataLoader worker draws its own numbers
        return np.random.default_rng((self.seed, info.id + 1 if info else 0, next(self._calls)))

    def __call__(self, image: np.ndarray, mask: np.ndarray, bboxes, box_classes) -> dict:
        rng = self._rng()
        cfg = self.cfg
        boxes = np.asarray(bboxes, np.float32).reshape(-1, 4)
        classes = np.asarray(box_classes).reshape(-1)
        if cfg.scale.p > 0 and cfg.scale.strength > 0 and rng.random() < cfg.scale.p:
            z = rng.uniform(1 - cfg.scale.strength, 1 + cfg.scale.strength)
            h, w = image.shape[:2]
            size = (max(1, int(round(w * z))), max(1, int(round(h * z))))
            fx, fy = size[0] / w, size[1] / h
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            boxes = boxes * np.array([fx, fy, fx, fy], np.float32)
        ch, cw = self.crop
        h, w = image.shape[:2]
        if h < ch or w < cw:  # pad at a random position
            top = int(rng.integers(0, ch - h + 1)) if h < ch else 0
            left = int(rng.integers(0, cw - w + 1)) if w < cw else 0
            ph, pw = max(ch, h), max(cw, w)
            big = np.zeros((ph, pw, 3), image.dtype)
            big[top:top + h, left:left + w] = image
            big_mask = np.full((ph, pw), NOTHING_KNOWN, mask.dtype)
            big_mask[top:top + h, left:left + w] = mask
            image, mask = big, big_mask
            boxes = boxes + np.array([left, top, left, top], np.float32)
            h, w = ph, pw
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        image = image[y0:y0 + ch, x0:x0 + cw]
        mask = mask[y0:y0 + ch, x0:x0 + cw]
        if len(boxes):
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes = np.clip(boxes - np.array([x0, y0, x0, y0], np.float32), 0, [cw, ch, cw, ch])
            left_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = (left_area >= 4.0) & (left_area >= 0.25 * np.maximum(area, 1e-6))
            boxes, classes = boxes[keep], classes[keep]
        if cfg.hflip.p > 0 and rng.random() < cfg.hflip.p:
            image, mask = image[:, ::-1], mask[:, ::-1]
            if len(boxes):
                boxes = np.stack([cw - boxes[:, 2], boxes[:, 1], cw - boxes[:, 0], boxes[:, 3]], 1)
        colour = cfg.rgb_shift.p > 0 and rng.random() < cfg.rgb_shift.p
        contrast = cfg.brightness_contrast.p > 0 and rng.random() < cfg.brightness_contrast.p
        if colour or contrast:
            x = image.astype(np.float32)
            if colour:
                x += rng.uniform(-cfg.rgb_shift.strength, cfg.rgb_shift.strength, 3).astype(np.float32)
            if contrast:
                s = cfg.brightness_contrast.strength
                x = (x - 127.5) * rng.uniform(1 - s, 1 + s) + 127.5 * rng.uniform(1 - s, 1 + s)
            image = np.clip(x, 0, 255).astype(np.uint8)
        return {"image": np.ascontiguousarray(image), "mask": np.ascontiguousarray(mask),
                "bboxes": boxes.reshape(-1, 4), "box_classes": classes}
