"""Instance metrics: COCO mask / box AP with pycocotools, semantic map -> instances (mask IoU of
RLEs: `pycocotools.mask.iou`).

Category ids are task class ids (`TaskClasses`, background excluded), named by task class name, so
ground truth from any reader and detections from any model agree without a lookup table.

    meter = InstanceMeter(TaskClasses())
    for sample, class_map in pairs:
        meter.add_ground_truth(sample)                                   # keeps RLEs, not pixels
        meter.add_detections(detections_from_instances(
            semantic_to_instances(class_map, classes.player, min_area=16), sample.id))
    meter.compute("segm")   # {"AP": ..., "AP50": ..., "AP75": ...}; NaN when there is no truth

Detections are COCO result dicts (`coco_detection`): `image_id` (the Sample id or its position),
`category_id`, `score`, and `segmentation` (RLE from `playerseg.metrics.rle.encode`) and/or `bbox`
[x, y, w, h].
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Iterable

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.sample import Instance, Sample
from playerseg.metrics import rle as rle_utils

IOU_TYPES = ("segm", "bbox")


def components(class_map: np.ndarray, class_id: int, min_area: int = 16, connectivity: int = 8):
    """Yield (x0, y0, x1, y1, crop) for each connected component of `class_map == class_id` with at
    least `min_area` pixels; `crop` is the HxW bool mask of the component inside its box."""
    binary = np.ascontiguousarray(np.asarray(class_map) == class_id).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= min_area:
            yield x, y, x + w, y + h, labels[y:y + h, x:x + w] == i


def semantic_to_instances(class_map: np.ndarray, class_id: int, min_area: int = 16,
                          score_map: np.ndarray | None = None, connectivity: int = 8) -> list[Instance]:
    """Connected components of `class_map == class_id` with at least `min_area` pixels, as Instances.

    The score is the mean of `score_map` (HxW class probability) over the component, else 1.0.
    Touching objects of one class become one instance: this is the simple baseline conversion.
    """
    out = []
    for x0, y0, x1, y1, crop in components(class_map, class_id, min_area, connectivity):
        mask = np.zeros(np.shape(class_map), dtype=bool)
        mask[y0:y1, x0:x1] = crop
        score = float(score_map[y0:y1, x0:x1][crop].mean()) if score_map is not None else 1.0
        out.append(Instance(class_id=int(class_id), box=(float(x0), float(y0), float(x1), float(y1)),
                            mask=mask, score=score))
    return out


def semantic_to_detections(class_map: np.ndarray, class_id: int, image_id, min_area: int = 16,
                           score_map: np.ndarray | None = None, connectivity: int = 8) -> list[dict]:
    """`detections_from_instances(semantic_to_instances(...), image_id)` without full-frame masks:
    the RLE of each component is built from its crop (cheap when a frame has many components)."""
    h, w = np.shape(class_map)
    out = []
    for x0, y0, x1, y1, crop in components(class_map, class_id, min_area, connectivity):
        score = float(score_map[y0:y1, x0:x1][crop].mean()) if score_map is not None else 1.0
        out.append(coco_detection(image_id, class_id, score, (x0, y0, x1 - x0, y1 - y0),
                                  rle_utils.encode_crop(crop, x0, y0, h, w)))
    return out


def detections_from_instances(instances: Iterable[Instance], image_id, with_masks: bool = True) -> list[dict]:
    """COCO result dicts for one image's instances (RLE segmentation when masks are there, and bbox)."""
    return [coco_detection(image_id, inst.class_id, inst.score, inst.xywh,
                           rle_utils.encode(inst.mask) if with_masks and inst.mask is not None else None)
            for inst in instances]


def coco_detection(image_id, category_id: int, score: float, bbox, segmentation: dict | None = None) -> dict:
    """One COCO result dict: `bbox` [x, y, w, h] pixels, `segmentation` an RLE (left out when None)."""
    det = {"image_id": image_id, "category_id": int(category_id), "score": float(score),
           "bbox": [float(v) for v in bbox]}
    if segmentation is not None:
        det["segmentation"] = segmentation
    return det


def write_coco_results(path: str, detections: list[dict]) -> None:
    """The COCO results JSON (a list of detection dicts), written atomically."""
    from playerseg.io import write_json_atomic

    write_json_atomic(path, [dict(d, segmentation=json_rle(d["segmentation"])) if "segmentation" in d else d
                             for d in detections])


def json_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


