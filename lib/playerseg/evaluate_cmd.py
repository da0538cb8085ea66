"""`playerseg evaluate`: the command line of `playerseg.evaluate` (metrics, report, worst frames).

    playerseg evaluate --data-root ../shared/data/acme-football-semseg --split val --out outputs/eval
    playerseg evaluate --checkpoint models/unet_effl0_acme --data-root ../shared/data/acme-football-semseg --split val --out outputs/eval --tta --worst 8 --set batch_size=2
    playerseg evaluate --data-root ../shared/data/football-players-detection --set data.format=yolo --split all --out outputs/eval_yolo

Without `--checkpoint` (or `--model`) the committed model (`playerseg.models.DEFAULT_MODEL`) is evaluated.
"""
from __future__ import annotations

import argparse

from playerseg import config as config_lib
from playerseg.evaluate import SPLITS, EvaluateConfig, data_section, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_lib.add_config_arguments(parser, EvaluateConfig)
    parser.add_argument("--checkpoint", "--model", dest="checkpoint",
                        help="model checkpoint (Segmenter.load); default: the committed model")
    parser.add_argument("--data-root", dest="data.root", help="dataset folder (data.root)")
    parser.add_argument("--split", choices=SPLITS, help="which split to evaluate (default val)")
    parser.add_argument("--out", help="output folder for report.md, metrics.json, worst_frames.png")
    parser.add_argument("--tta", action="store_true", default=None, help="test-time augmentation on")
    parser.add_argument("--worst", type=int, metavar="N", help="frames in the worst-frame gallery")
    parser.add_argument("--batch-size", type=int, help="frames per model call")
    parser.add_argument("--data-from", metavar="TRAIN_YAML",
                        help="evaluate on the data sources and splits of this training config")
    parser.add_argument("--target-height", type=int, help="model input height (default: the model's own policy)")
    parser.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"), help="model runtime (default auto)")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="redo the outputs of --out, made with another config or other weights")


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """Defaults, then `--config` file, then `--set` overrides, then the explicit flags."""
    return config_lib.from_args(EvaluateConfig, args)


def check_config(cfg: EvaluateConfig) -> None:
    """The mistakes that can be named before any work (ConfigError): no dataset, a dataset folder
    that is not there, a YOLO folder without data.yaml; no checkpoint means the committed model."""
    from pathlib import Path

    from playerseg.models import model_or_default

    if not cfg.checkpoint:
        cfg.checkpoint = model_or_default(None, "--checkpoint")
    if cfg.data_from:
        cfg.data, cfg.data_from = data_section(cfg.data_from), ""
    for src in cfg.data.source_list():
        where = f"data.sources {src.name}: root" if cfg.data.sources else "--data-root"
        root = src.root
        if not root and not src.annotations:
            raise config_lib.ConfigError("no dataset: pass --data-root <dataset folder>, "
                                         "e.g. --data-root ../shared/data/acme-football-semseg")
        if root:
            config_lib.require_path(root, where, "pass the dataset folder", kind="dir")
        if src.format == "yolo" and root and "://" not in root and not (Path(root) / "data.yaml").is_file():
            raise config_lib.ConfigError(f"{where} {root}: a YOLO folder needs data.yaml (`names:` the class names "
                                         "in id order); give the folder that holds data.yaml")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_config(cfg)
    results = evaluate(cfg)
    return 0 if results.get("num_images") else 1
