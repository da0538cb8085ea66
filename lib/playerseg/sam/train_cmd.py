"""`playerseg train sam ...`: the command line of `playerseg.sam.train` (family `sam` of `train`).

    playerseg train sam --data ../shared/data/acme-football-semseg --model-type vit_b \
        --sam-checkpoint /models/sam_vit_b_01ec64.pth --mode decoder --epochs 10 --set optim.lr=1e-4
"""
from __future__ import annotations

import argparse

from playerseg.config import add_config_arguments, from_args
from playerseg.train.config import add_run_arguments

def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "SamTrainConfig")  # by name: importing playerseg.sam.train loads Ray and more
    add_run_arguments(p, batch_help="images (frames or crops) per worker step (run.batch_size)")
    p.add_argument("--format", dest="data.format", help="data.format (acme, coco; SAM needs instance masks)")
    p.add_argument("--model-type", dest="sam.model_type", help="vit_b | vit_l | vit_h | tiny_untrained (sam.model_type)")
    p.add_argument("--sam-checkpoint", dest="sam.checkpoint", help="base SAM weights, path or fsspec URI (sam.checkpoint)")
    p.add_argument("--mode", dest="sam.mode", help="decoder | decoder_prompt | last_n_blocks | full | head (sam.mode)")
    p.add_argument("--cache-dir", dest="cache.dir", help="root of the embedding caches, one <model_type>-<hash>/ each (cache.dir)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the embedding cache")


def config_from_args(args: argparse.Namespace):
    from playerseg.sam.train import SamTrainConfig

    return from_args(SamTrainConfig, args)


def run(args: argparse.Namespace) -> int:
    from playerseg.sam.train import train_sam

    out = train_sam(config_from_args(args), overwrite=args.overwrite)
    m = out["metrics"] or {}
    print(f"run folder: {out['run_dir']}  ({out['seconds'] / 60:.1f} min, {out['train_items']} train / "
          f"{out['val_items']} val items)")
    print(f"checkpoint (trained parameters + base reference): {out['checkpoint']}")
    print("last epoch: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()
                                     if isinstance(v, float) and k.startswith(("val/", "train/loss", "encoder"))))
    print(out["failures"].summary())
    return 1 if out["failures"] else 0  # the exit rule: a job that skipped inputs exits 1
