"""YOLO detection boxes (Roboflow exports such as "football-players-detection"): boxes only.

    <root>/data.yaml                      names: [ball, goalkeeper, player, referee]
    <root>/<split>/images/<stem>.jpg      split = train, valid, test (all found, or `split_dir`);
                                          or flat: <root>/images, <root>/labels
    <root>/<split>/labels/<stem>.txt      one `class cx cy w h` line per box, normalised to 0..1

A missing label file means no objects (the YOLO convention). Instances carry boxes in pixels and
no masks; `semantic` is None. Class names map to task classes by `mappings/yolo.yaml`. The group
is the video prefix of the file name and the frame index the number after it:
`08fd33_0_1_png.rf.<hash>.jpg` -> group `08fd33_0`, frame 1.
"""
from __future__ import annotations

import math
import posixpath
import re

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.errors import DataError
from playerseg.data.reader import ClassMapping, Reader, join, list_dir, read_bytes, read_image, read_yaml_file
from playerseg.data.sample import BOX, Instance, Sample
from playerseg.io import exists, filesystem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_ROBOFLOW_SUFFIX = re.compile(r"_(?:png|jpg|jpeg)\.rf\.[0-9a-f]+$", re.IGNORECASE)
_VIDEO_FRAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")


def video_and_frame(stem: str) -> tuple[str, int | None]:
    """`08fd33_0_1_png.rf.abc` -> ("08fd33_0", 1); a stem without a trailing number -> (stem, None)."""
    base = _ROBOFLOW_SUFFIX.sub("", stem)
    m = _VIDEO_FRAME.match(base)
    return (m.group("video"), int(m.group("frame"))) if m else (base, None)


def read_names(path: str) -> list[str]:
    data = read_yaml_file(path) or {}
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        names = [names[i] for i in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DataError(path, "needs `names`: the class names in id order")
    return [str(n) for n in names]


class YoloReader(Reader):
    def __init__(self, root: str, split_dir: str = "", classes: TaskClasses = TaskClasses(), mapping: str = ""):
        self.root = str(root)
        self.classes = classes
        self.names = read_names(join(self.root, "data.yaml"))
        self.mapping = ClassMapping.load(mapping, classes, "yolo")
        self._targets = [self.mapping.target(n) for n in self.names]
        fs, froot = filesystem(self.root)
        if split_dir:
            splits = [split_dir]
        elif fs.isdir(posixpath.join(froot, "images")):  # flat layout: <root>/images, <root>/labels
            splits = [""]
        else:
            splits = [d for d in list_dir(self.root) if fs.isdir(posixpath.join(froot, d, "images"))]
        self._images: dict[str, str] = {}
        for split in splits:
            for name in list_dir(join(self.root, split, "images")):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    self._images[posixpath.join(split, posixpath.splitext(name)[0])] = name
        if not self._images:
            where = [join(self.root, s, "images") for s in splits] or "any <split>/images"
            raise DataError(self.root, f"no images found in {where}")
        self._keys = sorted(self._images)

    @classmethod
    def from_config(cls, cfg) -> "YoloReader":
        return cls(cfg.root, cfg.split_dir, TaskClasses(tuple(cfg.classes)), cfg.mapping)

    def __repr__(self) -> str:
        return f"YoloReader({self.root!r}, {len(self._keys)} images)"

    def group(self, key: str) -> str:
        return video_and_frame(posixpath.basename(key))[0]

    def frame_index(self, key: str) -> int | None:
        return video_and_frame(posixpath.basename(key))[1]

    def image_path(self, key: str) -> str:
        split = posixpath.dirname(key)
        return join(self.root, split, "images", self._images[key])

    def label_path(self, key: str) -> str:
        split, stem = posixpath.split(key)
        return join(self.root, split, "labels", f"{stem}.txt")

    def load(self, key: str) -> Sample:
        path = self.image_path(key)
        image = read_image(path)
        h, w = image.shape[:2]
        label_path = self.label_path(key)
        instances = self.read_boxes(label_path, w, h) if exists(label_path) else []
        return Sample(id=key, image=image, semantic=None, instances=instances, path=path,
                      group=self.group(key), frame_index=self.frame_index(key),
                      meta={"format": "yolo", "label_path": label_path},
                      labels=self.mapping.labels(self.names, BOX))

    def read_boxes(self, label_path: str, width: int, height: int) -> list[Instance]:
        """Instances of a label file; DataError naming the file and line for a malformed line."""
        try:
            text = read_bytes(label_path).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(label_path, f"not UTF-8 text: {e}") from None
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            values = line.split()
            if not values:
                continue
            if len(values) != 5:
                raise DataError(label_path, f"expected 5 values `class cx cy w h`, got {len(values)}: "
                                            f"{line.strip()!r}", line=number)
            try:
                cls_id = int(values[0])
                cx, cy, bw, bh = (float(v) for v in values[1:])
            except ValueError:
                raise DataError(label_path, f"not numbers: {line.strip()!r}", line=number) from None
            if not 0 <= cls_id < len(self.names):
                raise DataError(label_path, f"class {cls_id} is not in data.yaml names {self.names}", line=number)
            if not all(math.isfinite(v) for v in (cx, cy, bw, bh)) or bw <= 0 or bh <= 0:
                raise DataError(label_path, f"box needs finite centre and positive size: {line.strip()!r}", line=number)
            target = self._targets[cls_id]
            if target is None or target in (0, IGNORE_INDEX):
                continue
            x0, x1 = max(0.0, (cx - bw / 2) * width), min(float(width), (cx + bw / 2) * width)
            y0, y1 = max(0.0, (cy - bh / 2) * height), min(float(height), (cy + bh / 2) * height)
            if x1 > x0 and y1 > y0:
                out.append(Instance(class_id=target, box=(x0, y0, x1, y1), label=self.names[cls_id]))
        return out
