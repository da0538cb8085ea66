"""Prompts and crops for SAM: jittered boxes, positive/negative points, crops around players.

Crops (an idea of the original author): a 1080p frame squeezed into SAM's 1024 px input makes a
player ~60 px tall; square crops around players, those over the LED boards first (where masks
bleed into the bright board), show them to SAM at 2x or more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from playerseg.classes import TaskClasses
from playerseg.data.reader import mask_box
from playerseg.data.sample import Instance, Sample


@dataclass
class CropConfig:
    enabled: bool = True  # crops around players (else the whole frame only)
    size: int = 512  # side of a square crop in frame pixels (grown to fit a bigger player)
    max_per_frame: int = 6
    full_frame: bool = True  # the whole frame is an item too
    margin: float = 0.15  # a crop is at least (1 + margin) x the player's longest side
    min_pixels: int = 16  # instances with fewer visible pixels in a crop are dropped there


@dataclass(frozen=True)
class Crop:
    """A window x0:x1, y0:y1 of a frame (pixels, end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def key(self) -> str:
        return f"{self.x0}_{self.y0}_{self.x1}_{self.y1}"

    @classmethod
    def full(cls, sample: Sample) -> "Crop":
        return cls(0, 0, sample.width, sample.height)

    def contains(self, box) -> bool:
        return box[0] >= self.x0 and box[1] >= self.y0 and box[2] <= self.x1 and box[3] <= self.y1


def _board_overlap(inst: Instance, board: np.ndarray | None) -> int:
    """LED-board pixels inside the player's box (the player stands in front of the board; the
    pixels under the player itself are labelled player, so the box is what overlaps)."""
    if board is None:
        return 0
    x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
    return int(board[y0:y1, x0:x1].sum())


def board_mask(sample: Sample, classes: TaskClasses) -> np.ndarray | None:
    """HxW bool of LED-board pixels, from the semantic map or the board instances' masks/boxes."""
    lid = classes.led_board
    if lid is None:
        return None
    if sample.semantic is not None:
        return sample.semantic == lid
    board = np.zeros((sample.height, sample.width), bool)
    for inst in sample.instances:
        if inst.class_id == lid:
            x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
            board[y0:y1, x0:x1] = True
    return board


def player_crops(sample: Sample, classes: TaskClasses, cfg: CropConfig) -> list[Crop]:
    """The frame's items: the whole frame (if cfg.full_frame), then square crops around players.

    Players overlapping the LED board come first, then by size; a player already inside a chosen
    crop gets none of its own. Deterministic for a sample.
    """
    crops = [Crop.full(sample)] if cfg.full_frame or not cfg.enabled else []
    if not cfg.enabled:
        return crops
    h, w = sample.height, sample.width
    board = board_mask(sample, classes)
    players = [i for i in sample.instances if i.class_id == classes.player]
    order = sorted(range(len(players)), key=lambda k: (
        -_board_overlap(players[k], board), -(players[k].box[3] - players[k].box[1]), k))
    chosen: list[Crop] = []
    for k in order:
        if len(chosen) >= cfg.max_per_frame:
            break
        box = players[k].box
        if any(c.contains(box) for c in chosen):
            continue
        side = int(max(cfg.size, (1 + cfg.margin) * max(box[2] - box[0], box[3] - box[1])))
        sw, sh = min(side, w), min(side, h)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0 = int(np.clip(round(cx - sw / 2), 0, w - sw))
        y0 = int(np.clip(round(cy - sh / 2), 0, h - sh))
        crop = Crop(x0, y0, x0 + sw, y0 + sh)
        if crop not in crops and crop not in chosen:
            chosen.append(crop)
    return crops + chosen


def crop_sample(sample: Sample, crop: Crop, min_pixels: int = 16) -> Sample:
    """The sample seen through `crop`: image, semantic map and instances (masks cut, boxes recomputed)."""
    if crop == Crop.full(sample):
        return sample
    ys, xs = slice(crop.y0, crop.y1), slice(crop.x0, crop.x1)
    instances = []
    for inst in sample.instances:
        if inst.mask is not None:
            m = inst.mask[ys, xs]
            if m.sum() < min_pixels:
                continue
            box = mask_box(m)
        else:
            b = np.clip(np.array(inst.box) - [crop.x0, crop.y0, crop.x0, crop.y0], 0,
                        [crop.x1 - crop.x0, crop.y1 - crop.y0] * 2)
            if b[2] - b[0] < 2 or b[3] - b[1] < 2:
                continue
            m, box = None, tuple(float(v) for v in b)
        instances.append(Instance(inst.class_id, box, m, inst.label, inst.score))
    return Sample(id=sample.id, image=sample.image[ys, xs], instances=instances, path=sample.path,
                  semantic=None if sample.semantic is None else sample.semantic[ys, xs], group=sample.group,
                  frame_index=sample.frame_index, meta={**sample.meta, "crop": crop.key})


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, noise: float = 0.1, max_px: float = 20.0,
                 size: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes (N x 4 xyxy) with each side moved by N(0, noise * side length), at most `max_px`
    (as in the SAM paper); clipped to `size` (h, w) when given, never inverted."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if noise <= 0 or not len(boxes):
        return boxes.copy()
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    delta = np.clip(rng.normal(0, 1, boxes.shape) * noise * wh, -max_px, max_px)
    out = boxes + delta.astype(np.float32)
    if size is not None:
        out = np.clip(out, 0, [size[1], size[0]] * 2)
    lo, hi = np.minimum(out[:, :2], out[:, 2:]), np.maximum(out[:, :2], out[:, 2:])
    return np.concatenate([lo, np.maximum(hi, lo + 1)], axis=1).astype(np.float32)


def sample_points(masks: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, positive: int = 1,
                  negative: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts per instance: `positive` pixels of its mask, `negative` pixels of its box
    outside the mask (anywhere outside when the box has none).

    masks: N x h x w bool (maybe low resolution); boxes: N x 4 in the frame of `masks` * `scale`.
    Returns coords N x P x 2 (x, y, pixel centres times `scale`) and labels N x P (1 / 0).
    """
    n, total = len(masks), positive + negative
    coords = np.zeros((n, total, 2), np.float32)
    labels = np.zeros((n, total), np.int64)
    for i, m in enumerate(masks):
        inside = np.argwhere(m)
        x0, y0, x1, y1 = (np.asarray(boxes[i]) / scale).round().astype(int)
        region = np.zeros_like(m)
        region[max(0, y0):y1, max(0, x0):x1] = True
        outside = np.argwhere(region & ~m)
        if not len(outside):
            outside = np.argwhere(~m)
        for j in range(total):
            pool, label = (inside, 1) if j < positive else (outside, 0)
            if not len(pool):  # empty mask or full mask: a point labelled as nothing
                coords[i, j], labels[i, j] = 0, -1
                continue
            y, x = pool[rng.integers(len(pool))]
            coords[i, j], labels[i, j] = ((x + 0.5) * scale, (y + 0.5) * scale), label
    return coords, labels
