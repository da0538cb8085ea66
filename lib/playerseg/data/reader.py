"""What every reader shares: the streaming Reader base, key subsets, class mappings, file access.

A reader lists keys cheaply (`keys()`), loads one `Sample` per key (`load(key)`) and never holds a
whole dataset in memory. Class mappings turn a source's class names into task class ids, from a
small YAML file (`mappings/<format>.yaml` by default):

    default: background        # target of source classes not listed
    classes:
      team_a: player           # one task class name ...
      ball: [ball, background] # ... or a list: the first name that is a task class wins
      unlabelled: ignore       # `ignore`: IGNORE_INDEX pixels, no objects
      crowd: drop              # `drop`: no object; background pixels in a semantic map

A target name that is not among the task classes falls through to the next one of its list, and
finally to `background`.
"""
from __future__ import annotations

import abc
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import fsspec
import numpy as np
import yaml

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.errors import DataError
from playerseg.data.sample import PIXEL, Sample
from playerseg.io import filesystem, is_local

log = logging.getLogger(__name__)

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
IGNORE = "ignore"
DROP = "drop"
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class Reader(abc.ABC):
    """A dataset as sorted keys; `load(key)` reads one Sample (DataError naming the file if bad)."""

    _keys: list[str] = []  # each reader lists its keys, sorted, when it is made

    def keys(self) -> list[str]:
        """Sorted keys, listing only (no file is decoded)."""
        return list(self._keys)

    @abc.abstractmethod
    def load(self, key: str) -> Sample:
        """One sample; raises DataError naming the file (and line) when the input is bad."""

    def frame_index(self, key: str) -> int | None:
        """Position of the frame in its video (for leak-free splits), None when unknown."""
        return trailing_number(Path(key).stem)

    def group(self, key: str) -> str:
        """The video / match the frame comes from."""
        return ""

    def __iter__(self) -> Iterator[Sample]:
        for key in self.keys():
            yield self.load(key)

    def __len__(self) -> int:
        return len(self.keys())


class Subset(Reader):
    """A reader restricted to some keys of another (a train or val split)."""

    def __init__(self, base: Reader, keys: list[str], name: str = ""):
        self.base = base
        self._keys = sorted(keys)
        self.name = name

    def load(self, key: str) -> Sample:
        return self.base.load(key)

    def frame_index(self, key: str) -> int | None:
        return self.base.frame_index(key)

    def group(self, key: str) -> str:
        return self.base.group(key)

    def __repr__(self) -> str:
        return f"Subset({self.base!r}, {len(self._keys)} keys, {self.name!r})"


def trailing_number(text: str) -> int | None:
    """`frame_042` -> 42; None when `text` does not end in digits."""
    m = _TRAILING_NUMBER.search(text)
    return int(m.group(1)) if m else None


