"""Semantic metrics on class-id maps: confusion matrix, IoU, Dice, players-over-LED IoU, and the
`SegmentationMeter` that training, tuning and evaluation share.

Conventions (all functions):
- `pred` and `target` are HxW (or NxHxW) integer maps of task class ids (`TaskClasses`).
- Pixels where `target == IGNORE_INDEX` (255) count for nothing: not in the confusion matrix, not
  in the players-over-LED region, not in boundary precision (see `boundary.py`).
- A class absent from both prediction and truth of an image has union 0: its IoU/Dice for that
  image is NaN ("not measured"), never 1.0 or 0.0, and means skip NaNs. A class present in only
  one of them scores 0.0.
- Dataset-level IoU/Dice come from the confusion matrix summed over all images (large objects
  weigh more); `SegmentationMeter.compute_image_mean()` gives the mean of per-image values.

Players over LED boards (the hard case of the project): the region R is every pixel within
Euclidean distance `radius` px of a *true* `led_board` pixel (the truth board mask dilated by a
disk of that radius), minus ignored pixels. Inside R, the IoU of predicted `player` vs true
`player` pixels is

    players_over_led_iou = |P_pred ∩ P_true ∩ R| / |(P_pred ∪ P_true) ∩ R|

per image (NaN when the union is empty: no board, or no player near one in either map), and at
dataset level sum(intersections) / sum(unions). `radius` is in pixels of the maps given: 15 px at
1080p by default; use `scale_radius(15, height)` for other sizes. A model that merges players with
the boards they stand in front of loses here even when the overall player IoU looks fine.
"""
from __future__ import annotations

import math
from typing import Iterable

import cv2
import numpy as np

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.metrics.boundary import boundary_f

REFERENCE_HEIGHT = 1080  # frame height at which default radii / tolerances are given


