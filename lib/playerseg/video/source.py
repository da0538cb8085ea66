"""Ray Data over videos: probe many videos in parallel, and a frames dataset whose unit of
parallelism is the segment.

    ds = frames_dataset(["s3://bucket/match.mp4"], segment_seconds=10)
    # rows: video_id, frame_index, pts_seconds, width, height, image (HxWx3 uint8 RGB)

Rows come out in (video, frame) order: each segment is one input block, decoded by one task,
and `preserve_order` keeps blocks in plan order.
"""
from __future__ import annotations

import logging
from typing import Iterator

import ray

from playerseg.data.errors import DataError, Failures
from playerseg.video.probe import VideoInfo, load_or_probe

log = logging.getLogger(__name__)


def probe_all(
    videos: dict[str, str], cache_dir: str | None = None, num_cpus: float = 0.5
) -> tuple[list[VideoInfo], Failures]:
    """Probe `videos` (uri -> video id, from `video.frames.plan_units`) as Ray tasks. Unreadable
    videos go to the returned Failures, named; probes are cached as `<cache_dir>/<video_id>/_video.json`
    (used again only while the file's content fingerprint is unchanged)."""
    from playerseg.ray_cluster import map_items
    from playerseg.video.frames import under

    def _probe(item: dict) -> dict:
        cache = under(cache_dir, f"{item['video_id']}/_video.json") if cache_dir else None
        return load_or_probe(item["uri"], item["video_id"], cache).to_json()

    items = [{"uri": u, "video_id": i} for u, i in sorted(videos.items())]
    done, failures = map_items(items, _probe, name=lambda item: item["uri"], num_cpus=num_cpus)
    return [VideoInfo.from_json(info) for _, info in done], failures


def frames_dataset(
    videos: list[str],
    segment_seconds: float = 10.0,
    every: int = 1,
    fps: float | None = None,
    num_cpus: float = 1.0,
    concurrency: int | None = None,
    decode_threads: int = 1,
    errors: str = "raise",
) -> ray.data.Dataset:
    """Rows {video_id, frame_index, pts_seconds, width, height, image} of all frames of `videos`
    (files, folders, globs: the frame source's inputs), in (video, frame) order. `errors="skip"`
    logs a unit that fails to decode (naming the file) and goes on; unplannable inputs are always
    logged and left out."""
    from playerseg.video.frames import Unit, plan_units, read_unit

    units, failures = plan_units(list(videos), segment_seconds, every=every, fps=fps)
    if failures:
        log.warning("%s", failures.summary())

    def _decode(row: dict) -> Iterator[dict]:
        unit = Unit.from_json(row["unit"])
        try:
            for f in read_unit(unit, decode_threads):
                if f.error:
                    raise DataError(unit.uri, f.error)
                h, w = f.image.shape[:2]
                yield {"video_id": f.video_id, "frame_index": f.frame_index, "pts_seconds": f.pts_seconds,
                       "width": w, "height": h, "image": f.image}
        except DataError as e:
            if errors != "skip":
                raise
            log.error("skipped unit %s: %s", unit.key, e)

    ds = ray.data.from_items([{"unit": u.to_json()} for u in units], override_num_blocks=max(1, len(units)))
    ds.context.execution_options.preserve_order = True  # this dataset's order, not the global default
    return ds.flat_map(_decode, num_cpus=num_cpus, concurrency=concurrency)
