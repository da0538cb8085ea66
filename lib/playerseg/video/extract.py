"""`playerseg extract`: frames of whole match archives as JPEG/PNG files or Parquet rows, on Ray.

Each video is probed (cheap demux), cut into segments of `segment_seconds`, and every segment is
decoded by its own Ray task, so one match uses every worker. Videos are planned by the frame source
(`playerseg.video.frames`: ids unique within the run, safe as names). Outputs:
  files:   <out>/<video_id>/<frame_index:06d>.jpg      (or .png)
  parquet: <out>/<video_id>/frames-<start:06d>-<end:06d>.parquet   (schema.FRAME_SCHEMA)
  <out>/<video_id>/_video.json (the probe), <out>/_summary.json, and the ledger
  (`playerseg.ledger`: _run.json, _done/<video_id>/<segment>.json, _lock; "_" names: Parquet
  readers skip them). A re-run skips finished segments; other options or a changed video are refused
  (--overwrite redoes them). Every file is written under a temporary name and renamed; a segment
  that fails removes what it wrote. A video that cannot be read (or is truncated) is named in the
  summary; the others complete.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import cv2

from playerseg import config as cfgmod
from playerseg.data.errors import DataError
from playerseg.io import write_bytes_atomic, write_json_atomic, write_table_atomic
from playerseg.ledger import Ledger
from playerseg.video.frames import Unit, plan_units
from playerseg.video.encode import remove_quietly
from playerseg.video.segments import Segment, decode_segment

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    inputs: list[str] = field(default_factory=list)  # files, folders, globs; local or fsspec URIs
    out: str = "frames"
    every: int = cfgmod.at_least(1, 1)  # keep every Nth (selected) frame
    fps: float | None = cfgmod.at_least(0.0, None, above=True)  # keep about this many frames per second
    start: float | None = cfgmod.at_least(0.0, None)  # seconds
    end: float | None = None  # seconds (exclusive)
    width: int | None = cfgmod.at_least(2, None)  # resize keeping aspect (one side, or fit inside both)
    height: int | None = cfgmod.at_least(2, None)
    output: Literal["files", "parquet"] = "files"
    image_format: Literal["jpg", "png"] = "jpg"
    quality: int = cfgmod.at_least(1, 90)  # JPEG quality (PNG: ignored)
    segment_seconds: float = cfgmod.at_least(0.0, 10.0, above=True)
    num_cpus: float = cfgmod.at_least(0.0, 1.0, above=True)  # per segment task
    concurrency: int | None = cfgmod.at_least(1, None)  # max parallel segment tasks (None: as many as CPUs allow)
    decode_threads: int = cfgmod.at_least(1, 1)  # FFmpeg threads per task
    address: str | None = None  # Ray cluster to join; None: local/embedded Ray


def encode_image(bgr, image_format: str, quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {image_format} image")
    return buf.tobytes()


def signature(cfg: ExtractConfig) -> dict:
    """What the outputs depend on (`playerseg.ledger`)."""
    keys = ("every", "fps", "start", "end", "width", "height", "output", "image_format", "quality", "segment_seconds")
    return {k: getattr(cfg, k) for k in keys}


def extract_segment(seg: Segment, cfg: ExtractConfig, ledger: Ledger, unit: Unit) -> dict:
    """Decode one segment, write its frames, record it as done. Returns its stats. On failure the
    frames it wrote are removed (a segment's output is whole or absent)."""
    import pyarrow as pa

    from playerseg.video.schema import FRAME_SCHEMA

    t0 = time.perf_counter()
    frames = nbytes = 0
    rows: dict[str, list] = {name: [] for name in FRAME_SCHEMA.names}
    written: list[str] = []
    try:
        for f in decode_segment(seg, cfg.width, cfg.height, pixel_format="bgr24", threads=cfg.decode_threads):
            data = encode_image(f.image, cfg.image_format, cfg.quality)
            if cfg.output == "files":
                written.append(ledger.path(seg.video_id, f"{f.frame_index:06d}.{cfg.image_format}"))
                write_bytes_atomic(written[-1], data)
            else:
                h, w = f.image.shape[:2]
                for k, v in zip(FRAME_SCHEMA.names, (f.video_id, f.frame_index, f.pts_seconds, w, h, data, cfg.image_format)):
                    rows[k].append(v)
            frames += 1
            nbytes += len(data)
    except BaseException:
        remove_quietly(written)
        raise
    if frames != seg.num_frames:
        raise DataError(seg.uri, f"segment {seg.name}: {frames} of {seg.num_frames} frames decoded")
    if cfg.output == "parquet":
        write_table_atomic(ledger.path(seg.video_id, f"frames-{seg.name}.parquet"),
                           pa.Table.from_pydict(rows, schema=FRAME_SCHEMA))
    stats = {"frames": frames, "bytes": nbytes, "seconds": round(time.perf_counter() - t0, 3)}
    ledger.mark(unit, **stats)
    return stats


def run_extract(cfg: ExtractConfig, overwrite: bool = False) -> dict:
    """The whole job; returns the summary (also written to `<out>/_summary.json`)."""
    from playerseg.ray_cluster import init_ray, map_items

    if not cfg.inputs:
        raise cfgmod.ConfigError("no inputs: give videos, folders or globs, e.g. `playerseg extract "
                                 "../shared/data/videos --out outputs/frames`")
    for item in cfg.inputs:
        cfgmod.require_path(item, "input", "give videos, folders or globs")
    if cfg.every < 1 or (cfg.fps is not None and cfg.fps <= 0):
        raise cfgmod.ConfigError(f"--every {cfg.every} / --fps {cfg.fps}: keep every N >= 1 frames, or F > 0 per second")
    with Ledger(cfg.out, signature(cfg), overwrite) as ledger:
        init_ray(cfg.address)
        t0 = time.perf_counter()
        units, failures = plan_units(cfg.inputs, cfg.segment_seconds, 0, cfg.every, cfg.fps, probe_cache=cfg.out,
                                     probe_cpus=min(cfg.num_cpus, 0.5), start_seconds=cfg.start, end_seconds=cfg.end,
                                     videos_only=True)
        pending = ledger.pending(units)
        todo = {u.key for u in pending}
        log.info("%d segments, %d to do", len(units), len(pending))
        by_video: dict[str, dict] = {}
        for u in units:
            v = by_video.setdefault(u.group, {"uri": u.uri, "frames": 0, "segments": 0, "skipped": 0, "failed": 0})
            v["segments"] += 1
            if u.key not in todo:
                v["skipped"] += 1
                v["frames"] += u.num_frames

        def _task(item: dict) -> dict:
            unit = Unit.from_json(item["unit"])
            return extract_segment(Segment.from_json(unit.spec["segment"]), cfg, ledger, unit)

        items = [{"unit": u.to_json(), "video_id": u.group, "uri": u.uri, "segment": u.name, "frames": u.num_frames}
                 for u in sorted(pending, key=lambda u: (u.group, u.name))]
        done, failed = map_items(items, _task, what="extract", unit="frame", size=lambda i: i["frames"],
                                 name=lambda i: f"{i['uri']} segment {i['segment']}", num_cpus=cfg.num_cpus,
                                 concurrency=cfg.concurrency)
        stats = {item["unit"]: s for item, s in done}
        for item in items:
            v = by_video[item["video_id"]]
            if item["unit"] in stats:
                v["frames"] += stats[item["unit"]]["frames"]
            else:
                v["failed"] += 1
        failures.items += failed.items
        summary = {
            "videos": len(by_video),
            "frames": sum(v["frames"] for v in by_video.values()),
            "seconds": round(time.perf_counter() - t0, 2),
            "per_video": by_video,
            "failures": failures.as_json(),
        }
        write_json_atomic(ledger.path("_summary.json"), summary)
    print(format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{'video':<32} {'frames':>8} {'segments':>9} {'skipped':>8} {'failed':>7}"]
    for vid, v in sorted(summary["per_video"].items()):
        lines.append(f"{vid:<32} {v['frames']:>8} {v['segments']:>9} {v['skipped']:>8} {v['failed']:>7}")
    fail = summary["failures"]
    lines.append(f"{summary['videos']} videos, {summary['frames']} frames, {len(fail)} failure(s) in {summary['seconds']} s")
    lines += [f"  FAILED {f['what']}: {f['error']}" for f in fail]
    return "\n".join(lines)
