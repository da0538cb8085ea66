"""Segments: a video split into frame ranges that separate tasks decode exactly.

`plan_segments` cuts the frame index of a probed video into ranges of about `segment_seconds`
(boundaries snapped to a nearby keyframe when one is close, so little is decoded twice).
`decode_segment` seeks to the keyframe before the range, decodes, and yields only the range's
frames, numbered by the probe's index: the union of all segments is every frame exactly once,
identical to `decode_sequential`. No task holds more than one decoded frame at a time.
"""
from __future__ import annotations

import bisect
import logging
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from playerseg.data.errors import DataError
from playerseg.video.probe import VideoInfo, open_video, probe

log = logging.getLogger(__name__)


@dataclass
class Frame:
    video_id: str
    frame_index: int
    pts_seconds: float
    image: np.ndarray | None  # HxWx3 uint8, RGB unless another pixel format was asked for; None if bad
    error: str = ""  # why this frame could not be read (`playerseg.video.frames`: reported, skipped)


@dataclass
class Segment:
    uri: str
    video_id: str
    number: int  # position of the segment in its video
    start: int  # first frame index (inclusive)
    end: int  # last frame index (exclusive)
    frame_pts: list[int]  # pts of frames start..end-1 (empty when not exact)
    seek_dts: list[int]  # keyframe timestamps to seek to, nearest first; start of file after them
    first_pts: int  # pts of frame 0 (pts_seconds origin)
    time_base: str
    fps: float
    width: int
    height: int
    exact: bool
    keep: list[int] | None = None  # frame indices to yield; None = all of start..end-1
    rate: str = ""  # the video's average rate as a fraction (renders are written at it)

    @property
    def name(self) -> str:
        return f"{self.start:06d}-{self.end:06d}"

    @property
    def num_frames(self) -> int:
        return self.end - self.start if self.keep is None else len(self.keep)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Segment":
        return cls(**d)


def select_frames(
    info: VideoInfo,
    every: int = 1,
    fps: float | None = None,
    start_seconds: float | None = None,
    end_seconds: float | None = None,
) -> list[int] | None:
    """Frame indices kept by the options (None = all). A time range keeps frames with
    start <= pts_seconds < end; `fps` keeps the first frame of each 1/fps interval; `every`
    keeps every Nth of those. Depends only on the probe, so every segment agrees."""
    if every <= 1 and fps is None and start_seconds is None and end_seconds is None:
        return None
    n = info.frame_count
    t = [info.pts_seconds(p) for p in info.frame_pts] if info.exact else [i / info.fps for i in range(n)]
    idx = [i for i in range(n) if (start_seconds is None or t[i] >= start_seconds - 1e-9)
           and (end_seconds is None or t[i] < end_seconds - 1e-9)]
    if fps is not None and fps < info.fps:
        kept, last_bin = [], None
        for i in idx:
            b = math.floor(t[i] * fps + 1e-6)
            if b != last_bin:
                kept.append(i)
                last_bin = b
        idx = kept
    if every > 1:
        idx = idx[::every]
    return idx


