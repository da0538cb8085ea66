"""`playerseg infer`: segment players and LED boards in videos / frame folders / Parquet, on Ray.

    playerseg infer ../shared/data/videos --out outputs/infer            # the committed model
    playerseg infer ../shared/data/videos/laliga_720p.mp4 --end 5 --out outputs/laliga5s
    playerseg infer s3://archive/2024/ --model s3://runs/unet/best --out s3://archive/predictions --set resources.gpus_per_actor=0.5 --address auto
    playerseg render ../shared/data/videos/laliga_720p.mp4 --predictions outputs/infer/predictions --out outputs/laliga.mp4

Without `--model` the committed model (`playerseg.models.DEFAULT_MODEL`) segments.

Outputs (see `playerseg.infer.writer`): predictions/ (one row per instance, COCO RLE at source
size), frames/ (per-frame class fractions), coco_results.json, summary.json. A re-run skips the
segments already written; the job ends with a summary of what failed (exit status 1 if any).
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter

from playerseg.config import add_config_arguments, from_args
from playerseg.data.errors import Failures
from playerseg.infer.pipeline import InferConfig

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="videos, folders, frame folders, Parquet files (paths or URIs)")
    p.add_argument("--model", help="model / checkpoint / training run folder, exported .onnx / .pt2 / model.ts, "
                   "or a SAM head checkpoint sam_trained.pt (path or URI); default: the committed model")
    p.add_argument("--out", "--output", dest="output", help="output folder (path or URI); default outputs/infer")
    p.add_argument("--start", type=float, help="videos: start at this time (seconds)")
    p.add_argument("--end", type=float, help="videos: stop before this time (seconds)")
    add_config_arguments(p, InferConfig)
    p.add_argument("--actors", dest="resources.actors", type=int, help="model actors (resources.actors; 0 = fill the cluster)")
    p.add_argument("--gpus-per-actor", dest="resources.gpus_per_actor", type=float, help="GPUs per model actor, fractional allowed")
    p.add_argument("--cpus-per-actor", dest="resources.cpus_per_actor", type=float, help="CPUs per model actor (= its torch threads)")
    p.add_argument("--batch-size", dest="resources.batch_size", type=int, help="frames per model call")
    p.add_argument("--runtime", dest="resources.runtime", choices=("auto", "torch", "onnxruntime"),
                   help="resources.runtime: auto (default; ONNX Runtime on CPU actors, torch + autocast on GPUs), "
                   "torch, onnxruntime")
    p.add_argument("--tta", action="store_true", default=None, help="test-time augmentation (flip + scales)")
    p.add_argument("--sam-checkpoint", dest="sam.checkpoint", help="refine instances with SAM from these weights")
    p.add_argument("--sam-model-type", dest="sam.model_type", help="vit_b | vit_l | vit_h (| tiny_untrained for tests)")
    p.add_argument("--address", help="Ray cluster address (default: running cluster or local Ray)")
    p.add_argument("--overwrite", action="store_true", help="discard existing outputs and start over")


def config_from_args(args) -> InferConfig:
    """Defaults, then `--config` file, then `--set` overrides, then the explicit flags."""
    return from_args(InferConfig, args)


def check_config(cfg: InferConfig) -> None:
    """What can be checked before Ray starts (ConfigError): inputs given and there, the model (the
    committed one when none is named), the time range."""
    from playerseg.config import ConfigError, require_path
    from playerseg.models import model_or_default
    from playerseg.video.frames import list_inputs

    if not cfg.inputs:
        raise ConfigError("no inputs: give videos, folders, frame folders or Parquet files, "
                          "e.g. `playerseg infer ../shared/data/videos`")
    for item in cfg.inputs:
        require_path(item, "input", "give videos, folders, frame folders or Parquet files")
    list_inputs(cfg.inputs).ids()  # two inputs with one id: refused before Ray starts
    cfg.model = model_or_default(cfg.model)
    if cfg.start is not None and cfg.end is not None and cfg.end <= cfg.start:
        raise ConfigError(f"--end {cfg.end} must be after --start {cfg.start}")


def print_summary(summary: dict) -> None:
    print(f"\ninference: {summary['frames_written']} frames, {summary['instances_written']} instances "
          f"in {summary['wall_seconds']} s ({summary['frames_per_second']} frames/s); "
          f"units written {summary['units_written']}, skipped (done before) {summary['units_skipped']}, "
          f"failed {len(summary['units_failed'])}")
    if summary.get("tracking"):
        videos = summary["tracking"]["videos"].values()
        kinds = sum((Counter(v.get("shot_kinds", {})) for v in videos), Counter())
        print(f"tracking: {sum(v['tracks'] for v in videos)} tracks in {sum(v['shots'] for v in videos)} shots "
              f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; "
              f"{summary['tracking']['parts_written']} parts given track_id / shot_id / shot_kind)")
    print(f"  predictions : {summary['predictions']}")
    print(f"  frame stats : {summary['frames']}")
    print(f"  COCO results: {summary['coco_results']}")
    print(f"  summary     : {summary['output']}/summary.json")
    if summary["failures"]:
        print(Failures([(f["what"], f["error"]) for f in summary["failures"]]).summary())


def run(args) -> int:
    from playerseg.infer.pipeline import model_info, run_inference
    from playerseg.ray_cluster import init_ray

    cfg = config_from_args(args)
    check_config(cfg)
    model_info(cfg.model, cfg.target_height)  # a broken model is named before Ray starts
    init_ray(args.address)
    summary = run_inference(cfg, overwrite=args.overwrite)
    print_summary(summary)
    log.debug("%s", json.dumps(summary, indent=2))
    return 1 if summary["failures"] else 0
