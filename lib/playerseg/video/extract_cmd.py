"""`playerseg extract`: the command line of `playerseg.video.extract` (frames as files or Parquet rows).

    playerseg extract ../shared/data/videos --out outputs/frames --every 5
    playerseg extract ../shared/data/videos/laliga_720p.mp4 --out outputs/frames_pq --start 2 --end 6 --width 640 --parquet
    playerseg extract s3://archive/2024/*.mp4 --out s3://frames/2024 --fps 5 --height 720
"""
from __future__ import annotations

import argparse

from playerseg import config as cfgmod
from playerseg.video.extract import ExtractConfig, run_extract


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
    p.add_argument("--overwrite", action="store_true", help="discard existing outputs and start over")
    cfgmod.add_config_arguments(p, ExtractConfig)


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    return cfgmod.from_args(ExtractConfig, args)


def run(args: argparse.Namespace) -> int:
    summary = run_extract(config_from_args(args), overwrite=args.overwrite)
    return 1 if summary["failures"] else 0
