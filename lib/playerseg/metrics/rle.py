"""COCO run-length encoding of binary masks (pycocotools), as JSON-safe dicts."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """HxW bool/uint8 mask -> {"size": [h, w], "counts": str} (compressed COCO RLE)."""
    if mask.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {mask.shape}")
    cols = np.flatnonzero(mask.any(0))
    if cols.size and 2 * (cols[-1] + 1 - cols[0]) < mask.shape[1]:  # narrow object: encode its columns only
        return encode_crop(mask[:, cols[0]:cols[-1] + 1], int(cols[0]), 0, *mask.shape)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed string/bytes or uncompressed list counts) -> HxW bool mask."""
    return mask_utils.decode(compressed(rle)).astype(bool)


def area(rle: dict) -> int:
    return int(mask_utils.area(compressed(rle)))


def to_bbox(rle: dict) -> list[float]:
    """[x, y, w, h] like COCO."""
    return [float(v) for v in mask_utils.toBbox(compressed(rle))]


def compressed(rle: dict) -> dict:
    """Any COCO RLE (str, bytes or list counts) as pycocotools takes it (bytes counts)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def encode_crop(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """`encode` of a `height` x `width` mask that is empty except `crop` placed at (x0, y0).

    Same result as `encode(full_mask)`, at the cost of the crop's columns, not of the frame.
    """
    ch, cw = crop.shape
    block = np.zeros((height, cw), np.uint8)  # the crop's columns at full height (COCO runs go down columns)
    block[y0:y0 + ch] = crop
    flat = block.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:  # counts start with a run of zeros
        runs.insert(0, 0)
    runs[0] += x0 * height
    tail = (width - x0 - cw) * height
    if tail:
        if flat[-1]:
            runs.append(tail)
        else:
            runs[-1] += tail
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
