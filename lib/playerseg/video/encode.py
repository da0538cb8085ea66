"""H.264 segments and their concatenation without re-encoding (PyAV remux).

Segments are encoded independently (each starts with a keyframe, no B-frames so pts == dts and
timestamps never step back at a join) with the same settings, hence the same SPS/PPS: joining
them is copying packets with shifted timestamps into one mp4.
"""
from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import Iterable

import av
import numpy as np

from playerseg.io import atomic_path


def as_rate(fps: float | str | Fraction) -> Fraction:
    """30000/1001 stays exact; 29.97 becomes 30000/1001; 25.0 becomes 25."""
    if isinstance(fps, Fraction):
        return fps
    if isinstance(fps, str):
        return Fraction(fps)
    for den in (1, 1001):
        num = round(fps * den)
        if abs(num / den - fps) < 1e-4:
            return Fraction(num, den)
    return Fraction(fps).limit_denominator(1001)


def encode_frames(
    frames: Iterable[np.ndarray],
    path: str,
    fps: float | str | Fraction,
    crf: int = 20,
    preset: str = "veryfast",
    threads: int = 1,
) -> int:
    """Write RGB HxWx3 uint8 frames (even sizes) to an H.264 mp4 at `fps`; returns the count.
    Written under a temporary name, renamed when complete."""
    rate = as_rate(fps)
    n = 0
    with atomic_path(path) as tmp, av.open(tmp, "w", format="mp4") as out:
        stream = None
        for img in frames:
            if stream is None:
                h, w = img.shape[:2]
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.time_base = 1 / rate
                stream.codec_context.max_b_frames = 0
                stream.codec_context.thread_count = threads
                stream.options = {"crf": str(crf), "preset": preset, "bf": "0"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode(None):
                out.mux(packet)
    return n


def concat(paths: list[str], out_path: str) -> int:
    """Join mp4 segments (same codec settings) into `out_path` by remuxing; returns packets."""
    n = 0
    with atomic_path(out_path) as tmp, av.open(tmp, "w", format="mp4") as out:
        ostream = None
        offset = Fraction(0)  # seconds already written
        for p in paths:
            with av.open(p) as src:
                s = src.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(s)
                tb = s.time_base
                shift = round(offset / tb)
                end = offset
                for packet in src.demux(s):
                    if packet.dts is None:
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    end = max(end, (packet.pts + (packet.duration or 0)) * tb)
                    packet.stream = ostream
                    out.mux(packet)
                    n += 1
                offset = end
    return n


def video_stats(path: str) -> dict:
    """frames (decoded), fps, width, height, codec of an encoded video (for tests and checks)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(s))
        return {"frames": frames, "fps": float(s.average_rate), "width": s.codec_context.width,
                "height": s.codec_context.height, "codec": s.codec_context.name}


def remove_quietly(paths: Iterable[str]) -> None:
    from playerseg.io import filesystem

    for p in paths:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs, fp = filesystem(p)
            fs.rm(fp)
