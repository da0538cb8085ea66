"""Parquet schemas shared by extraction, inference and rendering, and the prediction record.

`PREDICTION_SCHEMA`: what the inference job writes, one row per instance (flat typed columns, so
pandas, DuckDB or Spark filter on `score` or `class` directly); `FRAME_SCHEMA`: frames written by
`playerseg extract --parquet`; `frame_summary_schema`: the inference job's one row per frame.
Readers select the columns they need and ignore the rest, so writers may add columns (per-frame
summaries live in a separate file; `playerseg cluster` adds team columns and flags).

The prediction record is one home for an instance as the jobs pass it on: `instance_record`
builds its fields (`INSTANCE_TYPE`: post-processing makes them, the inference stream carries a
frame's as a list of these structs), `prediction_row` makes it a row of a part file, and
`prediction_rle` / `prediction_xyxy` read a row's mask and box back (its COCO result:
`infer.coco_export`).
"""
from __future__ import annotations

import pyarrow as pa

INSTANCE_FIELDS = [
    pa.field("instance_id", pa.int32(), nullable=False),  # unique within a frame
    pa.field("class", pa.string(), nullable=False),  # "player" | "led_board"
    pa.field("score", pa.float32()),
    pa.field("bbox", pa.list_(pa.float32())),  # [x, y, w, h] pixels (COCO)
    pa.field("area", pa.int64()),
    pa.field("mask_rle_size", pa.list_(pa.int32())),  # [h, w]
    pa.field("mask_rle_counts", pa.string()),  # compressed COCO RLE (playerseg.metrics.rle)
]
INSTANCE_TYPE = pa.struct(INSTANCE_FIELDS)

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("pts_seconds", pa.float64()),
        *INSTANCE_FIELDS,
        pa.field("team", pa.int32()),  # optional column; -1 = unknown
        pa.field("track_id", pa.int32()),  # optional: 1, 2, ... per video (players.tracks); -1 = not tracked
    ]
)
PREDICTION_REQUIRED = ("video_id", "frame_index", "class", "mask_rle_size", "mask_rle_counts")

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


def frame_summary_schema(class_names) -> pa.Schema:
    """A frame of `playerseg infer`'s per-frame summary (`frames/` parts): FRAME_SCHEMA's video id,
    index, time and size, then the instance count and the pixel fraction of each class."""
    return pa.schema(list(FRAME_SCHEMA)[:5] + [pa.field("num_instances", pa.int32())]
                     + [pa.field(f"{name}_fraction", pa.float32()) for name in class_names])


def instance_record(instance_id: int, class_name: str, score: float, bbox, area: int, rle: dict) -> dict:
    """One instance's fields (`INSTANCE_TYPE`): `bbox` [x, y, w, h], `rle` a `metrics.rle` dict."""
    return {"instance_id": int(instance_id), "class": class_name, "score": float(score),
            "bbox": [float(v) for v in bbox], "area": int(area),
            "mask_rle_size": [int(v) for v in rle["size"]], "mask_rle_counts": rle["counts"]}


def prediction_row(video_id: str, frame_index: int, pts_seconds: float | None, record: dict) -> dict:
    """A row of a prediction part file (`PREDICTION_SCHEMA`): the record in its frame, not yet
    given a team or a track (-1; `playerseg cluster` and the tracking pass rewrite them)."""
    return {"video_id": str(video_id), "frame_index": int(frame_index),
            "pts_seconds": None if pts_seconds is None else float(pts_seconds),
            **record, "team": -1, "track_id": -1}


def prediction_rle(row: dict) -> dict:
    """The `playerseg.metrics.rle` dict of one prediction row."""
    return {"size": [int(v) for v in row["mask_rle_size"]], "counts": row["mask_rle_counts"]}


def prediction_xyxy(row: dict) -> tuple[float, float, float, float]:
    """The box of one prediction row as (x0, y0, x1, y1) pixels."""
    x, y, w, h = (float(v) for v in row["bbox"])
    return x, y, x + w, y + h
