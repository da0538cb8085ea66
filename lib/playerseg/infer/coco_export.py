"""Prediction Parquet -> COCO results JSON, for the evaluation tools (`playerseg.metrics.instance`).

    export_coco("outputs/infer/predictions", "outputs/infer/coco_results.json",
                image_id="frame_{frame_index:05d}")

Category ids are task class ids (as `metrics.instance` expects); `image_id` is a template over the
row's `video_id` and `frame_index` (default "{video_id}/{frame_index}"), so results of a frame
folder can be matched to the Sample ids of its ground truth (`frame_{frame_index:05d}`).
"""
from __future__ import annotations

import pyarrow.parquet as pq

from playerseg.classes import TaskClasses
from playerseg.metrics.instance import write_coco_results
from playerseg.video.schema import prediction_rle

DEFAULT_IMAGE_ID = "{video_id}/{frame_index}"


def read_predictions(path: str, columns: list[str] | None = None):
    """The prediction rows under `path` (a part file or a folder of them) as one pyarrow Table."""
    from playerseg.io import filesystem

    fs, fpath = filesystem(path)
    return pq.read_table(fpath, filesystem=fs, columns=columns)


def coco_results(table, classes: TaskClasses, image_id: str = DEFAULT_IMAGE_ID) -> list[dict]:
    """COCO result dicts (image_id, category_id, score, bbox, segmentation RLE) of prediction rows."""
    out = []
    for row in table.to_pylist():
        cid = classes.get(row["class"])
        if cid is None:
            continue
        iid = image_id.format(video_id=row["video_id"], frame_index=row["frame_index"])
        out.append({
            "image_id": int(iid) if iid.isdigit() else iid,
            "category_id": cid,
            "score": float(row["score"] if row.get("score") is not None else 1.0),
            "bbox": [float(v) for v in row["bbox"]],
            "segmentation": prediction_rle(row),
        })
    out.sort(key=lambda d: (str(d["image_id"]), -d["score"]))
    return out


def export_coco(predictions: str, out_json: str, classes: TaskClasses | None = None,
                image_id: str = DEFAULT_IMAGE_ID) -> int:
    """Write the COCO results JSON of the predictions under `predictions`; returns the count."""
    table = read_predictions(predictions, ["video_id", "frame_index", "class", "score", "bbox",
                                           "mask_rle_size", "mask_rle_counts"])
    results = coco_results(table, classes or TaskClasses(), image_id)
    write_coco_results(out_json, results)
    return len(results)
