"""Per-instance flags: the players that matter (in front of an LED board), truncated, merged.

    flags = instance_flags(boxes, masks, led_mask, FlagsConfig())   # one dict per instance

- `led_overlap`: fraction of the instance box (x0, y0, x1, y1, exclusive end) on `led_board`
  pixels; `led` is True when it reaches `led_overlap_min`. These are the players where semantic
  segmentation fails most (kit and board colours mix).
- `truncated`: the box touches the frame border (within `border_margin` px): part of the player is
  out of the frame, so its shape and kit are partial.
- `merged`: shape cues of two or more players in one mask: at least `merged_min_cues` of
    area_ratio  = mask area / median mask area of the frame's players  >= merged_area_ratio
    aspect      = box width / box height                                >= merged_aspect
    solidity    = mask area / area of its convex hull                   <= merged_solidity
  (a single standing or running player is taller than wide and fairly convex; two players side
  by side double the width and leave a concave gap between them). With one player in a frame the
  area cue has no reference and counts as not firing.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class FlagsConfig:
    led_overlap_min: float = 0.05  # box fraction on led_board pixels that flags `led`
    border_margin: int = 2  # px from the frame edge that count as touching it
    merged_area_ratio: float = 2.0
    merged_aspect: float = 0.9
    merged_solidity: float = 0.6
    merged_min_cues: int = 2


FLAG_COLUMNS = ("led_overlap", "led", "truncated", "merged")


def _int_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return x0, y0, max(x0, x1), max(y0, y1)


def led_overlap(box, led_mask: np.ndarray) -> float:
    """Fraction of the box's pixels (clipped to the frame) that are LED-board pixels; 0 for an empty box."""
    x0, y0, x1, y1 = _int_box(box, *led_mask.shape[:2])
    n = (x1 - x0) * (y1 - y0)
    return float(np.count_nonzero(led_mask[y0:y1, x0:x1])) / n if n else 0.0


def truncated(box, height: int, width: int, margin: int = 2) -> bool:
    """True when the box comes within `margin` px of a frame border."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0 <= margin or y0 <= margin or x1 >= width - margin or y1 >= height - margin


def solidity(mask: np.ndarray) -> float:
    """Mask area / area of the convex hull of its pixels (1.0 for a convex blob, 0 for an empty mask)."""
    pts = cv2.findNonZero(mask.astype(np.uint8))
    if pts is None:
        return 0.0
    hull = cv2.convexHull(pts)
    hull_area = max(float(cv2.contourArea(hull)), 0.0)
    area = float(np.count_nonzero(mask))
    # contourArea measures between pixel centres: add the hull's half-pixel rim (perimeter / 2 + 1)
    hull_pixels = hull_area + cv2.arcLength(hull, True) / 2 + 1
    return min(1.0, area / hull_pixels)


def merged_cues(mask: np.ndarray, box, reference_area: float | None) -> dict[str, float]:
    """area_ratio (NaN without a reference), aspect (w / h) and solidity of one instance."""
    area = float(np.count_nonzero(mask))
    w, h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    return {
        "area_ratio": area / reference_area if reference_area else float("nan"),
        "aspect": w / h if h > 0 else 0.0,
        "solidity": solidity(mask),
    }


def is_merged(cues: dict[str, float], cfg: FlagsConfig) -> bool:
    fired = int(cues["area_ratio"] >= cfg.merged_area_ratio)  # NaN compares False
    fired += int(cues["aspect"] >= cfg.merged_aspect)
    fired += int(cues["solidity"] <= cfg.merged_solidity)
    return fired >= cfg.merged_min_cues


def instance_flags(boxes, masks, led_mask: np.ndarray | None, cfg: FlagsConfig = FlagsConfig()) -> list[dict]:
    """Flags of each instance of one frame.

    boxes: N x 4 (x0, y0, x1, y1); masks: N HxW bool masks (list or array); led_mask: HxW bool
    LED-board pixels of the frame (None = no boards known: overlap 0). Returns N dicts with the
    keys of FLAG_COLUMNS plus the merged cues (area_ratio, aspect, solidity).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != len(masks):
        raise ValueError(f"{len(boxes)} boxes but {len(masks)} masks")
    if not len(boxes):
        return []
    height, width = masks[0].shape[:2]
    areas = [float(np.count_nonzero(m)) for m in masks]
    reference = float(np.median(areas)) if len(areas) > 1 else None
    out = []
    for box, mask in zip(boxes, masks):
        overlap = led_overlap(box, led_mask) if led_mask is not None else 0.0
        cues = merged_cues(mask, box, reference)
        out.append({
            "led_overlap": overlap,
            "led": overlap >= cfg.led_overlap_min,
            "truncated": truncated(box, height, width, cfg.border_margin),
            "merged": is_merged(cues, cfg),
            **cues,
        })
    return out