def normalise_name(name: str) -> str:
    """Class names compare as lower case with `_` for spaces and dashes (`Team-A` == `team_a`)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


@dataclass(frozen=True)
class ClassMapping:
    """Source class name -> task class id, IGNORE_INDEX (`ignore`) or None (`drop`)."""

    table: dict  # normalised source name -> list of target names
    default: tuple
    classes: TaskClasses
    path: str

    @classmethod
    def load(cls, path: str, classes: TaskClasses, fmt: str) -> "ClassMapping":
        """The mapping at `path`, or the built-in `mappings/<fmt>.yaml` when `path` is empty."""
        path = str(path or MAPPINGS_DIR / f"{fmt}.yaml")
        data = read_yaml_file(path) or {}
        if not isinstance(data, dict) or set(data) - {"default", "classes"}:
            raise DataError(path, "a class mapping takes only the keys `default` and `classes`")
        table = data.get("classes") or {}
        if not isinstance(table, dict):
            raise DataError(path, "`classes` must map source class names to task class names")
        def as_list(value) -> tuple:
            return tuple(value) if isinstance(value, (list, tuple)) else (value,)

        mapping = cls(
            table={normalise_name(k): as_list(v) for k, v in table.items()},
            default=as_list(data.get("default", "background")),
            classes=classes,
            path=path,
        )
        known = set(classes.names) | {IGNORE, DROP}
        for target in sorted({str(t) for ts in [mapping.default, *mapping.table.values()] for t in ts}):
            if target not in known:
                log.info("%s: %r is not a task class %s; falls through", path, target, list(classes.names))
        return mapping

    def target(self, source: str) -> int | None:
        for name in self.table.get(normalise_name(source), self.default):
            if name == IGNORE:
                return IGNORE_INDEX
            if name == DROP:
                return None
            if name in self.classes.names:
                return self.classes.id(name)
        return 0

    def is_mapped(self, source: str) -> bool:
        return normalise_name(source) in self.table

    def labels(self, sources, kind: str) -> dict[str, str]:
        """`Sample.labels` of a source whose classes `sources` mark objects by `kind` (PIXEL or BOX):
        each task class that one of them maps to, plus `background` where the kind is PIXEL (a label
        map's background then means "none of these classes")."""
        ids = {self.target(name) for name in sources} - {None, IGNORE_INDEX, 0}
        out = {self.classes.names[i]: kind for i in sorted(ids)}
        if kind == PIXEL:
            out["background"] = PIXEL
        return out


def read_bytes(path: str) -> bytes:
    try:
        with fsspec.open(str(path), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None


def read_json_file(path: str):
    """The JSON document at `path`; DataError naming the file (and line) when it is not JSON text."""
    try:
        return json.loads(read_bytes(path))
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON (column {e.colno}): {e.msg}", line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None


def read_yaml_file(path: str):
    """The YAML document at `path` (None when empty); DataError naming the file (and line) when it is not YAML."""
    try:
        return yaml.safe_load(read_bytes(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, f"not valid YAML: {e}", line=mark.line + 1 if mark else None) from None


# A decoded image may not exceed this many pixels (checked from the file's header before decoding):
# a 70 KB JPEG claiming 12000x12000 would otherwise take 13 GB. 8K UHD is 33 MP. PLAYERSEG_MAX_IMAGE_PIXELS
# raises or lowers it (workers inherit the driver's environment).
MAX_IMAGE_PIXELS = 50_000_000


def max_image_pixels() -> int:
    import os

    return int(os.environ.get("PLAYERSEG_MAX_IMAGE_PIXELS") or MAX_IMAGE_PIXELS)


def image_size(data: bytes, path: str) -> tuple[int, int]:
    """(width, height) from an encoded image's header, nothing decoded; DataError when unreadable."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns of large sizes; decode_image applies our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:
        raise DataError(path, f"image over the size limit, not decoded: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(path, f"cannot decode the image (empty or corrupt file): {e}") from None


def decode_image(data: bytes | np.ndarray, path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """The one image decoder: size checked from the header (`max_image_pixels`), then decoded;
    colour images come back RGB / RGBA. DataError naming `path` when too large or corrupt."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if not buf.size:
        raise DataError(path, "cannot decode the image (empty file)")
    w, h = image_size(buf.tobytes(), path)
    if w * h > max_image_pixels():
        raise DataError(path, f"image of {w}x{h} pixels is over the limit of {max_image_pixels()} "
                        "(PLAYERSEG_MAX_IMAGE_PIXELS); not decoded")
    image = cv2.imdecode(buf, flags)
    if image is None:
        raise DataError(path, "cannot decode the image (empty or corrupt file)")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_image(path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image file (local or fsspec URI); colour images come back RGB / RGBA."""
    return decode_image(read_bytes(path), path, flags)


def list_dir(path: str) -> list[str]:
    """File names (not paths) directly inside `path`; [] when it does not exist."""
    fs, fpath = filesystem(path)
    if not fs.isdir(fpath):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(fpath, detail=False))


def join(root: str, *parts: str) -> str:
    """`root/part/...` for local paths and URIs; empty parts are skipped."""
    root, parts = str(root), [p for p in parts if p]
    if is_local(root):
        return str(Path(root, *parts))
    return "/".join([root.rstrip("/"), *parts])


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1), exclusive end, of a non-empty HxW bool mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
