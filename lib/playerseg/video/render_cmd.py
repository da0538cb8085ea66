"""`playerseg render`: the command line of `playerseg.video.render` (an overlay mp4).

    playerseg render ../shared/data/videos/bundesliga_478p.mp4 --out outputs/bundesliga.mp4 --end 4
    playerseg render ../shared/data/videos/bundesliga_478p.mp4 --predictions outputs/infer/predictions --out outputs/bundesliga_overlay.mp4 --labels
    playerseg render outputs/frames/bundesliga_478p --predictions outputs/infer/predictions --ground-truth gt.parquet --mode side-by-side --out outputs/side.mp4

Without `--predictions` the source is segmented first (`playerseg infer`, with `--model` or the
committed model) into `<out stem>_infer/` beside the output, and that is drawn.
"""
from __future__ import annotations

import argparse
import os

from playerseg import config as cfgmod
from playerseg.video.render import RenderConfig, run_render


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="video, folder of extracted images, or frames Parquet")
    p.add_argument("--out", help="output .mp4")
    p.add_argument("--predictions", help="prediction Parquet (file or folder, e.g. the predictions/ of "
                   "`playerseg infer`); default: segment the source first")
    p.add_argument("--model", help="model that segments the source when no --predictions are given "
                   "(default: the committed model)")
    p.add_argument("--ground-truth", help="ground-truth Parquet, same schema (third panel)")
    p.add_argument("--video-id", help="which video of the Parquet files")
    p.add_argument("--mode", choices=["overlay", "side-by-side"])
    p.add_argument("--color-by", choices=["team", "instance"])
    p.add_argument("--labels", action="store_true", default=None, help="draw class/id/score labels")
    p.add_argument("--no-track-ids", dest="track_ids", action="store_false", default=None,
                   help="do not draw #track_id above tracked players")
    p.add_argument("--fps", type=float, help="output fps (default: the source's)")
    p.add_argument("--keep-fps", type=float,
                   help="draw at most this many frames per second: the frames `infer --set fps=X` kept")
    p.add_argument("--start", type=float, help="video source: start at this time (seconds)")
    p.add_argument("--end", type=float, help="video source: stop before this time (seconds)")
    p.add_argument("--segment-seconds", type=float)
    p.add_argument("--num-cpus", type=float, help="CPUs per segment task")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--address", help="Ray cluster address (default: local Ray)")
    cfgmod.add_config_arguments(p, RenderConfig)


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    return cfgmod.from_args(RenderConfig, args)


def check_config(cfg: RenderConfig) -> None:
    """What can be named before Ray starts (ConfigError): source, output, predictions."""
    if not cfg.source:
        raise cfgmod.ConfigError("no source: give a video, a folder of extracted images or frames Parquet")
    cfgmod.require_path(cfg.source, "source", "give a video, a folder of extracted images or frames Parquet")
    if not cfg.out or not cfg.out.endswith(".mp4"):
        raise cfgmod.ConfigError(f"--out {cfg.out or '(none)'}: give the output video, e.g. --out overlay.mp4")
    for what in ("predictions", "ground_truth"):
        if getattr(cfg, what):
            cfgmod.require_path(getattr(cfg, what), f"--{what.replace('_', '-')}", "give Parquet (a file or folder)")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_config(cfg)
    if not cfg.predictions:  # segment the source first, with the named or the committed model
        from playerseg.infer.infer_cmd import print_summary
        from playerseg.infer.pipeline import InferConfig, run_inference
        from playerseg.models import model_or_default
        from playerseg.ray_cluster import init_ray

        model = model_or_default(args.model)
        out = f"{os.path.splitext(cfg.out)[0]}_infer"
        print(f"no --predictions: segmenting {cfg.source} into {out} first", flush=True)
        init_ray(cfg.address)
        summary = run_inference(InferConfig(model=model, inputs=[cfg.source], output=out, start=cfg.start,
                                            end=cfg.end, fps=cfg.keep_fps))
        print_summary(summary)
        if summary["failures"]:
            return 1
        cfg.predictions = summary["predictions"]
    run_render(cfg)
    return 0
