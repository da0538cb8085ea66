"""LabelMe 5 JSON polygons (one `<stem>.json` beside each frame), e.g. the EPL LED-board set.

    <root>/<clip>/<stem>.jpg     the frame (`imagePath` in the JSON names it; `imageData` may be null)
    <root>/<clip>/<stem>.json    {"shapes": [{"label": "billboard", "points": [[x, y], ...],
                                   "shape_type": "polygon", "group_id": 1}, ...],
                                  "imageHeight": 720, "imageWidth": 1280}

Folders are searched one level deep (each clip a folder; a flat folder works too). Labels map to
task classes by `mappings/labelme.yaml` (`billboard` -> `led_board`). The label map paints each
mapped polygon (and `rectangle`) with its class, background elsewhere, and `Sample.labels` marks
only the mapped classes as labelled per pixel: in the EPL set a pixel outside every board polygon
is player or background, unknown which, and training and evaluation treat it so. Each polygon is
an instance. The group is the clip folder, the frame index the trailing number of the stem.

Bad input (named error, sample skipped): broken JSON, a polygon of fewer than 3 points, a missing
image, an image of another size than `imageWidth` x `imageHeight`.
"""
from __future__ import annotations

import posixpath

import cv2
import numpy as np

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.errors import DataError
from playerseg.data.reader import ClassMapping, Reader, join, list_dir, mask_box, read_image, read_json_file
from playerseg.data.sample import PIXEL, Instance, Sample
from playerseg.io import exists, filesystem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class LabelmeReader(Reader):
    def __init__(self, root: str, classes: TaskClasses = TaskClasses(), mapping: str = "",
                 min_instance_pixels: int = 16):
        self.root = str(root)
        self.classes = classes
        self.mapping = ClassMapping.load(mapping, classes, "labelme")
        self.min_instance_pixels = min_instance_pixels
        fs, froot = filesystem(self.root)
        folders = [""] + [d for d in list_dir(self.root) if fs.isdir(posixpath.join(froot, d))]
        self._keys = sorted(posixpath.join(d, name[:-5]) for d in folders
                            for name in list_dir(join(self.root, d)) if name.lower().endswith(".json"))
        if not self._keys:
            raise DataError(self.root, "no LabelMe .json files found (in the folder or its subfolders)")

    @classmethod
    def from_config(cls, cfg) -> "LabelmeReader":
        return cls(cfg.root, TaskClasses(tuple(cfg.classes)), cfg.mapping, cfg.min_instance_pixels)

    def group(self, key: str) -> str:
        return posixpath.dirname(key)

    def json_path(self, key: str) -> str:
        return join(self.root, f"{key}.json")

    def load(self, key: str) -> Sample:
        path = self.json_path(key)
        doc = read_json_file(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes", []), list):
            raise DataError(path, 'expected a LabelMe object with a "shapes" list')
        image_path = self._image_path(key, doc, path)
        image = read_image(image_path)
        h, w = image.shape[:2]
        jh, jw = doc.get("imageHeight"), doc.get("imageWidth")
        if (jh, jw) != (None, None) and (jh, jw) != (h, w):
            raise DataError(path, f"says the image is {jw}x{jh} but {image_path} is {w}x{h}")
        semantic = np.zeros((h, w), np.uint8)
        instances = []
        for i, shape in enumerate(doc.get("shapes", [])):
            label = str(shape.get("label", "")) if isinstance(shape, dict) else ""
            target = self.mapping.target(label) if label else None
            if target is None:
                continue
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [self._polygon(shape, i, path)], 1)
            mask = mask.astype(bool)
            semantic[mask] = target
            if target not in (0, IGNORE_INDEX) and mask.sum() >= self.min_instance_pixels:
                instances.append(Instance(class_id=target, box=mask_box(mask), mask=mask, label=label))
        labels = self.mapping.labels(self.mapping.table, PIXEL)  # what the mapping names, in every frame
        return Sample(id=key, image=image, semantic=semantic, instances=instances, path=image_path,
                      group=self.group(key), frame_index=self.frame_index(key),
                      meta={"format": "labelme", "json_path": path}, labels=labels)

    def _image_path(self, key: str, doc: dict, path: str) -> str:
        folder = posixpath.dirname(key)
        names = [str(doc["imagePath"])] if doc.get("imagePath") else []
        names += [posixpath.basename(key) + ext for ext in IMAGE_EXTENSIONS]
        for name in names:
            candidate = join(self.root, folder, posixpath.normpath(name.replace("\\", "/")))
            if exists(candidate):
                return candidate
        raise DataError(path, f"image file missing: {join(self.root, folder, names[0])}")

    @staticmethod
    def _polygon(shape: dict, index: int, path: str) -> np.ndarray:
        points = shape.get("points")
        kind = shape.get("shape_type") or "polygon"
        try:
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise DataError(path, f"shapes[{index}] ({shape.get('label')!r}): points are not [x, y] pairs") from None
        if kind == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif kind != "polygon":
            raise DataError(path, f"shapes[{index}] ({shape.get('label')!r}): shape_type {kind!r} is not a polygon")
        if len(pts) < 3 or not np.isfinite(pts).all():
            raise DataError(path, f"shapes[{index}] ({shape.get('label')!r}): a polygon needs at least 3 finite "
                                  f"points, got {len(pts)}")
        return np.round(pts).astype(np.int32)
