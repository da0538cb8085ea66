"""Extraction throughput (frames/s), measured side by side in one run on the same clips:

  ours     `playerseg extract` (Ray, segments in parallel, JPEG via OpenCV), Ray already up
  ffmpeg   the ffmpeg command line decoding the clip to JPEG files (skipped if not installed)
  cv2      a plain single-process cv2.VideoCapture + cv2.imwrite loop

    .venv/bin/python benchmarks/bench_extract.py [videos...] [--repeat 3] [--quality 90]

Printed: best-of-N wall time and frames/s per method and clip, the ratios ours/ffmpeg and
ours/cv2 over all clips, and bytes per frame (JPEG settings differ by tool: ffmpeg -q:v is chosen
to give about the same file size as OpenCV's quality). The machine may be shared: repeat, and
read ratios (measured minutes apart at worst) rather than absolute numbers.

Scaling model: a segment is the unit of work (one task, ~1 CPU, decode from the keyframe before
it), so for W workers and a video of F frames in segments of S frames, wall ~= probe (demux only,
one pass) + ceil(F/S / W) * t_segment, t_segment = (S + g) * (t_decode + t_jpeg) with g the mean
frames decoded before the segment start (0 when boundaries snap to keyframes, up to a GOP).
Throughput grows linearly with W until F/S < W (then use shorter segments) or storage bandwidth
limits; the ffmpeg CLI is one process per video and does not spread one video across machines.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from playerseg.io import shared_data_dir  # noqa: E402
from playerseg.video.probe import probe  # noqa: E402


def count_files(folder: str) -> tuple[int, int]:
    files = glob.glob(f"{folder}/**/*.jpg", recursive=True)
    return len(files), sum(os.path.getsize(f) for f in files)


def bench_ffmpeg(clip: str, out: str, qscale: int) -> float:
    os.makedirs(out, exist_ok=True)
    t = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", clip, "-q:v", str(qscale), "-vsync", "0",
                    f"{out}/%06d.jpg"], check=True)
    return time.perf_counter() - t


def bench_cv2(clip: str, out: str, quality: int) -> float:
    os.makedirs(out, exist_ok=True)
    t = time.perf_counter()
    cap = cv2.VideoCapture(clip)
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(f"{out}/{i:06d}.jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        i += 1
    cap.release()
    return time.perf_counter() - t


def bench_ours(clip: str, out: str, quality: int, segment_seconds: float, num_cpus: float, threads: int) -> float:
    from playerseg.video.extract import ExtractConfig, run_extract

    t = time.perf_counter()
    run_extract(ExtractConfig(inputs=[clip], out=out, quality=quality, segment_seconds=segment_seconds, num_cpus=num_cpus,
                              decode_threads=threads))
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quality", type=int, default=90, help="OpenCV JPEG quality (ours and cv2)")
    ap.add_argument("--qscale", type=int, default=2, help="ffmpeg -q:v (2: about the bytes of --quality 90)")
    ap.add_argument("--segment-seconds", type=float, default=5.0)
    ap.add_argument("--num-cpus", type=float, default=1.0)
    ap.add_argument("--decode-threads", type=int, default=1, help="FFmpeg threads per segment task")
    args = ap.parse_args()
    videos = args.videos or sorted(glob.glob(str(shared_data_dir() / "videos" / "*.mp4")))
    if not videos:
        print("no videos (pass some, or provide ../shared/data/videos)")
        return 1
    has_ffmpeg = shutil.which("ffmpeg") is not None
    if not has_ffmpeg:
        print("ffmpeg CLI not found: skipping the ffmpeg comparison (apt-get install ffmpeg)")
    import ray

    logging.basicConfig(level=logging.WARNING)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    from playerseg.video import extract
    from playerseg.video.extract import ExtractConfig, run_extract

    extract.print = lambda *a, **k: None  # the job's summary table, once per run: not wanted here
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: Ray workers and imports
        run_extract(ExtractConfig(inputs=[videos[0]], out=f"{tmp}/warm", end=0.5, segment_seconds=0.2))
    methods = ["ours", "cv2"] + (["ffmpeg"] if has_ffmpeg else [])
    best = {m: {} for m in methods}
    size = {m: {} for m in methods}
    frames = {}
    for r in range(args.repeat):
        for clip in videos:
            frames[clip] = probe(clip).frame_count
            for m in methods:  # interleaved, so load changes hit every method alike
                with tempfile.TemporaryDirectory() as tmp:
                    out = f"{tmp}/{m}"
                    if m == "ours":
                        dt = bench_ours(clip, out, args.quality, args.segment_seconds, args.num_cpus, args.decode_threads)
                    elif m == "cv2":
                        dt = bench_cv2(clip, out, args.quality)
                    else:
                        dt = bench_ffmpeg(clip, out, args.qscale)
                    n, nbytes = count_files(out)
                    if n != frames[clip]:
                        print(f"WARNING {m} wrote {n} frames of {frames[clip]} for {clip}")
                    best[m][clip] = min(best[m].get(clip, float("inf")), dt)
                    size[m][clip] = nbytes / max(n, 1)
    print(f"\n{'clip':<28} {'frames':>6} " + " ".join(f"{m + ' fps':>12}" for m in methods) + "   bytes/frame " + "/".join(methods))
    for clip in videos:
        name = os.path.basename(clip)
        fps = " ".join(f"{frames[clip] / best[m][clip]:>12.1f}" for m in methods)
        print(f"{name:<28} {frames[clip]:>6} {fps}   " + "/".join(f"{size[m][clip] / 1000:.0f}k" for m in methods))
    total = sum(frames.values())
    agg = {m: total / sum(best[m].values()) for m in methods}
    print("all clips: " + ", ".join(f"{m} {agg[m]:.1f} frames/s" for m in methods))
    print(f"ratio ours/cv2 = {agg['ours'] / agg['cv2']:.2f}x")
    if has_ffmpeg:
        print(f"ratio ours/ffmpeg = {agg['ours'] / agg['ffmpeg']:.2f}x (target >= 1.0x)")
    print(f"best of {args.repeat} interleaved runs on {os.cpu_count()} CPUs (shared machine: load varies)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
