"""`playerseg render`: an H.264 mp4 of frames with predicted instances drawn, encoded in parallel
segments on Ray and joined without re-encoding.

Frames come from a video (decoded by segments), an `extract` folder of images (fps from its
_video.json) or extracted Parquet frames. Predictions follow `schema.PREDICTION_SCHEMA` (extra
columns ignored): players are filled per team (or per instance) with outlines, LED boards tinted;
with a `track_id` column (`playerseg infer` tracks) a player keeps one colour along its track
(`--color-by instance`: the track's; `team`: the track's voted team) and carries its track id.
The output has the source's fps and frame count.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Literal

import cv2
import numpy as np

from playerseg import config as cfgmod
from playerseg.data.errors import DataError
from playerseg.io import exists, short_hash
from playerseg.video.frames import Unit, folder_rate, plan_units, read_unit
from playerseg.viz import draw_instances, label

log = logging.getLogger(__name__)


@dataclass
class RenderConfig:
    source: str = ""  # video file, folder of extracted images, or frames Parquet (file/folder)
    out: str = "render.mp4"
    predictions: str | None = None  # Parquet (file or folder), PREDICTION_SCHEMA
    ground_truth: str | None = None  # same schema; shown as a third panel
    video_id: str | None = None  # which video of the Parquet files (default: the only one)
    mode: Literal["overlay", "side-by-side"] = "overlay"
    color_by: Literal["team", "instance"] = "team"
    labels: bool = False
    track_ids: bool = True  # draw "#<track_id>" above tracked players (predictions with a track_id column)
    alpha: float = cfgmod.at_least(0.0, 0.45)
    min_score: float = 0.0
    fps: float | None = cfgmod.at_least(0.0, None, above=True)  # output rate; default: the source's (or keep_fps)
    # draw only the frames `playerseg infer --set fps=X` kept: at most this many per second (the first
    # frame of each 1/X s, the frame source's rule); the output plays at this rate
    keep_fps: float | None = cfgmod.at_least(0.0, None, above=True)
    start: float | None = None  # video source: frames from this time on (seconds)
    end: float | None = None  # video source: frames before this time (seconds)
    segment_seconds: float = cfgmod.at_least(0.0, 10.0, above=True)
    crf: int = cfgmod.at_least(0, 20)
    preset: str = "veryfast"
    num_cpus: float = cfgmod.at_least(0.0, 1.0, above=True)
    concurrency: int | None = cfgmod.at_least(1, None)
    address: str | None = None


# ----------------------------------------------------------------------------- drawing
def compose(frame: np.ndarray, pred: list[dict] | None, gt: list[dict] | None, cfg: RenderConfig) -> np.ndarray:
    """The output picture of one frame: overlay, or frame | prediction [| ground truth]."""
    drawn = draw_instances(frame, pred or [], cfg.color_by, cfg.labels, cfg.alpha, cfg.track_ids)
    if cfg.mode == "overlay":
        img = drawn
    else:
        panels = [label(frame, "frame"), label(drawn, "prediction")]
        if gt is not None:
            panels.append(label(draw_instances(frame, gt, cfg.color_by, cfg.labels, cfg.alpha), "ground truth"))
        img = np.concatenate(panels, axis=1)
    h, w = img.shape[:2]
    if h % 2 or w % 2:  # yuv420p needs even sizes
        img = cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return img


# ----------------------------------------------------------------------------- predictions
def load_instances(path: str | None, video_id: str, start: int, end: int, min_score: float = 0.0) -> dict[int, list[dict]] | None:
    """frame_index -> prediction rows for frames start..end-1 of `video_id` (None without a path)."""
    if not path:
        return None
    import pyarrow.dataset as pads

    from playerseg.video.schema import PREDICTION_REQUIRED

    ds = pads.dataset(path, format="parquet")
    want = ["frame_index", "class", "mask_rle_size", "mask_rle_counts", "instance_id", "score", "team", "track_id"]
    cols = [c for c in want if c in ds.schema.names]
    missing = set(PREDICTION_REQUIRED) - set(ds.schema.names)
    if missing:
        raise DataError(path, f"predictions lack column(s) {sorted(missing)}")
    f = (pads.field("video_id") == video_id) & (pads.field("frame_index") >= start) & (pads.field("frame_index") < end)
    out: dict[int, list[dict]] = {}
    for row in ds.to_table(columns=cols, filter=f).to_pylist():
        if row.get("score") is not None and row["score"] < min_score:
            continue
        out.setdefault(int(row["frame_index"]), []).append(row)
    return out


# ----------------------------------------------------------------------------- frame source
def open_source(cfg: RenderConfig) -> tuple[str, str, list[Unit]]:
    """(video_id, fps as 'num/den' or a number, units of consecutive frames) of the source, planned
    by the frame source (`playerseg.video.frames`: same ids and frame numbers as `infer`)."""
    units, failures = plan_units([cfg.source], cfg.segment_seconds, fps=cfg.keep_fps, start_seconds=cfg.start,
                                 end_seconds=cfg.end)
    if failures:
        what, error = failures.items[0]
        raise DataError(what, error.removeprefix(f"{what}: "))
    if not units:
        raise DataError(cfg.source, "no frames: not a video, a folder of images or frames Parquet")
    kind = units[0].kind
    if kind == "video":
        seg = units[0].spec["segment"]
        return cfg.video_id or units[0].group, str(cfg.fps or cfg.keep_fps or seg.get("rate") or seg["fps"]), units
    if kind == "frames":
        return cfg.video_id or units[0].group, str(cfg.fps or units[0].spec.get("rate") or 25), units
    ids: dict[str, list[Unit]] = {}
    for u in units:
        for vid in _parquet_ids(u):
            ids.setdefault(vid, []).append(u)
    if cfg.video_id is None and len(ids) != 1:
        raise DataError(cfg.source, f"frames of {len(ids)} videos: pick one with --video-id ({sorted(ids)[:5]})")
    vid = cfg.video_id or next(iter(ids))
    fps = str(cfg.fps or folder_rate(os.path.dirname(units[0].spec["uri"]))[1])  # `extract`'s _video.json, else 25
    return vid, fps, ids.get(vid, [])


def _parquet_ids(unit: Unit) -> set[str]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(unit.spec["uri"]) as f:
        return set(f.read_row_group(unit.spec["row_group"], columns=["video_id"]).column("video_id").to_pylist())


def read_frames(unit: Unit, video_id: str) -> Iterator[tuple[int, np.ndarray]]:
    """(frame_index, RGB image) of one unit's frames of `video_id`, in order; a bad frame is logged
    and left out."""
    frames = sorted((f for f in read_unit(unit) if f.video_id == video_id), key=lambda f: f.frame_index)
    for f in frames:
        if f.error:
            log.error("render: frame %s left out: %s", f.frame_index, f.error)
            continue
        yield f.frame_index, f.image


# ----------------------------------------------------------------------------- the job
def render_chunk(unit: Unit, video_id: str, fps: str, path: str, cfg: RenderConfig) -> int:
    from playerseg.video.encode import encode_frames

    pred = load_instances(cfg.predictions, video_id, unit.start, unit.end, cfg.min_score)
    gt = load_instances(cfg.ground_truth, video_id, unit.start, unit.end)
    pictures = (
        compose(img, (pred or {}).get(i, []), None if gt is None else gt.get(i, []), cfg)
        for i, img in read_frames(unit, video_id)
    )
    return encode_frames(pictures, path, fps, cfg.crf, cfg.preset)


def run_render(cfg: RenderConfig) -> dict:
    from playerseg.ledger import LOCK_FILE, acquire_lock, release_lock
    from playerseg.io import tree_fingerprint
    from playerseg.ray_cluster import init_ray

    if not cfg.source:
        raise cfgmod.ConfigError("render: no source given")
    init_ray(cfg.address)
    vid, fps, units = open_source(cfg)
    opts = {k: getattr(cfg, k) for k in ("predictions", "ground_truth", "mode", "color_by", "labels", "alpha", "min_score", "crf", "preset",
                                 "start", "end", "track_ids", "keep_fps")}
    # parts are reused only while options and content are unchanged (source, predictions, ground truth)
    content = [sorted({json.dumps(u.source, sort_keys=True) for u in units}),
               tree_fingerprint(cfg.predictions) if cfg.predictions else "",
               tree_fingerprint(cfg.ground_truth) if cfg.ground_truth else ""]
    tag = short_hash(json.dumps([opts, fps, content]), 8)
    parts_dir = f"{cfg.out}.parts"
    lock = acquire_lock(parts_dir)  # one render into `out` at a time
    try:
        return _render_parts(cfg, vid, fps, units, tag, parts_dir)
    finally:
        release_lock(lock)
        with contextlib.suppress(OSError):
            if os.listdir(parts_dir) == [LOCK_FILE]:  # every part joined: nothing left to resume
                os.remove(f"{parts_dir}/{LOCK_FILE}")
                os.rmdir(parts_dir)


def _render_parts(cfg: RenderConfig, vid: str, fps: str, units: list[Unit], tag: str, parts_dir: str) -> dict:
    from playerseg.ray_cluster import map_items
    from playerseg.video.encode import concat, remove_quietly, video_stats

    parts = [f"{parts_dir}/{tag}-{u.group.replace('/', '_')}-{u.name}.mp4" for u in units]
    todo = [{"unit": u.to_json(), "path": p} for u, p in zip(units, parts) if not exists(p)]
    log.info("render %s (%s, %s fps): %d segments, %d to encode", vid, units[0].kind if units else "-", fps,
             len(units), len(todo))

    def _task(item: dict) -> int:
        return render_chunk(Unit.from_json(item["unit"]), vid, fps, item["path"], cfg)

    # every error stops the render (errors=()): a video with a part missing is not written
    map_items(todo, _task, what=f"render {vid}", unit="frame", size=lambda t: Unit.from_json(t["unit"]).num_frames,
              name=lambda t: t["path"], num_cpus=cfg.num_cpus, concurrency=cfg.concurrency, errors=())
    concat(parts, cfg.out)
    remove_quietly(parts)
    stats = {"video_id": vid, "out": cfg.out, **video_stats(cfg.out)}
    print(f"wrote {cfg.out}: {stats['frames']} frames, {stats['fps']:.3f} fps, {stats['width']}x{stats['height']}")
    return stats
