"""The one sample record every reader yields, whatever the source format."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# How a source labels one task class (`Sample.labels`): every pixel of it is marked (`pixel`: where
# the label map says another class, the pixel is not this one), only a box around each object
# (`box`: outside every box the pixel is not this class, inside it may be), or not at all (`none`:
# a pixel may be this class anywhere the label map does not say a pixel-labelled class).
PIXEL, BOX, NONE = "pixel", "box", "none"


@dataclass
class Instance:
    """One object: a task class, a box (x0, y0, x1, y1 in pixels, exclusive end) and maybe a mask."""

    class_id: int
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = None  # HxW bool, where the source has masks
    label: str = ""  # source class name (e.g. `team_a`, `goalkeeper`)
    score: float = 1.0

    @property
    def xywh(self) -> list[float]:
        """The box as COCO writes it: [x, y, width, height]."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        return [x0, y0, x1 - x0, y1 - y0]


@dataclass
class Sample:
    """An RGB frame with what a source knows about it.

    `semantic` holds task class ids (`TaskClasses`), IGNORE_INDEX where unlabelled; it is None for
    box-only sources. `labels` says, per task class name, how the source labels it (PIXEL, BOX or
    NONE; a class not listed counts as NONE), so that training and evaluation never take
    "unlabelled" for "background": in a label map, `background` then means "none of the classes
    labelled per pixel". `frame_index` orders frames of one video (`group`) for leak-free splits.
    """

    id: str
    image: np.ndarray  # HxWx3 uint8 RGB
    semantic: np.ndarray | None = None  # HxW uint8
    instances: list[Instance] = field(default_factory=list)
    path: str = ""
    group: str = ""  # video / match the frame comes from
    frame_index: int | None = None
    meta: dict = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # task class name -> PIXEL | BOX | NONE

    def label_kind(self, name: str) -> str:
        return self.labels.get(name, NONE)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def boxes(self) -> np.ndarray:
        return np.array([i.box for i in self.instances], dtype=np.float32).reshape(-1, 4)

    @property
    def box_classes(self) -> np.ndarray:
        return np.array([i.class_id for i in self.instances], dtype=np.int64)

    def check_prediction(self, pred: np.ndarray) -> None:
        """ValueError naming the frame when `pred` (HxW) is not at the image's size."""
        if pred.shape != self.image.shape[:2]:
            raise ValueError(f"{self.path or self.id}: prediction is {pred.shape}, image {self.image.shape[:2]}")

    def instance_masks(self) -> np.ndarray:
        """N x H x W bool; raises when the source has no masks."""
        if any(i.mask is None for i in self.instances):
            raise ValueError(f"{self.path or self.id}: this source has boxes only, no instance masks")
        if not self.instances:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([i.mask for i in self.instances])
