"""`playerseg cluster`: the command line of `playerseg.players.cluster` (team assignment and player
flags, written back into inference outputs).

    playerseg cluster ../shared/data/videos --predictions outputs/infer     # the inputs and output of `playerseg infer`
    playerseg cluster ../shared/data/videos --predictions outputs/infer --set embed.method=encoder
    playerseg cluster ../shared/data/videos --predictions outputs/infer --set embed.method=encoder --model imagenet

With `embed.method=encoder` the encoder of `--model` embeds: by default the committed model
(`playerseg.models.DEFAULT_MODEL`), `--model imagenet` for the ImageNet encoder.
"""
from __future__ import annotations

import argparse
import json

from playerseg import config as cfgmod
from playerseg.players.cluster import ClusterConfig, cluster


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="what `playerseg infer` read: videos, frame folders, frame Parquet")
    p.add_argument("--predictions", help="the output folder of `playerseg infer`")
    p.add_argument("--model", help="embed.method=encoder: the model whose encoder embeds (default: the committed "
                   "model; `imagenet`: the ImageNet encoder)")
    cfgmod.add_config_arguments(p, ClusterConfig)
    p.add_argument("--address", help="Ray cluster address (default: local)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the clustering made with other options and redo every part")


def check_config(cfg: ClusterConfig) -> None:
    """What `cluster` cannot check itself (ConfigError): the predictions folder and the inputs exist,
    the encoder's model (the committed one by default; `imagenet` = the library's "")."""
    from playerseg.models import model_or_default

    if not cfg.predictions:
        raise cfgmod.ConfigError("no predictions: pass --predictions <the output folder of `playerseg infer`>")
    cfgmod.require_path(cfg.predictions, "--predictions", "give the output folder of `playerseg infer`", kind="dir")
    if not cfg.inputs:
        raise cfgmod.ConfigError("no inputs: give the videos / frame folders `playerseg infer` read")
    for item in cfg.inputs:
        cfgmod.require_path(item, "input", "give the videos / frame folders `playerseg infer` read")
    if cfg.embed.method == "encoder":
        cfg.model = "" if cfg.model == "imagenet" else model_or_default(cfg.model)


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    return cfgmod.from_args(ClusterConfig, args)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_config(cfg)
    summary = cluster(cfg, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    if summary["failures"]:
        print(summary["failures"])
    return 1 if summary["failed"] else 0
