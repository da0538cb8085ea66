"""`playerseg synth`: write a synthetic broadcast set (for tests and scale benchmarks only).

    playerseg synth --out outputs/synth --frames 100 --width 1280 --height 720 --fps 25 --seed 0

Writes images/, masks/ + classes.json (read by the `acme` reader), annotations.json (COCO, read
by the `coco` reader) and video.mp4. Synthetic scenes are never a stand-in for real results.
"""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (local path or fsspec URI)")
    parser.add_argument("--frames", type=int, default=50, help="number of frames")
    parser.add_argument("--width", type=int, default=640, help="frame width in pixels (even)")
    parser.add_argument("--height", type=int, default=360, help="frame height in pixels (even)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of video.mp4")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (same seed, same bytes)")
    parser.add_argument("--people", type=int, default=22, help="people on the pitch (incl. a referee)")


def run(args: argparse.Namespace) -> int:
    from playerseg.config import ConfigError
    from playerseg.data.synthetic import generate

    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be at least 1")
    if args.width % 2 or args.height % 2 or args.width < 2 or args.height < 2:
        raise ConfigError(f"--width and --height must be even (H.264), got {args.width}x{args.height}")
    paths = generate(args.out, args.frames, (args.width, args.height), args.fps, args.seed, args.people)
    for name, path in paths.items():
        log.info("%s: %s", name, path)
    return 0