class InstanceMeter:
    """Streams ground truth and detections (RLEs only, no pixel arrays kept) and computes COCO AP."""

    def __init__(self, classes: TaskClasses = TaskClasses(), max_dets: int = 100):
        self.classes = classes
        self.max_dets = max_dets
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.detections: list[dict] = []
        self._ids: dict[str, int] = {}
        self.all_masks = True  # every ground-truth instance had a mask (segm AP is defined)

    @property
    def categories(self) -> list[dict]:
        return [{"id": i, "name": n} for i, n in enumerate(self.classes.names) if i != 0]

    def image_id(self, key) -> int:
        """The COCO image id of a Sample id (str) or position (int) added with `add_ground_truth`."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= int(key) < len(self.images):
                raise KeyError(f"image id {key} is not among the {len(self.images)} ground-truth images")
            return int(key)
        if key not in self._ids:
            raise KeyError(f"detection for image {key!r}, which has no ground truth")
        return self._ids[key]

    def add_ground_truth(self, sample: Sample) -> int:
        """Record the instances of `sample` (task classes other than background/ignore); its image id."""
        if sample.id in self._ids:
            raise ValueError(f"{sample.path or sample.id}: sample id {sample.id!r} added twice")
        image_id = len(self.images)
        self._ids[sample.id] = image_id
        self.images.append({"id": image_id, "height": sample.height, "width": sample.width, "file_name": sample.id})
        for inst in sample.instances:
            if inst.class_id in (0, IGNORE_INDEX) or inst.class_id >= len(self.classes):
                continue
            x, y, w, h = inst.xywh
            ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(inst.class_id),
                   "bbox": [x, y, w, h], "iscrowd": 0, "area": w * h}
            if inst.mask is not None:
                rle = rle_utils.compressed(rle_utils.encode(inst.mask))
                ann["segmentation"], ann["area"] = rle, float(mask_utils.area(rle))
            else:
                self.all_masks = False
            self.annotations.append(ann)
        return image_id

    def add_detections(self, detections: Iterable[dict]) -> None:
        for d in detections:
            det = {"image_id": self.image_id(d["image_id"]), "category_id": int(d["category_id"]),
                   "score": float(d.get("score", 1.0))}
            if "segmentation" in d:
                det["segmentation"] = rle_utils.compressed(d["segmentation"])
            if "bbox" in d:
                det["bbox"] = [float(v) for v in d["bbox"]]
            if "segmentation" not in det and "bbox" not in det:
                raise ValueError(f"detection {d!r} has neither `segmentation` nor `bbox`")
            self.detections.append(det)

    def compute(self, iou_type: str = "segm", per_class: bool = False) -> dict[str, float]:
        """{"AP", "AP50", "AP75"} (COCO, IoU .50:.95, all areas, `max_dets`); `AP/<class>` with per_class.

        NaN when there is no ground-truth instance; 0.0 when there is truth but no detection.
        """
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        if iou_type == "segm" and not self.all_masks:
            raise ValueError("mask AP needs instance masks, but some ground-truth instances have boxes only")
        names = [c["name"] for c in self.categories]
        empty = {"AP": math.nan, "AP50": math.nan, "AP75": math.nan}
        if per_class:
            empty.update({f"AP/{n}": math.nan for n in names})
        if not self.annotations:
            return empty
        dets = [self._prepared(d, iou_type) for d in self.detections]
        if not dets:
            return {k: 0.0 for k in empty}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
            gt = COCO()
            gt.dataset = {"images": list(self.images), "annotations": list(self.annotations),
                          "categories": self.categories}
            gt.createIndex()
            dt = gt.loadRes(dets)
            ev = COCOeval(gt, dt, iou_type)
            ev.params.maxDets = [1, 10, self.max_dets]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [math.nan if s < 0 else float(s) for s in ev.stats[:3]]
        out = {"AP": stats[0], "AP50": stats[1], "AP75": stats[2]}
        if per_class:
            # precision: [T iou thresholds, R recall points, K categories, A areas, M max dets]
            precision = ev.eval["precision"][:, :, :, 0, -1]
            for k, cat_id in enumerate(ev.params.catIds):
                p = precision[:, :, k]
                name = self.classes.names[cat_id]
                out[f"AP/{name}"] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
        return out

    def _prepared(self, det: dict, iou_type: str) -> dict:
        if iou_type == "segm":
            if "segmentation" not in det:
                raise ValueError("mask AP needs detections with `segmentation` RLEs")
            return {k: v for k, v in det.items() if k != "bbox"}  # area from the mask, not the box
        if "bbox" not in det:
            det = dict(det, bbox=[float(v) for v in mask_utils.toBbox(det["segmentation"])])
        return {k: v for k, v in det.items() if k != "segmentation"}


def instance_ap(gt_samples: Iterable[Sample], detections: list[dict], iou_type: str = "segm",
                classes: TaskClasses = TaskClasses(), per_class: bool = False) -> dict[str, float]:
    """COCO AP of `detections` against the instances of `gt_samples`: {"AP", "AP50", "AP75"}."""
    meter = InstanceMeter(classes)
    for sample in gt_samples:
        meter.add_ground_truth(sample)
    meter.add_detections(detections)
    return meter.compute(iou_type, per_class)
