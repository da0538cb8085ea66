"""Metrics of one labelled source, for exactly what it labels (`Sample.labels`).

    meter = SourceMeter("epl", classes)
    meter.update(sample, pred, proba)   # HxW class ids (and C x H x W probabilities) at the sample's size
    meter.compute()                     # only the numbers this source can give, none for the rest

- Every class labelled per pixel (Acme): the full `SegmentationMeter` (IoU, Dice, boundary F,
  players-over-LED IoU).
- Some classes labelled per pixel (EPL boards): IoU of each of them, and `player_over_board`: the
  share of the board region hidden by someone standing in front of it (`occluded_board`: the board
  polygons with their cut-outs closed row by row, minus the board pixels) that is predicted player.
- A class labelled by boxes (detection set): the predicted instances, made by the inference job's
  own post-processing (`infer.postprocess.postprocess`), against the boxes: recall and precision at
  box IoU 0.5 (greedy by score), and COCO box AP / AP50 (pycocotools).
A class the source does not label gets no number: "unlabelled" is never scored as "background".
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.sample import BOX, PIXEL, Sample
from playerseg.metrics.instance import InstanceMeter, detections_from_instances
from playerseg.metrics.semantic import SegmentationMeter


def occluded_board(board: np.ndarray, gap_frac: float = 0.04) -> np.ndarray:
    """Where someone stands in front of a board whose visible pixels are `board` (players cut out):
    a horizontal closing `gap_frac` of the frame wide fills each cut-out (a player splitting a board
    in two, a head notching its edge: board on both sides of the same row), minus the board itself."""
    width = max(3, int(round(gap_frac * board.shape[1])) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (width, 1))
    closed = cv2.morphologyEx(board.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    return closed & ~board.astype(bool)


def match_boxes(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> int:
    """True positives of boxes `pred` (x0, y0, x1, y1) against `truth`, greedy by score at IoU >= iou."""
    if not len(pred) or not len(truth):
        return 0
    xywh = lambda b: np.c_[b[:, :2], b[:, 2:] - b[:, :2]].astype(np.float64)
    ious = mask_utils.iou(xywh(pred), xywh(truth), np.zeros(len(truth), np.uint8))
    used = np.zeros(len(truth), bool)
    tp = 0
    for i in np.argsort(-scores, kind="stable"):
        cand = np.where(~used, ious[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= iou:
            used[j] = True
            tp += 1
    return tp


class SourceMeter:
    def __init__(self, name: str, classes: TaskClasses, led_radius: float = 15.0, boundary_tol: float = 2.0,
                 reference_height: int = 1080, box_iou: float = 0.5, postprocess_cfg=None):
        self.name = name
        self.classes = classes
        self.box_iou = box_iou
        self.postprocess_cfg = postprocess_cfg
        self.full = SegmentationMeter(classes, led_radius, boundary_tol, reference_height)
        self.boxes = InstanceMeter(classes)
        self.counts: Counter = Counter()
        self.kinds: dict[str, str] = {}
        self.num_images = 0

    def update(self, sample: Sample, pred: np.ndarray, proba: np.ndarray | None = None) -> dict[str, float]:
        """Add one frame; returns that frame's own values of the count-based metrics (for ranking)."""
        before = dict(self.counts)
        self._update(sample, pred, proba)
        delta = {k: v - before.get(k, 0) for k, v in self.counts.items()}
        return self._ratios(delta)

    def _update(self, sample: Sample, pred: np.ndarray, proba: np.ndarray | None = None) -> None:
        sample.check_prediction(pred)
        names = self.classes.names
        kinds = {n: sample.label_kind(n) for n in names}
        self.kinds.update({n: k for n, k in kinds.items() if k != "none"})
        self.num_images += 1
        pixel = [c for c, n in enumerate(names) if kinds[n] == PIXEL]
        if sample.semantic is not None and len(pixel) == len(names):
            self.full.update(pred, sample.semantic, ids=[sample.id])
        elif sample.semantic is not None:
            known = sample.semantic != IGNORE_INDEX
            for c in pixel:
                if c == 0:
                    continue
                t, p = (sample.semantic == c) & known, (pred == c) & known
                self.counts[f"inter/{names[c]}"] += int((t & p).sum())
                self.counts[f"union/{names[c]}"] += int((t | p).sum())
            player, led = self.classes.player, self.classes.led_board
            if led in pixel and player is not None and player not in pixel:
                hidden = occluded_board(sample.semantic == led)
                self.counts["hidden_board"] += int(hidden.sum())
                self.counts["hidden_board_player"] += int((hidden & (pred == player)).sum())
        box_classes = [c for c, n in enumerate(names) if c and kinds[n] == BOX]
        if box_classes:
            self._boxes(sample, pred, proba, box_classes)

    def _boxes(self, sample: Sample, pred, proba, box_classes: list[int]) -> None:
        from playerseg.infer.postprocess import PostprocessConfig, postprocess

        cfg = dataclasses.replace(self.postprocess_cfg or PostprocessConfig(),
                                  instance_classes=[self.classes.names[c] for c in box_classes])
        found, _ = postprocess(proba if proba is not None else pred, self.classes, cfg, sample.image)
        image_id = self.boxes.add_ground_truth(dataclasses.replace(
            sample, id=f"{len(self.boxes.images)}:{sample.id}",
            instances=[i for i in sample.instances if i.class_id in box_classes]))
        self.boxes.add_detections(detections_from_instances(found, image_id, with_masks=False))
        for c in box_classes:
            name = self.classes.names[c]
            truth = np.array([i.box for i in sample.instances if i.class_id == c], np.float64).reshape(-1, 4)
            mine = [i for i in found if i.class_id == c]
            boxes = np.array([i.box for i in mine], np.float64).reshape(-1, 4)
            tp = match_boxes(boxes, np.array([i.score for i in mine]), truth, self.box_iou)
            self.counts[f"tp/{name}"] += tp
            self.counts[f"gt/{name}"] += len(truth)
            self.counts[f"det/{name}"] += len(mine)

    def compute(self) -> dict[str, float]:
        """{metric: value} of what this source labels (keys prefixed by nothing: the caller names the source)."""
        out: dict[str, float] = {}
        if len(self.full):
            out.update(self.full.compute())
        out.update(self._ratios(self.counts))
        if self.boxes.annotations:
            ap = self.boxes.compute("bbox")
            out["box_AP"], out["box_AP50"] = ap["AP"], ap["AP50"]
        out["images"] = float(self.num_images)
        return out

    def _ratios(self, c: dict) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in self.classes.names:
            if f"union/{n}" in c:
                out[f"iou/{n}"] = c[f"inter/{n}"] / c[f"union/{n}"] if c[f"union/{n}"] else math.nan
            if f"gt/{n}" in c:
                out[f"recall/{n}"] = c[f"tp/{n}"] / c[f"gt/{n}"] if c[f"gt/{n}"] else math.nan
                out[f"precision/{n}"] = c[f"tp/{n}"] / c[f"det/{n}"] if c[f"det/{n}"] else math.nan
                out[f"count_ratio/{n}"] = c[f"det/{n}"] / c[f"gt/{n}"] if c[f"gt/{n}"] else math.nan
        if "hidden_board" in c:
            out["player_over_board"] = c["hidden_board_player"] / c["hidden_board"] if c["hidden_board"] else math.nan
        return out
