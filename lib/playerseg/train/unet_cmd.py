"""`playerseg train unet`: the command line of the Unet family's Ray Train job (`playerseg.train.trainer`).

    playerseg train unet --config configs/unet_acme.yaml --num-workers 2 --gpus-per-worker 1 \\
        --set optim.lr=3e-4 --set run.epochs=40
"""
from __future__ import annotations

import argparse

from playerseg.config import add_config_arguments, from_args
from playerseg.train.config import TrainConfig, add_run_arguments
from playerseg.train.trainer import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, TrainConfig)
    add_run_arguments(p)
    p.add_argument("--accum-steps", dest="run.accum_steps", type=int, help="gradient accumulation (run.accum_steps)")
    p.add_argument("--export-dir", dest="export.dir", help="also export the best model here (export.dir)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return from_args(TrainConfig, args)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = train(cfg)
    m = out["metrics"] or {}
    wanted = {f"val/{k}" for k in cfg.val.score_keys} | {"val/score", "val/players_over_led_iou", "val/miou"}
    keys = [k for k in m if k.startswith("val/iou/") or k in wanted]
    print(f"run folder: {out['run_dir']}  ({out['seconds'] / 60:.1f} min)")
    print(f"best checkpoint: {out['checkpoint']}")
    print("last epoch: " + ", ".join(f"{k}={m[k]:.4f}" for k in keys if isinstance(m[k], float)))
    for path in out["export"]:
        print(f"exported: {path}")
    if out["failures"]:  # trained on the rest; the exit rule of every job: something failed -> 1
        print(f"skipped samples ({out['run_dir']}/failures.txt): {out['failures']}")
        return 1
    return 0
