"""`playerseg train sam ...`: the command line of `playerseg.sam.train` (family `sam` of `train`).

    playerseg train sam --data ../shared/data/acme-football-semseg --model-type vit_b \
        --sam-checkpoint /models/sam_vit_b_01ec64.pth --mode decoder --epochs 10 --set optim.lr=1e-4
"""
from __future__ import annotations

import argparse

from playerseg.config import load

_FLAGS = {"data": "data.root", "format": "data.format", "model_type": "sam.model_type",
          "sam_checkpoint": "sam.checkpoint", "mode": "sam.mode", "cache_dir": "cache.dir",
          "num_workers": "run.num_workers", "gpus_per_worker": "run.gpus_per_worker",
          "cpus_per_worker": "run.cpus_per_worker", "batch_size": "run.batch_size", "epochs": "run.epochs",
          "out": "run.out_dir", "name": "run.name", "resume": "run.resume", "max_failures": "run.max_failures"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML SamTrainConfig")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loss.focal=20 (repeatable)")
    p.add_argument("--data", help="dataset root (data.root)")
    p.add_argument("--format", help="data.format (acme, coco; SAM needs instance masks)")
    p.add_argument("--model-type", help="vit_b | vit_l | vit_h | tiny_untrained (sam.model_type)")
    p.add_argument("--sam-checkpoint", help="base SAM weights, path or fsspec URI (sam.checkpoint)")
    p.add_argument("--mode", help="decoder | decoder_prompt | last_n_blocks | full | head (sam.mode)")
    p.add_argument("--cache-dir", help="embedding cache folder (cache.dir)")
    p.add_argument("--num-workers", type=int, help="Ray Train workers (run.num_workers)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per worker; 0 = CPU with gloo")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs (= torch threads) per worker")
    p.add_argument("--batch-size", type=int, help="images (frames or crops) per worker step (run.batch_size)")
    p.add_argument("--epochs", type=int, help="run.epochs")
    p.add_argument("--out", help="runs folder (run.out_dir)")
    p.add_argument("--name", help="run name: folder under --out; an existing run continues (run.name)")
    p.add_argument("--resume", help="checkpoint folder to start from (run.resume)")
    p.add_argument("--max-failures", type=int, help="worker restarts from the last checkpoint")


def config_from_args(args: argparse.Namespace):
    from playerseg.sam.train import SamTrainConfig

    overrides = list(args.overrides)
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load(SamTrainConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from playerseg.sam.train import train_sam

    out = train_sam(config_from_args(args))
    m = out["metrics"] or {}
    print(f"run folder: {out['run_dir']}  ({out['seconds'] / 60:.1f} min, {out['train_items']} train / "
          f"{out['val_items']} val items)")
    print(f"checkpoint (trained parameters + base reference): {out['checkpoint']}")
    print("last epoch: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()
                                     if isinstance(v, float) and k.startswith(("val/", "train/loss", "encoder"))))
    print(out["failures"].summary())
    return 1 if out["failures"] and not out["train_items"] else 0


add_sam_arguments, run_sam = add_arguments, run
