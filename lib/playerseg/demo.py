"""`playerseg demo`: the whole pipeline on a fresh machine, no cluster needed.

    playerseg demo                                   # sample clips + committed model (or a quick one)
    playerseg demo --model runs/unet/best --output outputs/demo
    playerseg demo --train-epochs 4                  # always train the small model first

1. starts local Ray (or joins `--address`);
2. inputs: the sample clips in `../shared/data/videos` when present, else a synthetic clip it
   generates (synthetic scenes: for trying the machinery, not for judging accuracy);
3. model: `--model` when given, else the committed `models/unet_effl0_acme` when present, else it
   trains a small Unet for a few minutes with `playerseg train unet` (Acme frames when present,
   else a synthetic set);
4. `playerseg infer` over the inputs, then `playerseg render` of each video's overlay;
5. prints where every output is and a summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from playerseg.config import add_config_arguments, from_args
from playerseg.infer.pipeline import InferConfig
from playerseg.io import shared_data_dir

log = logging.getLogger(__name__)
COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / "unet_effl0_acme"
TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "unet_acme.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="videos / folders (default: ../shared/data/videos, else synthetic)")
    p.add_argument("--model", help="a trained model / checkpoint / run folder (default: committed model, else train)")
    p.add_argument("--output", default="outputs/demo", help="where everything goes (default outputs/demo)")
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
    from playerseg.config import load
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
    if args.model and not args.train_epochs:
        return args.model, "given"
    if COMMITTED_MODEL.is_dir() and not args.train_epochs:
        return str(COMMITTED_MODEL), "the committed model"
    return train_small(out, args.train_epochs or 4), "trained just now (small, few minutes)"


def run(args) -> int:
    from playerseg.infer.infer_cmd import print_summary
    from playerseg.infer.pipeline import run_inference
    from playerseg.video.render import RenderConfig, run_render
    from playerseg.video.source import init_ray

    t0 = time.time()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    init_ray(args.address)
    videos, source = demo_inputs(args.inputs, out)
    model, model_source = pick_model(args, out)
    cfg = from_args(InferConfig, args, base={"model": model, "inputs": videos, "output": str(out / "infer")})
    summary = run_inference(cfg, overwrite=True)
    renders, render_failures = [], []
    for video in videos:
        target = out / "render" / f"{Path(video).stem}_overlay.mp4"
        try:
            run_render(RenderConfig(source=video, predictions=summary["predictions"], out=str(target),
                                    video_id=Path(video).stem, labels=True))
            renders.append(str(target))
        except Exception as e:  # a render failure is reported; the inference outputs stand
            render_failures.append(f"{video}: {e}")
    print("\n=== playerseg demo ===")
    print(f"inputs : {len(videos)} video(s), {source}")
    print(f"model  : {model} ({model_source})")
    print_summary(summary)
    for r in renders:
        print(f"  overlay     : {r}")
    for f in render_failures:
        print(f"  render FAILED: {f}")
    print(f"total {time.time() - t0:.0f} s; Ray dashboard/logs: `ray status`, /tmp/ray/session_latest/logs")
    (out / "demo.json").write_text(json.dumps({"inputs": videos, "model": model, "renders": renders,
                                               "summary": summary}, indent=2, default=str))
    return 1 if summary["failures"] or render_failures else 0
