"""COCO instance annotations (polygons, RLE compressed or not, iscrowd), as the Kaggle "Football
Player Segmentation" set, CVAT exports and `playerseg synth` write them.

The JSON is parsed and indexed once; images are read lazily, one per `load`. Category names map
to task classes by a YAML mapping (`mappings/coco.yaml`). The semantic map paints the annotation
masks largest first (ties in file order), so a player in front of a board wins the overlap;
pixels no annotation covers are background. Crowd regions are painted but make no instance; an
annotation without segmentation makes a box-only instance (mask None) and paints nothing.
Keys are the image file names without extension; images are looked up as `<root>/<file_name>`,
then `<root>/images/<file_name>`.
"""
from __future__ import annotations

import logging
import posixpath

import numpy as np
from pycocotools import mask as mask_utils

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.errors import DataError
from playerseg.data.reader import ClassMapping, Reader, join, mask_box, read_image, read_json_file, trailing_number
from playerseg.data.sample import PIXEL, Instance, Sample
from playerseg.io import exists
from playerseg.metrics import rle as rle_utils

log = logging.getLogger(__name__)


def parse_coco(path: str) -> dict:
    """The COCO JSON at `path`, checked for the parts this reader uses."""
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise DataError(path, "top level must be a JSON object with images, annotations, categories")
    for part in ("images", "annotations", "categories"):
        if not isinstance(data.get(part, []), list):
            raise DataError(path, f"`{part}` must be a list")
    if not data.get("images"):
        raise DataError(path, "no `images` listed")
    return data


def segmentation_mask(segmentation, height: int, width: int) -> np.ndarray | None:
    """HxW bool mask of a COCO segmentation (polygons or RLE); None when there is none."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            raise ValueError("polygons need at least 3 points")
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)
    if isinstance(segmentation, dict):
        if list(segmentation.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {segmentation.get('size')} is not the image size [{height}, {width}]")
        return rle_utils.decode(segmentation)
    raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")


class CocoReader(Reader):
    def __init__(self, annotations: str, root: str = "", classes: TaskClasses = TaskClasses(),
                 mapping: str = "", min_instance_pixels: int = 16):
        self.annotations = str(annotations)
        self.root = str(root) if root else posixpath.dirname(self.annotations) or "."
        self.classes = classes
        self.min_instance_pixels = int(min_instance_pixels)
        self.mapping = ClassMapping.load(mapping, classes, "coco")
        data = parse_coco(self.annotations)
        self.categories: dict[int, str] = {}
        for c in data.get("categories", []):
            if not isinstance(c, dict) or "id" not in c or "name" not in c:
                raise DataError(self.annotations, f"category needs an id and a name, got {c!r}")
            self.categories[c["id"]] = str(c["name"])
        unmapped = sorted(n for n in self.categories.values() if not self.mapping.is_mapped(n))
        if unmapped:
            log.warning("%s: categories %s are not in the mapping %s; they take its default",
                        self.annotations, unmapped, self.mapping.path)
        self._images: dict[str, dict] = {}
        key_of_id: dict = {}
        for img in data["images"]:
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                raise DataError(self.annotations, f"image entry needs an id and a file_name, got {img!r}")
            key = posixpath.splitext(str(img["file_name"]))[0]
            if key in self._images:
                raise DataError(self.annotations, f"two images named {key!r} (ids {self._images[key]['id']}, "
                                                  f"{img['id']})")
            self._images[key] = img
            key_of_id[img["id"]] = key
        self._anns: dict[str, list[dict]] = {k: [] for k in self._images}
        for ann in data.get("annotations", []):
            key = key_of_id.get(ann.get("image_id")) if isinstance(ann, dict) else None
            if key is None:
                raise DataError(self.annotations, f"annotation {ann.get('id') if isinstance(ann, dict) else ann!r} "
                                                  f"refers to no listed image")
            if ann.get("category_id") not in self.categories:
                raise DataError(self.annotations, f"annotation {ann.get('id')} has unknown category_id "
                                                  f"{ann.get('category_id')!r}")
            self._anns[key].append(ann)
        self._keys = sorted(self._images)

    @classmethod
    def from_config(cls, cfg) -> "CocoReader":
        annotations = cfg.annotations or join(cfg.root, "annotations.json")
        return cls(annotations, cfg.root, TaskClasses(tuple(cfg.classes)), cfg.mapping, cfg.min_instance_pixels)

    def __repr__(self) -> str:
        return f"CocoReader({self.annotations!r}, {len(self._keys)} images)"

    def group(self, key: str) -> str:
        img = self._images[key]
        video = img.get("video_id", img.get("video"))
        return str(video) if video not in (None, "") else self.root.rstrip("/").rsplit("/", 1)[-1]

    def frame_index(self, key: str) -> int | None:
        img = self._images[key]
        for field in ("frame_index", "frame_id"):
            if isinstance(img.get(field), int):
                return img[field]
        return trailing_number(posixpath.basename(key))

    def image_path(self, key: str) -> str:
        name = str(self._images[key]["file_name"])
        candidates = [join(self.root, name), join(self.root, "images", name)]
        return next((c for c in candidates if exists(c)), candidates[0])

    def load(self, key: str) -> Sample:
        img = self._images[key]
        path = self.image_path(key)
        if not exists(path):
            raise DataError(path, f"image file not found (listed in {self.annotations}; also looked in "
                                  f"{join(self.root, 'images')})")
        image = read_image(path)
        h, w = image.shape[:2]
        if (img.get("height", h), img.get("width", w)) != (h, w):
            raise DataError(path, f"image is {w}x{h} but {self.annotations} says "
                                  f"{img.get('width')}x{img.get('height')}")
        semantic = np.zeros((h, w), dtype=np.uint8)
        painted = []
        for ann in self._anns[key]:
            target = self.mapping.target(self.categories[ann["category_id"]])
            if target is None:
                continue
            try:
                mask = segmentation_mask(ann.get("segmentation"), h, w)
            except (ValueError, TypeError, KeyError) as e:
                raise DataError(self.annotations, f"annotation {ann.get('id')} of {img['file_name']}: "
                                                  f"bad segmentation: {e}") from None
            painted.append((ann, target, mask))
        # paint largest first so smaller objects in front stay visible; ties in file order
        areas = [int(m.sum()) if m is not None else 0 for _, _, m in painted]
        for i in sorted(range(len(painted)), key=lambda i: -areas[i]):
            if painted[i][2] is not None:
                semantic[painted[i][2]] = painted[i][1]
        instances = []
        for ann, target, mask in painted:  # in file order
            if target in (0, IGNORE_INDEX) or ann.get("iscrowd"):
                continue
            label = self.categories[ann["category_id"]]
            if mask is None:
                x, y, bw, bh = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
                if bw > 0 and bh > 0:
                    instances.append(Instance(class_id=target, box=(x, y, x + bw, y + bh), label=label))
            elif mask.sum() >= self.min_instance_pixels:
                instances.append(Instance(class_id=target, box=mask_box(mask), mask=mask, label=label))
        return Sample(id=key, image=image, semantic=semantic, instances=instances, path=path,
                      group=self.group(key), frame_index=self.frame_index(key),
                      meta={"format": "coco", "image_id": img["id"], "annotations": self.annotations},
                      labels=self.mapping.labels(self.categories.values(), PIXEL))
