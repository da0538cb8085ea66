"""Parquet schemas shared by extraction, inference and rendering.

`PREDICTION_SCHEMA`: what the inference job writes, one row per instance; `FRAME_SCHEMA`: frames
written by `playerseg extract --parquet`. Readers select the columns they need and ignore the rest,
so writers may add columns (per-frame summaries live in a separate file).
"""
from __future__ import annotations

import pyarrow as pa

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("pts_seconds", pa.float64()),
        pa.field("instance_id", pa.int32(), nullable=False),  # unique within a frame
        pa.field("class", pa.string(), nullable=False),  # "player" | "led_board"
        pa.field("score", pa.float32()),
        pa.field("bbox", pa.list_(pa.float32())),  # [x, y, w, h] pixels (COCO)
        pa.field("area", pa.int64()),
        pa.field("mask_rle_size", pa.list_(pa.int32())),  # [h, w]
        pa.field("mask_rle_counts", pa.string()),  # compressed COCO RLE (playerseg.metrics.rle)
        pa.field("team", pa.int32()),  # optional column; -1 = unknown
        pa.field("track_id", pa.int32()),  # optional: 1, 2, ... per video (players.tracks); -1 = not tracked
    ]
)
PREDICTION_REQUIRED = ("video_id", "frame_index", "class", "mask_rle_size", "mask_rle_counts")
PREDICTION_OPTIONAL = ("instance_id", "score", "bbox", "team", "track_id", "pts_seconds", "area")

FRAME_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("pts_seconds", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("image", pa.binary()),  # encoded JPEG or PNG bytes
        pa.field("image_format", pa.string()),  # "jpg" | "png"
    ]
)


def prediction_rle(row: dict) -> dict:
    """The `playerseg.metrics.rle` dict of one prediction row."""
    return {"size": [int(v) for v in row["mask_rle_size"]], "counts": row["mask_rle_counts"]}
