"""Prediction part files of `playerseg infer` as `playerseg cluster` reads and rewrites them:
reading, the clustering stamp in their Parquet metadata, the embedding cache tables, and the
frames a part names, read again from the inputs (`playerseg.video.frames` units).
"""
from __future__ import annotations

import posixpath

import numpy as np

from playerseg.data.errors import DataError
from playerseg.io import short_hash

META_KEY = b"playerseg.cluster"


def part_key(part: str) -> tuple[str, str]:
    """(group, unit name) of `<...>/predictions/<group>/<unit>.parquet` (a group may hold `/`:
    `video.frames` ids such as `2024/half1`)."""
    parent, name = posixpath.split(part)
    return parent.rsplit("/predictions/", 1)[-1], posixpath.splitext(name)[0]


def read_part(part: str, columns: list[str] | None = None):
    """A part (or embedding cache) file as a pyarrow Table; DataError naming it when unreadable."""
    import pyarrow.parquet as pq

    from playerseg.io import filesystem

    fs, path = filesystem(part)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(part, f"not a readable Parquet file: {e}") from None


def part_stamp(part: str, key: bytes = META_KEY) -> str | None:
    """The `playerseg.cluster` stamp (or another `key`'s) in a part's Parquet metadata (None: never written)."""
    import pyarrow.parquet as pq

    from playerseg.io import filesystem

    fs, path = filesystem(part)
    try:
        with fs.open(path, "rb") as f:
            meta = pq.read_schema(f).metadata or {}
    except Exception:
        return None
    value = meta.get(key)
    return value.decode() if value else None


def stamp(fp: str, state: dict) -> str:
    """What a part written with the team model `state` carries: options and model fingerprints."""
    return f"{fp}-{short_hash(state, 8)}"


def unit_frames(unit) -> set[int] | None:
    """Frame indices a unit yields (None: unknown without reading it)."""
    if unit.kind == "video":
        seg = unit.spec["segment"]
        return set(seg["keep"]) if seg.get("keep") is not None else set(range(seg["start"], seg["end"]))
    if unit.kind == "frames":
        return set(unit.spec["indices"])
    return None


def frames_for(part: str, units: list, needed: set[int]):
    """Frames of `needed` indices from the units of the part's group, each once, in order."""
    from playerseg.video.frames import read_unit

    seen = set()
    for unit in units:
        known = unit_frames(unit)
        if known is not None and not (known & needed):
            continue
        for frame in read_unit(unit):
            if frame.error:  # a bad frame: infer left it out, so no part names it
                continue
            if frame.frame_index in needed and frame.frame_index not in seen:
                seen.add(frame.frame_index)
                yield frame
        if seen == needed:
            return
    if seen != needed:
        missing = sorted(needed - seen)
        raise DataError(part, f"{len(missing)} frames not found in the inputs (first: {missing[:5]}); "
                              "are these the inputs `playerseg infer` read?")


def cache_table(out: dict):
    import pyarrow as pa

    dim = len(out["embedding"][0]) if out["embedding"] else 0
    emb = np.stack(out["embedding"]).astype(np.float32).ravel() if dim else np.zeros(0, np.float32)
    return pa.table({
        "row": pa.array(out["row"], pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb, pa.float32()), max(dim, 1))
        if dim else pa.array([], pa.list_(pa.float32(), 1)),
        "led_overlap": pa.array(out["led_overlap"], pa.float32()),
        **{k: pa.array(out[k], pa.bool_()) for k in ("led", "truncated", "merged")},
    })


def embeddings_of(table) -> np.ndarray:
    if not table.num_rows:
        return np.zeros((0, 1), np.float32)
    col = table.column("embedding").combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).reshape(table.num_rows, -1)
