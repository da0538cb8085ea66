"""Prediction Parquet -> COCO results JSON, for the evaluation tools (`playerseg.metrics.instance`).

    export_coco("outputs/infer/predictions", "outputs/infer/coco_results.json",
                image_id="frame_{frame_index:05d}")

Category ids are task class ids (as `metrics.instance` expects); `image_id` is a template over the
row's `video_id` and `frame_index` (default "{video_id}/{frame_index}"), so results of a frame
folder can be matched to the Sample ids of its ground truth (`frame_{frame_index:05d}`).

The JSON is written part file by part file (one unit's rows in memory at a time), so exporting a
whole match archive needs no more memory than one unit.
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from playerseg.classes import TaskClasses
from playerseg.io import atomic_path, filesystem, parquet_parts
from playerseg.metrics.instance import coco_detection, json_rle
from playerseg.video.schema import prediction_rle

COLUMNS = ["video_id", "frame_index", "class", "score", "bbox", "mask_rle_size", "mask_rle_counts"]

DEFAULT_IMAGE_ID = "{video_id}/{frame_index}"


def coco_results(table, classes: TaskClasses, image_id: str = DEFAULT_IMAGE_ID) -> list[dict]:
    """COCO result dicts (`metrics.instance.coco_detection`: bbox and segmentation RLE) of prediction rows."""
    out = []
    for row in table.to_pylist():
        cid = classes.get(row["class"])
        if cid is None:
            continue
        iid = image_id.format(video_id=row["video_id"], frame_index=row["frame_index"])
        out.append(coco_detection(int(iid) if iid.isdigit() else iid, cid,
                                  row["score"] if row.get("score") is not None else 1.0, row["bbox"],
                                  prediction_rle(row)))
    out.sort(key=lambda d: (str(d["image_id"]), -d["score"]))
    return out


def export_coco(predictions: str, out_json: str, classes: TaskClasses | None = None,
                image_id: str = DEFAULT_IMAGE_ID) -> int:
    """Write the COCO results JSON of the predictions under `predictions` (a folder of part files, or
    one), streaming one part at a time, atomically; returns the count."""
    fs, root = filesystem(predictions)
    parts = parquet_parts(predictions) if fs.isdir(root) else [predictions]
    count = 0
    with atomic_path(out_json) as tmp:
        out_fs, out_path = filesystem(tmp)
        with out_fs.open(out_path, "w") as f:
            f.write("[")
            for part in parts:
                table = pq.read_table(filesystem(part)[1], filesystem=fs, columns=COLUMNS)
                for d in coco_results(table, classes or TaskClasses(), image_id):
                    f.write(("," if count else "") + "\n" + json.dumps(dict(d, segmentation=json_rle(d["segmentation"]))))
                    count += 1
            f.write("\n]\n")
    return count
