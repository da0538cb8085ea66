"""The pitch: where the grass of a football broadcast frame is, found by colour alone.

    grass = pitch_mask(frame)          # H x W bool, all False when no pitch is in view
    share = grass_around(grass, box)   # share of grass around a box (does it stand on the pitch?)

Training uses it as a negative label (`playerseg.data.targets`: sure grass is not a player where a
source does not label players per pixel); inference as a plausibility check
(`playerseg.infer.postprocess`: a player stands on the pitch, so a blob in the crowd, on a scoreboard
or among the staff behind the boards, with no grass around it, is dropped).
"""
from __future__ import annotations

import cv2
import numpy as np


def pitch_mask(image: np.ndarray, margin: int = 3, min_share: float = 0.1) -> np.ndarray:
    """H x W bool: pixels that are surely pitch grass in an RGB frame (all False without a pitch).

    The pitch is the frame's dominant green: hue, saturation and value are taken from the medians of
    its green pixels (30-90 on OpenCV's 0-180 hue scale), so any stadium's grass, lighting and mowing
    stripes fit; a pixel is grass within 10 hue steps of that, at least half its saturation and a
    value between 0.4x (shadows) and 1.8x (sunlit stripes); only regions of 2% of the frame or more
    count (not the green of a kit, a logo or the crowd), shrunk by `margin` px so that the blended
    edge of a player against the grass stays unknown. Fewer than `min_share` green pixels (a close-up,
    the crowd): no pitch."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    h, s, v = (hsv[..., i].astype(np.int16) for i in range(3))
    green = (h >= 30) & (h <= 90) & (s >= 50) & (v >= 40)
    if green.mean() < min_share:
        return np.zeros(image.shape[:2], bool)
    h0, s0, v0 = (float(np.median(x[green])) for x in (h, s, v))
    grass = (np.abs(h - h0) <= 10) & (s >= 0.5 * s0) & (v >= 0.4 * v0) & (v <= 1.8 * v0)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(grass.astype(np.uint8), connectivity=4)
    big = np.zeros(n, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.02 * grass.size
    grass = big[lab]
    if margin:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        grass = cv2.erode(grass.astype(np.uint8), kernel).astype(bool)
    return grass


def grass_around(grass: np.ndarray, box, reach: float = 0.5) -> float:
    """Share of `grass` pixels in the box grown by `reach` x its height on every side."""
    h, w = grass.shape
    x0, y0, x1, y1 = box
    pad = reach * (y1 - y0)
    window = grass[max(0, int(y0 - pad)):min(h, int(np.ceil(y1 + pad))),
                   max(0, int(x0 - pad)):min(w, int(np.ceil(x1 + pad)))]
    return float(window.mean()) if window.size else 0.0
