"""Boundary F-score (Perazzi et al., DAVIS 2016): how well predicted object outlines follow the
true ones, within a tolerance of a few pixels.

Boundary of a binary mask: the mask pixels with a 4-neighbour outside the mask. The image border
is not an outline (pixels beyond the frame count as inside the mask), so a board cut by the frame
edge is not penalised there.

With Bp, Bt the predicted and true boundaries and `tol` a distance in pixels:

    precision = |{p in Bp : dist(p, Bt) <= tol}| / |Bp|
    recall    = |{t in Bt : dist(t, Bp) <= tol}| / |Bt|
    F         = 2 P R / (P + R)            (0 when P + R = 0)

Distances are exact Euclidean (dilation by a disk of radius `tol`). Edge cases: both boundaries empty -> NaN
(nothing to measure; means skip it); only one empty -> F = 0. With `valid` given (the non-ignored
pixels of the truth), predicted boundary pixels on ignored pixels are left out of precision.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """HxW bool: pixels of `mask` with a 4-neighbour outside it (the frame edge is not an outline)."""
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    eroded = cv2.erode(m, _CROSS, borderType=cv2.BORDER_REPLICATE)
    return (m > eroded)


def disk(radius: float) -> np.ndarray:
    """Structuring element of the offsets (dx, dy) with dx^2 + dy^2 <= radius^2."""
    r = int(math.floor(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= radius * radius + 1e-6).astype(np.uint8)


def _within(points: np.ndarray, of: np.ndarray, tol: float) -> int:
    """How many pixels of `points` lie within Euclidean distance `tol` of a pixel of `of`."""
    near = cv2.dilate(of.view(np.uint8), disk(tol)) if tol >= 1 else of.view(np.uint8)
    return int(np.count_nonzero(near[points]))


def boundary_precision_recall(pred: np.ndarray, truth: np.ndarray, tol: float = 2,
                              valid: np.ndarray | None = None) -> tuple[float, float]:
    """(precision, recall) of the boundary of `pred` against that of `truth`; NaN when undefined."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    # work on the window around both masks plus tol + 1 px (players are small in a frame): its
    # edges inside the frame cross no mask, so outlines and distances are those of the full frame
    either = np.logical_or(pred, truth)
    rows, cols = np.flatnonzero(either.any(1)), np.flatnonzero(either.any(0))
    if rows.size == 0:
        return math.nan, math.nan
    pad = int(math.ceil(tol)) + 1
    ys = slice(max(0, rows[0] - pad), rows[-1] + pad + 1)
    xs = slice(max(0, cols[0] - pad), cols[-1] + pad + 1)
    bp, bt = mask_boundary(pred[ys, xs]), mask_boundary(truth[ys, xs])
    if valid is not None:
        bp &= valid[ys, xs]
    n_p, n_t = int(np.count_nonzero(bp)), int(np.count_nonzero(bt))
    if n_p == 0 or n_t == 0:
        return (math.nan if n_p == 0 else 0.0), (math.nan if n_t == 0 else 0.0)
    return _within(bp, bt, tol) / n_p, _within(bt, bp, tol) / n_t


def boundary_f(pred: np.ndarray, truth: np.ndarray, tol: float = 2, valid: np.ndarray | None = None) -> float:
    """Boundary F-score of two HxW bool masks (see the module docstring); NaN if both have no outline."""
    p, r = boundary_precision_recall(pred, truth, tol, valid)
    if math.isnan(p) and math.isnan(r):
        return math.nan
    if math.isnan(p) or math.isnan(r):
        return 0.0
    return 2 * p * r / (p + r) if p + r > 0 else 0.0