def plan_segments(
    video: str | VideoInfo,
    segment_seconds: float | None = 10.0,
    segment_frames: int | None = None,
    keep: list[int] | None = None,
) -> list[Segment]:
    """Split a video (uri or probe) into segments of about `segment_frames` frames (or
    `segment_seconds`). Only segments holding a kept frame are returned (`keep` from
    `select_frames`, None = all). A video without a usable index is one segment."""
    info = video if isinstance(video, VideoInfo) else probe(video)
    n = info.frame_count
    size = segment_frames or max(1, round((segment_seconds or 10.0) * info.fps))
    if not info.exact:
        return [_segment(info, 0, 0, n, [], keep)] if keep is None or keep else []
    pts = info.frame_pts
    rank = {p: i for i, p in enumerate(pts)}
    key_index = sorted(rank[p] for p, _ in info.keyframes if p in rank)
    bounds = [0]
    while bounds[-1] + size < n:
        nominal = bounds[-1] + size
        j = bisect.bisect_left(key_index, nominal)
        near = [k for k in key_index[max(0, j - 1) : j + 1] if abs(k - nominal) <= size // 4]
        b = min(near, key=lambda k: (abs(k - nominal), k)) if near else nominal
        if b <= bounds[-1]:
            b = nominal
        if n - b < max(1, size // 4):  # no tiny tail segment
            break
        bounds.append(b)
    bounds.append(n)
    keys_by_pts = sorted(info.keyframes)  # (pts, dts)
    segments = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg_keep = None
        if keep is not None:
            seg_keep = keep[bisect.bisect_left(keep, a) : bisect.bisect_left(keep, b)]
            if not seg_keep:
                continue
        # keyframes at or before the first frame, nearest first (the decoder starts there)
        before = [dts for p, dts in keys_by_pts if p <= pts[a]]
        seek = sorted(set(before[-2:]), reverse=True) if a > 0 else []
        segments.append(_segment(info, len(segments), a, b, seek, seg_keep))
    return segments


def _segment(info: VideoInfo, number: int, a: int, b: int, seek: list[int], keep) -> Segment:
    return Segment(
        uri=info.uri,
        video_id=info.video_id,
        number=number,
        start=a,
        end=b,
        frame_pts=info.frame_pts[a:b] if info.exact else [],
        seek_dts=seek,
        first_pts=info.frame_pts[0] if info.exact else 0,
        time_base=info.time_base,
        fps=info.fps,
        width=info.width,
        height=info.height,
        exact=info.exact,
        keep=None if keep is None else list(keep),
        rate=info.rate,
    )


def output_size(width: int, height: int, out_width: int | None, out_height: int | None) -> tuple[int, int]:
    """Resize keeping the aspect: one side given -> the other follows; both -> fit inside."""
    if not out_width and not out_height:
        return width, height
    scale = min(out_width / width if out_width else math.inf, out_height / height if out_height else math.inf)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _to_image(frame: av.VideoFrame, size: tuple[int, int] | None, pixel_format: str) -> np.ndarray:
    if size and (size[0] != frame.width or size[1] != frame.height):
        frame = frame.reformat(width=size[0], height=size[1], format=pixel_format, interpolation="AREA")
    return frame.to_ndarray(format=pixel_format)


def _frames_from(uri: str, seek_dts: int | None, threads: int) -> Iterator[av.VideoFrame]:
    with open_video(uri) as c:
        s = c.streams.video[0]
        if threads != 1:
            s.thread_type = "AUTO"
            s.codec_context.thread_count = threads
        if seek_dts is not None:
            c.seek(seek_dts, stream=s, backward=True, any_frame=False)
        try:
            yield from c.decode(s)
        except av.FFmpegError as e:
            raise DataError(uri, f"decode failed: {e}") from None


def iter_segment(seg: Segment, threads: int = 1) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """(frame_index, pts_seconds, av.VideoFrame) of the segment's frames, in order."""
    keep = None if seg.keep is None else set(seg.keep)
    if not seg.exact:
        first_time = None
        for i, f in enumerate(_frames_from(seg.uri, None, threads)):
            if first_time is None:
                first_time = f.time if f.time is not None else 0.0
            if i >= seg.end:
                break
            if i >= seg.start and (keep is None or i in keep):
                t = (f.time - first_time) if f.time is not None else i / seg.fps
                yield i, float(t), f
        return
    tb = Fraction(seg.time_base)
    rank = {p: seg.start + i for i, p in enumerate(seg.frame_pts)}
    start_pts, last_pts = seg.frame_pts[0], seg.frame_pts[-1]
    for seek in [*seg.seek_dts, None]:  # None: from the start of the file
        expected = seg.start
        for f in _frames_from(seg.uri, seek, threads):
            if f.pts is None or f.pts < start_pts:
                continue
            if f.pts > last_pts:
                break
            if expected == seg.start and f.pts != start_pts:
                break  # the decoder started after our first frame: seek further back
            i = rank.get(f.pts)
            if i is None:
                raise DataError(seg.uri, f"decoded a frame with pts {f.pts} that the probe did not index")
            if i != expected:
                raise DataError(seg.uri, f"frames {expected}..{i - 1} missing in segment {seg.name}")
            expected = i + 1
            if keep is None or i in keep:
                yield i, float((f.pts - seg.first_pts) * tb), f
                if keep is not None and i == seg.keep[-1]:
                    return  # nothing further to yield in this segment
        if expected > seg.start:
            if expected != seg.end:
                raise DataError(seg.uri, f"frames {expected}..{seg.end - 1} missing (truncated?) in segment {seg.name}")
            return
        log.debug("%s segment %s: seek to %s missed the first frame, retrying", seg.uri, seg.name, seek)
    raise DataError(seg.uri, f"segment {seg.name}: first frame (pts {start_pts}) never decoded")


def decode_segment(
    segment: Segment,
    width: int | None = None,
    height: int | None = None,
    pixel_format: str = "rgb24",
    threads: int = 1,
) -> Iterator[Frame]:
    """The segment's frames as `Frame`s (RGB HxWx3 uint8), resized keeping aspect when asked."""
    size = output_size(segment.width, segment.height, width, height) if (width or height) else None
    for i, t, f in iter_segment(segment, threads):
        yield Frame(segment.video_id, i, t, _to_image(f, size, pixel_format))


def decode_sequential(
    uri: str, video_id: str | None = None, pixel_format: str = "rgb24", keep: set[int] | None = None
) -> Iterator[Frame]:
    """Reference: one decode from the start, frames numbered in output order (only the `keep`
    indices converted and yielded, when given)."""
    from playerseg.video.probe import video_id_for

    vid = video_id or video_id_for(uri)
    first = None
    for i, f in enumerate(_frames_from(uri, None, 1)):
        first = f.time if first is None else first
        if keep is None or i in keep:
            t = float(f.time - first) if f.time is not None else 0.0
            yield Frame(vid, i, t, f.to_ndarray(format=pixel_format))
