"""A small synthetic clip for the tests: a moving pattern with the frame number drawn,
H.264 with short GOPs and B-frames (so segments start mid-GOP and frames are reordered), optionally
with irregular (variable-rate) timestamps."""
from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np


def clip_frame(i: int, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([(xx * 3 + i * 7) % 256, (yy * 5 + i * 3) % 256, ((xx + yy) * 2 + i * 11) % 256], -1).astype(np.uint8)
    cv2.rectangle(img, ((i * 5) % width, height // 3), ((i * 5) % width + 12, height // 3 + 12), (255, 255, 255), -1)
    cv2.putText(img, str(i), (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return img


def write_test_clip(path: str, frames: int = 48, width: int = 96, height: int = 64, fps: int = 25,
                    gop: int = 8, bframes: int = 2, vfr: bool = False) -> str:
    """Write the clip to `path` (mp4, H.264 yuv420p); returns `path`."""
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        if vfr:
            s.codec_context.time_base = Fraction(1, 1000)
        s.codec_context.gop_size = gop
        s.codec_context.max_b_frames = bframes
        s.options = {"g": str(gop), "sc_threshold": "0", "bf": str(bframes), "preset": "ultrafast" if not bframes else "fast"}
        t = 0
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(clip_frame(i, width, height), format="rgb24")
            f.pts = t if vfr else i
            f.time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
            t += (1000 // fps) + (7 if i % 3 == 0 else -3) if vfr else 1
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return str(path)
