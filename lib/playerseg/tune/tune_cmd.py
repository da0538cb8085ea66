"""`playerseg tune <family>`: a Ray Tune sweep over `playerseg train <family>` (ASHA by default).

    playerseg tune unet --space tune_spaces/unet.yaml --config configs/unet_acme.yaml \\
        --num-samples 16 --gpus-per-worker 0.5 --set run.epochs=12
    playerseg tune unet --space tune_spaces/unet.yaml --scheduler pbt --sweep-set perturbation_interval=2
    playerseg tune unet --name sweep --resume          # continue an interrupted sweep
    playerseg train unet --config runs/tune/sweep/best_config.yaml

Writes runs/tune/<name>/: results.csv/.parquet, best_config.yaml, best.json, trials/<id>/.
"""
from __future__ import annotations

import argparse

from playerseg import config as cfgmod
from playerseg.tune.sweep import FAMILIES, SweepConfig, run_sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=sorted(FAMILIES), help="what is trained (as `playerseg train <family>`)")
    p.add_argument("--space", help="search space YAML (tune_spaces/<family>.yaml)")
    p.add_argument("--config", dest="base_config", help="base training config YAML")
    p.add_argument("--set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base training config value (repeatable)")
    # the SweepConfig's own --config / --set (dests `config` / `overrides`, as cfgmod.from_args reads them)
    p.add_argument("--sweep-config", dest="config", help="YAML SweepConfig (the flags below override it)")
    p.add_argument("--sweep-set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SweepConfig value (repeatable)")
    p.add_argument("--name", help="experiment folder <out>/<name>")
    p.add_argument("--out", dest="out_dir", help="sweeps folder (default runs/tune)")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--scheduler", choices=["asha", "pbt"], help="asha (default) or pbt (Population Based Training)")
    p.add_argument("--metric", help="reported metric to optimise (default score)")
    p.add_argument("--mode", choices=["max", "min"])
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: what the cluster holds)")
    p.add_argument("--num-workers", dest="run.num_workers", type=int, help="Ray Train workers per trial (run.num_workers)")
    p.add_argument("--cpus-per-worker", dest="run.cpus_per_worker", type=float, help="CPUs per worker (run.cpus_per_worker)")
    p.add_argument("--gpus-per-worker", dest="run.gpus_per_worker", type=float, help="GPUs per worker, fractions allowed (run.gpus_per_worker)")
    p.add_argument("--no-wandb", dest="wandb", action="store_false", default=None, help="no W&B callback")
    p.add_argument("--resume", action="store_true", default=None, help="continue the sweep <out>/<name>")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """SweepConfig: defaults < --sweep-config < --sweep-set < flags; --config / --set / run flags go to the
    base training config of every trial."""
    train_overrides = list(args.train_overrides)
    train_overrides += [f"{k}={v}" for k, v in vars(args).items() if k.startswith("run.") and v is not None]
    cfg = cfgmod.from_args(SweepConfig, args, {"base_config": "config"})  # `config`: the --sweep-config
    cfg.overrides = [*cfg.overrides, *train_overrides]
    if not cfg.space and not cfg.resume:
        raise cfgmod.ConfigError("give a search space: --space tune_spaces/<family>.yaml")
    return cfg


def run(args: argparse.Namespace) -> int:
    out = run_sweep(config_from_args(args))
    print(f"sweep folder: {out['dir']}  ({out['trials']} trials, {out['errors']} failed)")
    metric = out["metric"]
    print(f"best trial: {out['trial_id']}  best {metric} = {out[f'best_{metric}']}")
    print(f"best config: {out['dir']}/best_config.yaml")
    print(f"best checkpoint: {out['checkpoint']}")
    return 1 if out["errors"] else 0
