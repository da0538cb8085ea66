"""`playerseg demo`: the whole pipeline on a fresh machine, no cluster needed, in a few minutes.

    playerseg demo                                   # first 2 s of each sample clip at 10 frames/s
    playerseg demo --whole                           # the whole clips, every frame
    playerseg demo --seconds 10 --out outputs/demo10
    playerseg demo --model models/unet_effl0_acme --out outputs/demo
    playerseg demo --train-epochs 4                  # always train the small model first

1. starts local Ray (or joins `--address`);
2. inputs: the sample clips in `../shared/data/videos` when present, else a synthetic clip it
   generates (synthetic scenes: for trying the machinery, not for judging accuracy); the first
   `--seconds` of each at `--fps` frames per second (the overlay video plays at that rate; `--whole`:
   every frame of the whole clips);
3. model: `--model` when given, else the committed model (`playerseg.models.DEFAULT_MODEL`) when
   present, else it trains a small Unet for a few minutes with `playerseg train unet` (Acme frames
   when present, else a synthetic set);
4. `playerseg infer` over the inputs, then `playerseg render` of each video's overlay;
5. per clip a contact sheet PNG beside the overlay mp4, and `<out>/index.html` (open it from disk:
   sheets, players per frame over time, frames with players over LED boards, failures);
6. prints where every output is and a summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from playerseg.config import add_config_arguments, load
from playerseg.infer.pipeline import InferConfig
from playerseg.io import shared_data_dir

log = logging.getLogger(__name__)
UNIT_SECONDS = 1.0  # inference / render work unit in the demo: first results after a few seconds of video
DEMO_FPS = 10.0  # frames per second of the quick look: 20 frames per clip, 1/2.5 to 1/6 of the 25-60 fps clips
TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "unet_acme.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="videos / folders (default: ../shared/data/videos, else synthetic)")
    p.add_argument("--model", help="a trained model / checkpoint / run folder (default: committed model, else train)")
    p.add_argument("--out", "--output", dest="output", default="outputs/demo",
                   help="where everything goes (default outputs/demo)")
    p.add_argument("--seconds", type=float, default=2.0, help="the first this many seconds of each clip (default 2)")
    p.add_argument("--fps", type=float, default=DEMO_FPS, dest="demo_fps",
                   help=f"frames per second of the quick look (default {DEMO_FPS:g}; ignored with --whole)")
    p.add_argument("--whole", action="store_true", help="every frame of the whole clips (15+ minutes on 2 CPUs)")
    p.add_argument("--train-epochs", type=int, default=0,
                   help="train the small model for this many epochs even if a model exists (default 4 when training)")
    p.add_argument("--address", help="Ray cluster address (default: local Ray)")
    add_config_arguments(p, InferConfig)


def demo_inputs(inputs: list[str], out: Path) -> tuple[list[str], str]:
    """(videos, where they come from): given, the shared sample clips, or a synthetic clip."""
    if inputs:
        return list(inputs), "given"
    videos = sorted((shared_data_dir() / "videos").glob("*.mp4"))
    if videos:
        return [str(v) for v in videos], f"sample clips in {shared_data_dir() / 'videos'}"
    from playerseg.data.synthetic import generate

    clip = generate(str(out / "synthetic_clip"), num_frames=75, size=(640, 360), fps=25, seed=7)["video"]
    return [clip], "a synthetic clip (no sample clips found)"


def train_small(out: Path, epochs: int) -> str:
    """Train a small Unet with the training job (a few minutes on 2 CPUs); returns the model folder."""
    from playerseg.train.config import TrainConfig
    from playerseg.train.trainer import train

    acme = shared_data_dir() / "acme-football-semseg"
    if acme.is_dir():
        data = [f"data.root={acme}"]
    else:
        from playerseg.data.synthetic import generate

        generate(str(out / "synthetic_train"), num_frames=60, size=(640, 360), fps=25, seed=1)
        data = [f"data.root={out / 'synthetic_train'}", "input.scale=1.0"]
    overrides = data + [f"run.epochs={epochs}", "run.samples_per_epoch=48", "run.batch_size=8",
                        "val.every=1000", "val.overlays=1", "run.max_val_images=6", f"run.out_dir={out / 'runs'}",
                        "run.name=demo_unet", f"export.dir={out / 'model'}", "export.formats=[safetensors]"]
    cfg = load(TrainConfig, TRAIN_CONFIG if TRAIN_CONFIG.is_file() else None, overrides)
    print(f"training a small model ({epochs} epochs of {cfg.run.samples_per_epoch} crops) on {cfg.data.root} ...")
    result = train(cfg)
    print(f"trained in {result['seconds'] / 60:.1f} min: {result['run_dir']}")
    return str(out / "model")


def pick_model(args, out: Path) -> tuple[str, str]:
    from playerseg.models import DEFAULT_MODEL

    if args.model and not args.train_epochs:
        return args.model, "given"
    if DEFAULT_MODEL.is_dir() and not args.train_epochs:
        return str(DEFAULT_MODEL), "the committed model"
    return train_small(out, args.train_epochs or 4), "trained just now (small, few minutes)"


def run(args) -> int:
    from playerseg.config import ConfigError, require_path
    from playerseg.demo_page import clip_report, write_index
    from playerseg.infer.infer_cmd import print_summary
    from playerseg.infer.pipeline import run_inference
    from playerseg.video.frames import video_ids
    from playerseg.video.render import RenderConfig, run_render
    from playerseg.ray_cluster import init_ray

    t0 = time.time()
    if not args.whole and args.seconds <= 0:
        raise ConfigError(f"--seconds {args.seconds}: must be more than 0 (or --whole for the whole clips)")
    if not args.whole and args.demo_fps <= 0:
        raise ConfigError(f"--fps {args.demo_fps}: must be more than 0 (or --whole for every frame)")
    for item in args.inputs:
        require_path(item, "input", "give videos or folders of videos")
    if args.model:
        require_path(args.model, "model", "check --model (a model folder, checkpoint or run folder)")
    end = None if args.whole else args.seconds
    keep_fps = None if args.whole else args.demo_fps
    span = "whole clips" if end is None else f"first {end:g} s of each at {keep_fps:g} frames/s"
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    init_ray(args.address)
    videos, source = demo_inputs(args.inputs, out)
    model, model_source = pick_model(args, out)
    print(f"demo: {len(videos)} video(s) ({source}), {span}; model {model} ({model_source})", flush=True)
    # short units: progress every few seconds of video, and the clips spread over the model actors
    cfg = load(InferConfig, args.config, args.overrides, base={"model": model, "inputs": videos, "output": str(out / "infer"),
                                                             "end": end, "fps": keep_fps, "segment_seconds": UNIT_SECONDS})
    summary = run_inference(cfg, overwrite=True)
    renders, clips, render_failures = [], [], []
    ids = video_ids(videos)
    for video in videos:
        vid = ids[video]
        target = out / "render" / f"{vid.replace('/', '__')}_overlay.mp4"
        try:
            run_render(RenderConfig(source=video, predictions=summary["predictions"], out=str(target),
                                    video_id=vid, labels=True, end=end, keep_fps=keep_fps,
                                    segment_seconds=UNIT_SECONDS))
            renders.append(str(target))
            clips.append(clip_report(str(out), vid, str(target.relative_to(out)), summary["predictions"],
                                     summary["frames"]))
        except Exception as e:  # a render failure is reported; the inference outputs stand
            render_failures.append(f"{video}: {e}")
    failures = [f"{f['what']}: {f['error']}" for f in summary["failures"]] + [f"render {f}" for f in render_failures]
    page = write_index(str(out), clips, failures, {
        "inputs": f"{len(videos)} video(s), {source}", "model": f"{model} ({model_source})",
        "frames": f"{summary['frames_written']} ({span})",
        "inference": f"{summary['wall_seconds']} s, {summary['frames_per_second']} frames/s",
        "total": f"{time.time() - t0:.0f} s"})
    print("\n=== playerseg demo ===")
    print(f"inputs : {len(videos)} video(s), {source}, {span}" + ("" if end is None else " (--whole: every frame)"))
    print(f"model  : {model} ({model_source})")
    print_summary(summary)
    for r, c in zip(renders, clips):
        print(f"  overlay     : {r}")
        if c.sheet:
            print(f"  sheet       : {out / c.sheet}")
    for f in render_failures:
        print(f"  render FAILED: {f}")
    print(f"  page        : {page}   <- open this")
    print(f"total {time.time() - t0:.0f} s; Ray logs: /tmp/ray/session_latest/logs")
    (out / "demo.json").write_text(json.dumps({"inputs": videos, "model": model, "renders": renders,
                                               "page": page, "summary": summary}, indent=2, default=str))
    return 1 if summary["failures"] or render_failures else 0
