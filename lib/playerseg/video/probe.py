"""Probe a video without decoding it: size, rate, time base, the presentation timestamp of every
frame and the keyframes (packets are demuxed, not decoded, so this is cheap).

The frame index of a frame is the rank of its pts among the pts of all frames a sequential decode
outputs (packets the container marks as discarded, e.g. before an mp4 edit list, are left out).
This is exact for constant and variable frame rate alike. When a container gives no usable
timestamps (missing or repeated pts), `exact` is False and the video is read as one sequential
segment.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Iterator

import av
import fsspec

from playerseg.data.errors import DataError
from playerseg.io import is_local

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv")


@dataclass
class VideoInfo:
    uri: str
    video_id: str
    width: int
    height: int
    fps: float  # average rate: the rate renders are written at
    rate: str  # the same as a fraction, e.g. "30000/1001"
    time_base: str  # e.g. "1/30000"
    codec: str
    exact: bool  # frame_pts is a trustworthy index of the frames a sequential decode outputs
    frame_pts: list[int] = field(default_factory=list)  # sorted pts of the displayed frames
    keyframes: list[tuple[int, int]] = field(default_factory=list)  # (pts, dts), decode order
    frame_count: int = 0
    fingerprint: dict = field(default_factory=dict)  # content of the file probed (`playerseg.io.fingerprint`)

    def pts_seconds(self, pts: int) -> float:
        """Seconds since the first displayed frame."""
        return float((pts - self.frame_pts[0]) * Fraction(self.time_base)) if self.frame_pts else 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "VideoInfo":
        d = dict(d)
        d["keyframes"] = [tuple(k) for k in d.get("keyframes", [])]
        return cls(**d)


def video_id_for(uri: str) -> str:
    """The file stem: `s3://b/match_01.mp4` -> `match_01` (runs name inputs by `video.frames.input_ids`)."""
    return PurePosixPath(str(uri).split("://", 1)[-1]).stem


@contextlib.contextmanager
def open_video(uri: str) -> Iterator[av.container.InputContainer]:
    """PyAV container for a local path or any fsspec URI; errors become DataError naming the file."""
    f = None
    try:
        if is_local(uri):
            container = av.open(uri.removeprefix("file://"), "r")
        else:
            f = fsspec.open(uri, "rb").open()
            container = av.open(f, "r")
    except (av.FFmpegError, OSError, ValueError) as e:
        if f is not None:
            f.close()
        raise DataError(uri, f"cannot open as video: {e}") from None
    try:
        if not container.streams.video:
            raise DataError(uri, "no video stream")
        yield container
    finally:
        container.close()
        if f is not None:
            f.close()


def probe(uri: str, video_id: str | None = None) -> VideoInfo:
    """Demux every packet of the first video stream (no decoding) and index the frames."""
    with open_video(uri) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        rate = s.average_rate or s.guessed_rate or s.base_rate
        tb = s.time_base
        if not rate or not cc.width or not cc.height:
            raise DataError(uri, "video stream without frame rate or size")
        from playerseg.data.reader import max_image_pixels

        if cc.width * cc.height > max_image_pixels():
            raise DataError(uri, f"frames of {cc.width}x{cc.height} pixels are over the limit of {max_image_pixels()} "
                            "(PLAYERSEG_MAX_IMAGE_PIXELS); not decoded")
        if tb is None:
            raise DataError(uri, "video stream without time base")
        pts: list[int] = []
        keyframes: list[tuple[int, int]] = []
        exact = True
        packets = 0  # every frame packet, those an edit list discards too (what the sample table counts)
        try:
            for p in c.demux(s):
                if p.size == 0:
                    continue
                packets += 1
                if p.pts is None:
                    exact = False
                    pts.append(len(pts))
                    continue
                if p.is_keyframe:
                    keyframes.append((int(p.pts), int(p.dts if p.dts is not None else p.pts)))
                if not p.is_discard:
                    pts.append(int(p.pts))
        except av.FFmpegError as e:
            raise DataError(uri, f"unreadable while demuxing: {e}") from None
        if not pts:
            raise DataError(uri, "no video frames")
        declared, got = (int(s.frames), packets) if s.frames else (_declared_frames(s, rate), len(pts))
        if declared and declared - got > max(2, declared // 100):
            raise DataError(uri, f"truncated: the container declares {declared} frames, {got} are readable")
        sorted_pts = sorted(pts)
        if len(set(sorted_pts)) != len(sorted_pts) or not keyframes:
            exact = False
        return VideoInfo(
            uri=str(uri),
            video_id=video_id or video_id_for(uri),
            width=int(cc.width),
            height=int(cc.height),
            fps=float(rate),
            rate=f"{rate.numerator}/{rate.denominator}",
            time_base=f"{tb.numerator}/{tb.denominator}",
            codec=cc.name,
            exact=exact,
            frame_pts=sorted_pts if exact else [],
            keyframes=keyframes if exact else [],
            frame_count=len(sorted_pts),
        )


def _declared_frames(stream, rate) -> int:
    """Frames the container's duration says the stream has (duration x rate; 0 unknown)."""
    if stream.duration and stream.time_base and rate:
        return int(round(float(stream.duration * stream.time_base * rate)))
    return 0


def load_or_probe(uri: str, video_id: str, cache: str | None) -> VideoInfo:
    """The cached probe at `cache` (json) when it is of the same uri, id and content (fingerprint),
    else probe and save it."""
    from playerseg.io import exists, fingerprint, read_json, write_json_atomic

    now = fingerprint(uri)
    if cache and exists(cache):
        with contextlib.suppress(Exception):
            info = VideoInfo.from_json(read_json(cache))
            if info.uri == str(uri) and info.video_id == video_id and info.fingerprint == now:
                return info
    info = probe(uri, video_id)
    info.fingerprint = now
    if cache:
        write_json_atomic(cache, info.to_json())
    return info
