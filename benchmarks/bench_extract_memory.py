"""Peak memory of one extraction worker on a 1080p clip: bounded by the segment, not the video.

A 1080p clip is made from the first seconds of a real clip (upscaled, H.264), and a 4x longer one
by joining copies of it (no re-encoding). Each measurement runs in a fresh process (peak RSS =
ru_maxrss): one segment of `--segment-seconds` is extracted (JPEG files, and Parquet rows, which
buffer the segment's encoded images), and, for contrast, all frames of the video decoded into a
list (what "one process holds the whole video" costs).

    .venv/bin/python benchmarks/bench_extract_memory.py [--seconds 4] [--segment-seconds 2]
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from playerseg.io import shared_data_dir  # noqa: E402

CHILD = r"""
import resource, sys
from playerseg.video import probe, plan_segments, decode_segment
from playerseg.video.extract import ExtractConfig, extract_segment
uri, mode, seg_s, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
info = probe(uri)
if mode == "whole":
    frames = [f.image for s in plan_segments(info, segment_frames=info.frame_count) for f in decode_segment(s)]
    n = len(frames)
else:
    segs = plan_segments(info, seg_s)
    seg = segs[len(segs) // 2]
    n = extract_segment(seg, ExtractConfig(out=out, output=mode, segment_seconds=seg_s))["frames"]
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def make_clips(tmp: str, seconds: float) -> tuple[str, str]:
    from playerseg.video import decode_segment, plan_segments, probe
    from playerseg.video.encode import concat, encode_frames

    src = sorted(glob.glob(str(shared_data_dir() / "videos" / "laliga_720p.mp4")))
    if not src:
        raise SystemExit("needs ../shared/data/videos/laliga_720p.mp4")
    info = probe(src[0])
    n = int(seconds * info.fps)
    seg = plan_segments(info, segment_frames=info.frame_count)[0]
    frames = (f.image for f, _ in zip(decode_segment(seg, width=1920, height=1080), range(n)))
    short = f"{tmp}/short_1080p.mp4"
    encode_frames(frames, short, info.rate, crf=23, preset="ultrafast")
    long = f"{tmp}/long_1080p.mp4"
    concat([short] * 4, long)
    return short, long


def peak(uri: str, mode: str, seg_s: float, out: str) -> tuple[int, int]:
    r = subprocess.run([sys.executable, "-c", CHILD, uri, mode, str(seg_s), out], check=True,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "lib")})
    n, mib = r.stdout.split()[-2:]
    return int(n), int(mib)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the short 1080p clip")
    ap.add_argument("--segment-seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        short, long = make_clips(tmp, args.seconds)
        rows = []
        for mode in ("files", "parquet", "whole"):
            for name, uri in (("short", short), ("long x4", long)):
                n, mib = peak(uri, mode, args.segment_seconds, f"{tmp}/out-{mode}-{name[:4]}")
                rows.append((mode, name, n, mib))
        print(f"{'mode':<8} {'video':<8} {'frames':>6} {'peak RSS MiB':>13}")
        for r in rows:
            print(f"{r[0]:<8} {r[1]:<8} {r[2]:>6} {r[3]:>13}")
        by = {(m, v): mib for m, v, _, mib in rows}
        for mode in ("files", "parquet", "whole"):
            print(f"{mode}: peak long/short = {by[(mode, 'long x4')] / by[(mode, 'short')]:.2f}x (video 4x longer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
