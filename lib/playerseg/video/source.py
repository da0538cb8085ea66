"""Ray Data over videos: probe many videos in parallel, and a frames dataset whose unit of
parallelism is the segment.

    ds = frames_dataset(["s3://bucket/match.mp4"], segment_seconds=10)
    # rows: video_id, frame_index, pts_seconds, width, height, image (HxWx3 uint8 RGB)

Rows come out in (video, frame) order: each segment is one input block, decoded by one task,
and `preserve_order` keeps blocks in plan order.
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import ray

from playerseg.data.errors import DataError, Failures
from playerseg.video.probe import VideoInfo, list_videos, load_or_probe, unique_ids
from playerseg.video.segments import Segment, decode_segment, plan_segments, select_frames

log = logging.getLogger(__name__)


def init_ray(address: str | None = None) -> None:
    """Join `address` (a cluster), else the running/embedded local Ray; never twice. Ray's console
    output is kept to errors and progress is ours (`playerseg.progress.quiet_ray`)."""
    from playerseg.progress import quiet_ray

    options = quiet_ray()
    if not ray.is_initialized():
        ctx = ray.init(address=address, **options)
        logs = f"{ctx.address_info.get('session_dir', '')}/logs" if hasattr(ctx, "address_info") else ""
        dashboard = f", dashboard http://{ctx.dashboard_url}" if getattr(ctx, "dashboard_url", "") else ""
        print(f"ray: {'joined ' + address if address else 'local'}{dashboard}; logs {logs}", flush=True)


def probe_all(
    inputs: list[str], cache_dir: str | None = None, num_cpus: float = 0.5
) -> tuple[list[VideoInfo], Failures]:
    """Probe every video found in `inputs` (files, folders, globs) as Ray tasks. Unreadable videos
    go to the returned Failures, named; probes are cached as `<cache_dir>/<video_id>/_video.json`."""
    uris = list_videos(inputs)
    ids = unique_ids(uris)
    failures = Failures()
    if not uris:
        return [], failures

    def _probe(row: dict) -> dict:
        cache = f"{cache_dir}/{row['video_id']}/_video.json" if cache_dir else None
        try:
            info = load_or_probe(row["uri"], row["video_id"], cache)
            return {**row, "info": json.dumps(info.to_json()), "error": ""}
        except (DataError, OSError, ValueError) as e:
            return {**row, "info": "", "error": str(e) if isinstance(e, DataError) else f"{row['uri']}: {e}"}

    items = [{"uri": u, "video_id": ids[u]} for u in uris]
    rows = ray.data.from_items(items, override_num_blocks=len(items)).map(_probe, num_cpus=num_cpus).take_all()
    infos = []
    for row in sorted(rows, key=lambda r: r["uri"]):
        if row["error"]:
            err = row["error"]
            failures.add(row["uri"], RuntimeError(err[len(row["uri"]) + 2 :] if err.startswith(row["uri"] + ": ") else err))
        else:
            infos.append(VideoInfo.from_json(json.loads(row["info"])))
    return infos, failures


def plan_all(
    infos: list[VideoInfo],
    segment_seconds: float = 10.0,
    segment_frames: int | None = None,
    every: int = 1,
    fps: float | None = None,
    start_seconds: float | None = None,
    end_seconds: float | None = None,
) -> list[Segment]:
    """Segments of every video, in (video, frame) order, with the frame selection applied."""
    out: list[Segment] = []
    for info in infos:
        keep = select_frames(info, every, fps, start_seconds, end_seconds)
        out += plan_segments(info, segment_seconds, segment_frames, keep)
    return out


def frames_dataset(
    videos: list[str] | list[Segment],
    segment_seconds: float = 10.0,
    width: int | None = None,
    height: int | None = None,
    every: int = 1,
    fps: float | None = None,
    num_cpus: float = 1.0,
    concurrency: int | None = None,
    decode_threads: int = 1,
    errors: str = "raise",
    preserve_order: bool = True,
) -> ray.data.Dataset:
    """Rows {video_id, frame_index, pts_seconds, width, height, image} of all frames of `videos`
    (uris/folders/globs, or planned Segments). `errors="skip"` logs a segment that fails to decode
    (naming the file) and goes on; unprobeable videos are always logged and left out."""
    if videos and isinstance(videos[0], Segment):
        segments = list(videos)
    else:
        infos, failures = probe_all(list(videos))
        if failures:
            log.warning("%s", failures.summary())
        segments = plan_all(infos, segment_seconds, every=every, fps=fps)
    if preserve_order:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
    items = [{"segment": json.dumps(s.to_json())} for s in segments]

    def _decode(row: dict) -> Iterator[dict]:
        seg = Segment.from_json(json.loads(row["segment"]))
        try:
            for f in decode_segment(seg, width, height, threads=decode_threads):
                h, w = f.image.shape[:2]
                yield {
                    "video_id": f.video_id,
                    "frame_index": f.frame_index,
                    "pts_seconds": f.pts_seconds,
                    "width": w,
                    "height": h,
                    "image": f.image,
                }
        except DataError as e:
            if errors != "skip":
                raise
            log.error("skipped segment %s of %s: %s", seg.name, seg.uri, e)

    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.flat_map(_decode, num_cpus=num_cpus, concurrency=concurrency)
