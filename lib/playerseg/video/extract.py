"""`playerseg extract`: frames of whole match archives as JPEG/PNG files or Parquet rows, on Ray.

    playerseg extract ../shared/data/videos --out outputs/frames --every 5
    playerseg extract ../shared/data/videos/laliga_720p.mp4 --out outputs/frames_pq --start 2 --end 6 --width 640 --parquet
    playerseg extract s3://archive/2024/*.mp4 --out s3://frames/2024 --fps 5 --height 720

Each video is probed (cheap demux), cut into segments of `segment_seconds`, and every segment is
decoded by its own Ray task, so one match uses every worker. Outputs:
  files:   <out>/<video_id>/<frame_index:06d>.jpg      (or .png)
  parquet: <out>/<video_id>/frames-<start:06d>-<end:06d>.parquet   (schema.FRAME_SCHEMA)
  <out>/<video_id>/_video.json (the probe), <out>/<video_id>/_done/<segment>.json (finished
  segments: a re-run skips them), <out>/_summary.json ("_" names: Parquet readers skip them).
Every file is written under a temporary name and renamed. A video that cannot be read is named
in the summary; the others complete.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import cv2

from playerseg import config as cfgmod
from playerseg.data.errors import DataError
from playerseg.io import exists, read_json, write_bytes_atomic, write_json_atomic
from playerseg.video.segments import Segment, decode_segment

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    inputs: list[str] = field(default_factory=list)  # files, folders, globs; local or fsspec URIs
    out: str = "frames"
    every: int = 1  # keep every Nth (selected) frame
    fps: float | None = None  # keep about this many frames per second
    start: float | None = None  # seconds
    end: float | None = None  # seconds (exclusive)
    width: int | None = None  # resize keeping aspect (one side, or fit inside both)
    height: int | None = None
    output: Literal["files", "parquet"] = "files"
    image_format: Literal["jpg", "png"] = "jpg"
    quality: int = 90  # JPEG quality (PNG: ignored)
    segment_seconds: float = 10.0
    num_cpus: float = 1.0  # per segment task
    concurrency: int | None = None  # max parallel segment tasks (None: as many as CPUs allow)
    decode_threads: int = 1  # FFmpeg threads per task
    address: str | None = None  # Ray cluster to join; None: local/embedded Ray


def encode_image(bgr, image_format: str, quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {image_format} image")
    return buf.tobytes()


def fingerprint(cfg: ExtractConfig) -> str:
    keys = ("every", "fps", "start", "end", "width", "height", "output", "image_format", "quality")
    return hashlib.sha1(json.dumps({k: getattr(cfg, k) for k in keys}).encode()).hexdigest()[:12]


def done_path(out: str, seg: Segment) -> str:
    return f"{out}/{seg.video_id}/_done/{seg.name}.json"


def is_done(out: str, seg: Segment, fp: str) -> bool:
    path = done_path(out, seg)
    if not exists(path):
        return False
    try:
        return read_json(path).get("fingerprint") == fp
    except (OSError, ValueError):
        return False


def extract_segment(seg: Segment, cfg: ExtractConfig) -> dict:
    """Decode one segment, write its frames, record it as done. Returns its stats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from playerseg.io import atomic_path
    from playerseg.video.schema import FRAME_SCHEMA

    t0 = time.perf_counter()
    frames = nbytes = 0
    rows: dict[str, list] = {name: [] for name in FRAME_SCHEMA.names}
    for f in decode_segment(seg, cfg.width, cfg.height, pixel_format="bgr24", threads=cfg.decode_threads):
        data = encode_image(f.image, cfg.image_format, cfg.quality)
        if cfg.output == "files":
            write_bytes_atomic(f"{cfg.out}/{seg.video_id}/{f.frame_index:06d}.{cfg.image_format}", data)
        else:
            h, w = f.image.shape[:2]
            for k, v in zip(FRAME_SCHEMA.names, (f.video_id, f.frame_index, f.pts_seconds, w, h, data, cfg.image_format)):
                rows[k].append(v)
        frames += 1
        nbytes += len(data)
    if cfg.output == "parquet":
        with atomic_path(f"{cfg.out}/{seg.video_id}/frames-{seg.name}.parquet") as tmp:
            pq.write_table(pa.Table.from_pydict(rows, schema=FRAME_SCHEMA), tmp)
    stats = {"frames": frames, "bytes": nbytes, "seconds": round(time.perf_counter() - t0, 3)}
    write_json_atomic(done_path(cfg.out, seg), {"fingerprint": fingerprint(cfg), **stats})
    return stats