def scale_radius(radius: float, height: int, reference_height: int = REFERENCE_HEIGHT) -> int:
    """A radius given at `reference_height` for frames `height` tall (at least 1 px when radius > 0)."""
    if radius <= 0:
        return 0
    return max(1, int(round(radius * height / reference_height)))


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_uint8(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{what} ids must lie in [0, 255], got {x.min()}..{x.max()}")
        x = x.astype(np.uint8)
    return np.ascontiguousarray(x)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """K x K int64 counts; rows are true classes, columns predicted; `ignore_index` pixels skipped.

    One lookup and one 256-bin histogram per image (OpenCV) for up to 13 classes.
    """
    k = num_classes
    pred, target = _as_numpy(pred), _as_numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.size == 0:
        return np.zeros((k, k), dtype=np.int64)
    pred, target = _as_uint8(pred, "prediction"), _as_uint8(target, "target")
    if pred.max() >= k:
        raise ValueError(f"prediction ids must lie in [0, {k}), got {pred.min()}..{pred.max()}")
    if k > 13:  # pair codes no longer fit in one byte
        valid = target != ignore_index
        if (target[valid] >= k).any():
            raise ValueError(f"target ids must lie in [0, {k}) or be {ignore_index} (ignore)")
        idx = target[valid].astype(np.int64) * k + pred[valid]
        return np.bincount(idx, minlength=k * k).reshape(k, k)
    # code = target * k + pred; ignored pixels -> k*k + pred; other bad targets -> 200 + pred
    lut = np.full(256, 200, dtype=np.uint8)
    lut[:k] = np.arange(k) * k
    lut[ignore_index] = k * k
    code = cv2.LUT(target.reshape(-1, target.shape[-1]), lut)  # NxHxW -> (N*H)xW
    cv2.add(code, pred.reshape(code.shape), dst=code)
    hist = cv2.calcHist([code], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    if hist[200:].any():
        raise ValueError(f"target ids must lie in [0, {k}) or be {ignore_index} (ignore)")
    return hist[: k * k].reshape(k, k)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN where the class is in neither truth nor prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def dice_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class Dice = 2 TP / (2 TP + FP + FN); NaN where the class is in neither."""
    tp = np.diag(cm).astype(np.float64)
    total = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * tp / total, np.nan)


def _led_window(target: np.ndarray, led_id: int, radius: float):
    """(rows, cols, region) with `region` the board neighbourhood inside that window, or None."""
    led = target == led_id
    rows, cols = np.flatnonzero(led.any(1)), np.flatnonzero(led.any(0))
    if rows.size == 0:
        return None
    r = max(0, int(math.ceil(radius)))
    ys = slice(max(0, rows[0] - r), min(target.shape[0], rows[-1] + r + 1))
    xs = slice(max(0, cols[0] - r), min(target.shape[1], cols[-1] + r + 1))
    crop = np.ascontiguousarray(led[ys, xs])
    if radius > 0:
        # distance of every pixel to the nearest board pixel (board pixels are the zeros)
        dist = cv2.distanceTransform((~crop).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        region = dist <= radius + 1e-3
    else:
        region = crop
    return ys, xs, region & (target[ys, xs] != IGNORE_INDEX)


def led_region(target: np.ndarray, led_id: int, radius: float) -> np.ndarray:
    """HxW bool: pixels within Euclidean distance `radius` of a true `led_id` pixel, not ignored."""
    out = np.zeros(target.shape, dtype=bool)
    window = _led_window(np.asarray(target), led_id, radius)
    if window is not None:
        ys, xs, region = window
        out[ys, xs] = region
    return out


def players_over_led_counts(pred, target, player_id: int, led_id: int, radius: float = 15) -> tuple[int, int]:
    """(intersection, union) of predicted vs true `player` inside the board region of one image."""
    pred, target = _as_numpy(pred), _as_numpy(target)
    window = _led_window(target, led_id, radius)
    if window is None:
        return 0, 0
    ys, xs, region = window
    p, t = pred[ys, xs] == player_id, target[ys, xs] == player_id
    return int(np.count_nonzero(p & t & region)), int(np.count_nonzero((p | t) & region))


def players_over_led_iou(pred, target, player_id: int, led_id: int, radius: float = 15) -> float:
    """Players-over-LED IoU of one image (see the module docstring); NaN when the union is empty."""
    inter, union = players_over_led_counts(pred, target, player_id, led_id, radius)
    return inter / union if union else math.nan


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


class SegmentationMeter:
    """Accumulates semantic metrics over images; cheap enough for every validation batch.

        meter = SegmentationMeter(TaskClasses())
        meter.update(pred, target)          # HxW or NxHxW uint8 class ids (numpy or torch)
        meter.compute()   # {"iou/<c>", "dice/<c>", "miou", "boundary_f/<c>", "players_over_led_iou"}
        meter.per_image() # one dict with the same keys per image, in update order

    `compute()` is dataset-level: IoU/Dice from the summed confusion matrix, players-over-LED from
    summed intersections/unions, boundary F as the mean of per-image values (DAVIS style).
    `compute_image_mean()` has the same keys, each the NaN-skipping mean of per-image values.
    `miou` is the mean IoU over non-background classes that are measured (not NaN).

    `led_radius` and `boundary_tol` are pixels of the maps given; with `reference_height` set they
    are given at that frame height and scaled to each image's height (e.g. 1080).
    """

    def __init__(self, classes: TaskClasses, led_radius: float = 15, boundary_tol: float = 2,
                 reference_height: int | None = None):
        self.classes = classes
        self.led_radius = led_radius
        self.boundary_tol = boundary_tol
        self.reference_height = reference_height
        self.foreground = [(i, n) for i, n in enumerate(classes.names) if i != 0]
        self.reset()

    def reset(self) -> None:
        k = len(self.classes)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.led_inter = 0
        self.led_union = 0
        self._images: list[dict[str, float]] = []
        self.image_ids: list[str | None] = []

    def keys(self) -> list[str]:
        names = self.classes.names
        return ([f"iou/{n}" for n in names] + [f"dice/{n}" for n in names] + ["miou"]
                + [f"boundary_f/{n}" for _, n in self.foreground] + ["players_over_led_iou"])

    def _radius(self, value: float, height: int) -> int:
        if self.reference_height:
            return scale_radius(value, height, self.reference_height)
        return int(round(value))

    def update(self, pred, target, ids: Iterable[str] | None = None) -> list[dict[str, float]]:
        """Add one HxW pair or a batch NxHxW; returns the per-image metric dicts of these images."""
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        if pred.ndim != 3:
            raise ValueError(f"expected HxW or NxHxW class maps, got shape {pred.shape}")
        ids = list(ids) if ids is not None else [None] * len(pred)
        if len(ids) != len(pred):
            raise ValueError(f"{len(ids)} ids for {len(pred)} images")
        return [self._update_one(p, t, i) for p, t, i in zip(pred, target, ids)]

    def _class_scores(self, cm: np.ndarray) -> dict[str, float]:
        """IoU and Dice of each class, and mIoU, from a confusion matrix."""
        names = self.classes.names
        iou, dice = iou_from_confusion(cm), dice_from_confusion(cm)
        out = {f"iou/{n}": float(iou[i]) for i, n in enumerate(names)}
        out.update({f"dice/{n}": float(dice[i]) for i, n in enumerate(names)})
        out["miou"] = _nanmean(out[f"iou/{n}"] for _, n in self.foreground)
        return out

    def _update_one(self, pred: np.ndarray, target: np.ndarray, image_id) -> dict[str, float]:
        cm = confusion_matrix(pred, target, len(self.classes))
        self.confusion += cm
        row = self._class_scores(cm)
        tol = self._radius(self.boundary_tol, target.shape[0])
        valid = target != IGNORE_INDEX
        for cid, n in self.foreground:
            row[f"boundary_f/{n}"] = boundary_f(pred == cid, target == cid, tol, valid=valid)
        player, led = self.classes.player, self.classes.led_board
        if player is not None and led is not None:
            inter, union = players_over_led_counts(pred, target, player, led,
                                                   self._radius(self.led_radius, target.shape[0]))
            self.led_inter += inter
            self.led_union += union
            row["players_over_led_iou"] = inter / union if union else math.nan
        else:
            row["players_over_led_iou"] = math.nan
        self._images.append(row)
        self.image_ids.append(image_id)
        return row

    def __len__(self) -> int:
        return len(self._images)

    def per_image(self) -> list[dict[str, float]]:
        return [dict(r) for r in self._images]

    def compute(self) -> dict[str, float]:
        out = self._class_scores(self.confusion)
        for _, n in self.foreground:
            out[f"boundary_f/{n}"] = _nanmean(r[f"boundary_f/{n}"] for r in self._images)
        out["players_over_led_iou"] = self.led_inter / self.led_union if self.led_union else math.nan
        return out

    def compute_image_mean(self) -> dict[str, float]:
        return {k: _nanmean(r[k] for r in self._images) for k in self.keys()}
