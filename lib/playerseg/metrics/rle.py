"""COCO run-length encoding of binary masks (pycocotools), as JSON-safe dicts."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """HxW bool/uint8 mask -> {"size": [h, w], "counts": str} (compressed COCO RLE)."""
    if mask.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed string/bytes or uncompressed list counts) -> HxW bool mask."""
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def area(rle: dict) -> int:
    return int(mask_utils.area(_compressed(rle)))


def to_bbox(rle: dict) -> list[float]:
    """[x, y, w, h] like COCO."""
    return [float(v) for v in mask_utils.toBbox(_compressed(rle))]


def _compressed(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