def run_extract(cfg: ExtractConfig) -> dict:
    """The whole job; returns the summary (also written to `<out>/_summary.json`)."""
    import ray

    from playerseg.progress import Progress
    from playerseg.video.source import init_ray, plan_all, probe_all

    if not cfg.inputs:
        raise cfgmod.ConfigError("no inputs: give videos, folders or globs, e.g. `playerseg extract "
                                 "../shared/data/videos --out outputs/frames`")
    for item in cfg.inputs:
        cfgmod.require_path(item, "input", "give videos, folders or globs")
    if cfg.every < 1 or (cfg.fps is not None and cfg.fps <= 0):
        raise cfgmod.ConfigError(f"--every {cfg.every} / --fps {cfg.fps}: keep every N >= 1 frames, or F > 0 per second")
    init_ray(cfg.address)
    t0 = time.perf_counter()
    infos, failures = probe_all(cfg.inputs, cache_dir=cfg.out, num_cpus=min(cfg.num_cpus, 0.5))
    segments = plan_all(infos, cfg.segment_seconds, None, cfg.every, cfg.fps, cfg.start, cfg.end)
    fp = fingerprint(cfg)
    pending = [s for s in segments if not is_done(cfg.out, s, fp)]
    todo = {(s.video_id, s.name) for s in pending}
    log.info("%d videos, %d segments, %d to do", len(infos), len(segments), len(pending))
    by_video = {i.video_id: {"uri": i.uri, "frames": 0, "segments": 0, "skipped": 0, "failed": 0} for i in infos}
    for s in segments:
        by_video[s.video_id]["segments"] += 1
        if (s.video_id, s.name) not in todo:
            by_video[s.video_id]["skipped"] += 1
            by_video[s.video_id]["frames"] += s.num_frames

    def _task(row: dict) -> dict:
        seg = Segment.from_json(json.loads(row["segment"]))
        try:
            return {"video_id": seg.video_id, "uri": seg.uri, "segment": seg.name, "error": "", **extract_segment(seg, cfg)}
        except (DataError, OSError, ValueError) as e:
            return {"video_id": seg.video_id, "uri": seg.uri, "segment": seg.name, "error": str(e), "frames": 0, "bytes": 0, "seconds": 0.0}

    if pending:
        items = [{"segment": json.dumps(s.to_json())} for s in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        results = []
        with Progress("extract", total=sum(s.num_frames for s in pending), unit="frame") as bar:
            for r in ds.map(_task, num_cpus=cfg.num_cpus, concurrency=cfg.concurrency).iter_rows():
                results.append(r)
                bar.update(r["frames"])
    else:
        results = []
    for r in sorted(results, key=lambda r: (r["video_id"], r["segment"])):
        v = by_video[r["video_id"]]
        if r["error"]:
            v["failed"] += 1
            failures.add(f"{r['uri']} segment {r['segment']}", RuntimeError(_problem(r["error"], r["uri"])))
        else:
            v["frames"] += r["frames"]
    summary = {
        "videos": len(by_video),
        "frames": sum(v["frames"] for v in by_video.values()),
        "seconds": round(time.perf_counter() - t0, 2),
        "per_video": by_video,
        "failures": [{"what": w, "error": e} for w, e in failures.items],
    }
    write_json_atomic(f"{cfg.out}/_summary.json", summary)
    print(format_summary(summary))
    return summary


def _problem(error: str, uri: str) -> str:
    """A DataError's text without its leading `path: ` (the summary names the file already)."""
    return error[len(uri) + 2 :] if error.startswith(uri + ": ") else error


def format_summary(summary: dict) -> str:
    lines = [f"{'video':<32} {'frames':>8} {'segments':>9} {'skipped':>8} {'failed':>7}"]
    for vid, v in sorted(summary["per_video"].items()):
        lines.append(f"{vid:<32} {v['frames']:>8} {v['segments']:>9} {v['skipped']:>8} {v['failed']:>7}")
    fail = summary["failures"]
    lines.append(f"{summary['videos']} videos, {summary['frames']} frames, {len(fail)} failure(s) in {summary['seconds']} s")
    lines += [f"  FAILED {f['what']}: {f['error']}" for f in fail]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="videos, folders or globs (local or s3://...)")
    p.add_argument("--out", help="output folder or URI")
    p.add_argument("--every", type=int, help="keep every Nth frame")
    p.add_argument("--fps", type=float, help="keep about this many frames per second")
    p.add_argument("--start", type=float, help="start time, seconds")
    p.add_argument("--end", type=float, help="end time, seconds")
    p.add_argument("--width", type=int, help="resize to this width (keeps aspect)")
    p.add_argument("--height", type=int, help="resize to this height (keeps aspect)")
    p.add_argument("--parquet", dest="output", action="store_const", const="parquet",
                   help="write Parquet rows instead of image files")
    p.add_argument("--format", dest="image_format", choices=["jpg", "png"])
    p.add_argument("--quality", type=int, help="JPEG quality")
    p.add_argument("--segment-seconds", type=float)
    p.add_argument("--num-cpus", type=float, help="CPUs per segment task")
    p.add_argument("--concurrency", type=int, help="max parallel segment tasks")
    p.add_argument("--address", help="Ray cluster address (default: local Ray)")
    cfgmod.add_config_arguments(p, ExtractConfig)


_FLAGS = {k: k for k in ("inputs", "out", "every", "fps", "start", "end", "width", "height", "output", "image_format",
                         "quality", "segment_seconds", "num_cpus", "concurrency", "address")}


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    return cfgmod.from_args(ExtractConfig, args, _FLAGS)


def run(args: argparse.Namespace) -> int:
    summary = run_extract(config_from_args(args))
    return 1 if summary["failures"] else 0
