"""`Preprocess`: how frames reach a segmentation model, stored with every exported model.

Resize the frame (cv2 INTER_AREA when shrinking, INTER_LINEAR when growing), RGB / 255, minus
`mean`, over `std`, zero-pad right and bottom to a multiple of `pad_multiple`. The resize is the
model's resolution policy: with `target_height` > 0 every frame is brought to that height whatever
its source resolution (a 478p clip is upsampled, a 1080p one shrunk, so players reach the model at
the sizes it was trained on); with `target_height` 0, frames are resized by the factor `scale`.

No torch at import: inference decode workers resize with `Preprocess.resize` and stay ~700 MiB
smaller; `normalize` / `pad` (tensors) import torch when called, where the model already has.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Preprocess:
    scale: float = 0.5  # input frames are resized by this factor (when target_height is 0)
    pad_multiple: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # on 0..1 RGB
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    target_height: int = 0  # > 0: every frame is resized to this height (aspect kept)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        """From a model.json `preprocess` entry (older ones have no target_height)."""
        return cls(scale=float(d.get("scale", 1.0)), pad_multiple=int(d.get("pad_multiple", 32)),
                   mean=tuple(d.get("mean", cls.mean)), std=tuple(d.get("std", cls.std)),
                   target_height=int(d.get("target_height", 0)))

    def factor(self, h: int) -> float:
        """The resize factor of a frame h pixels high."""
        return self.target_height / h if self.target_height > 0 else self.scale

    def at_model_resolution(self) -> "Preprocess":
        """The same preprocessing for frames that were already resized by this one."""
        import dataclasses

        return dataclasses.replace(self, scale=1.0, target_height=0)

    def size(self, h: int, w: int, factor: float = 1.0) -> tuple[int, int]:
        """(h, w) of a frame h x w after resizing by the policy's factor times `factor`."""
        s = self.factor(h) * factor
        return max(1, int(round(h * s))), max(1, int(round(w * s)))

    def resize(self, image: np.ndarray, factor: float = 1.0) -> np.ndarray:
        h, w = self.size(*image.shape[:2], factor)
        if (h, w) == image.shape[:2]:
            return image
        interp = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR
        return cv2.resize(image, (w, h), interpolation=interp)

    def resize_labels(self, labels: np.ndarray, factor: float = 1.0) -> np.ndarray:
        h, w = self.size(*labels.shape[:2], factor)
        if (h, w) == labels.shape[:2]:
            return labels
        return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)

    def normalize(self, x):
        """N x 3 x H x W uint8 torch tensor (any device) -> float, normalised."""
        import torch

        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255.0
        return (x.float() - mean) / std

    def pad(self, x, value: float = 0.0):
        """Pad the last two dims of a torch tensor right / bottom to multiples of pad_multiple."""
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x
