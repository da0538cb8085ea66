"""Ray Train overhead: images/s of the Ray job (1 worker) against a plain PyTorch loop of the same
model, data and batch, measured side by side in one run; then 2 workers (DDP, gloo) on the same cores.

    .venv/bin/python benchmarks/bench_train_overhead.py [--data DIR] [--epochs 3] [--cpus 2]

Throughput is the training part of the last epoch (warm; validation excluded), as the job itself
reports it (`train/images_per_s`); the wall time of each run (Ray start-up included) is printed too.
Target: the 1-worker Ray job loses at most 10 % against the plain loop.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from playerseg.config import load
from playerseg.train.config import TrainConfig


def config(args, out: str, name: str, workers: int, cpus: float) -> TrainConfig:
    return load(TrainConfig, None, [
        f"data.root={args.data}", f"model.encoder={args.encoder}",
        f"model.encoder_weights={'effnet-lite0-imagenet' if args.encoder == 'tu-efficientnet_lite0' else ''}",
        f"input.scale={args.scale}", f"input.crop=[{args.crop},{args.crop}]",
        f"run.batch_size={args.batch}", f"run.samples_per_epoch={args.samples}", f"run.epochs={args.epochs}",
        f"run.num_workers={workers}", f"run.cpus_per_worker={cpus}", f"run.out_dir={out}", f"run.name={name}",
        "val.every=1000", "run.max_val_images=1", "val.overlays=0", "export.formats=[]",
    ])


def plain(cfg: TrainConfig) -> tuple[float, float]:
    from playerseg.optim import build_optimizer, build_scheduler
    from playerseg.train.loop import seed_everything
    from playerseg.train.unet import build_training, train_one_epoch

    t0 = time.perf_counter()
    torch.set_num_threads(int(cfg.run.cpus_per_worker))
    seed_everything(0)
    device = torch.device("cpu")
    _, pre, model, loss_fn, train_set, _, _ = build_training(cfg, device)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.run.batch_size, shuffle=True, drop_last=True)
    opt = build_optimizer(cfg.optim, model.parameters())
    sched = build_scheduler(cfg.sched, opt, len(loader), cfg.run.epochs)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(cfg.run.epochs):
        m = train_one_epoch(model, loader, loss_fn, opt, sched, scaler, pre, device, 1, False)
    return m["train/images"] / m["train/seconds"], time.perf_counter() - t0


def ray_job(cfg: TrainConfig) -> tuple[float, float]:
    from playerseg.train.driver import run_dir_of
    from playerseg.train.trainer import train

    t0 = time.perf_counter()
    train(cfg)
    history = json.loads((run_dir_of(cfg) / "metrics.json").read_text())
    return history[-1]["train/images_per_s"], time.perf_counter() - t0


def main() -> None:
    from playerseg.io import shared_data_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(shared_data_dir() / "acme-football-semseg"))
    p.add_argument("--encoder", default="tu-efficientnet_lite0")
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False)
    with tempfile.TemporaryDirectory() as out:
        rows = []
        # alternate plain / ray so that load from elsewhere hits both alike
        p1, w1 = plain(config(args, out, "plain", 1, args.cpus))
        r1, rw1 = ray_job(config(args, out, "ray1", 1, args.cpus))
        p2, w2 = plain(config(args, out, "plain2", 1, args.cpus))
        r2, rw2 = ray_job(config(args, out, "ray2w", 2, args.cpus / 2))
        base = (p1 + p2) / 2
        rows.append(("plain PyTorch loop, 1 process", base, (w1 + w2) / 2))
        rows.append(("Ray job, 1 worker", r1, rw1))
        rows.append((f"Ray job, 2 workers x {args.cpus / 2:g} CPU (DDP gloo)", r2, rw2))
    ray.shutdown()
    print(f"\n{args.encoder} Unet, crop {args.crop}, scale {args.scale}, batch {args.batch}/worker, "
          f"{args.samples} crops/epoch, last of {args.epochs} epochs, {args.cpus} CPUs")
    print(f"{'run':48s} {'images/s':>9s} {'vs plain':>9s} {'wall s':>7s}")
    for name, ips, wall in rows:
        print(f"{name:48s} {ips:9.2f} {ips / base:9.2f} {wall:7.1f}")
    print(f"plain loop epochs measured: {p1:.2f} and {p2:.2f} images/s (spread shows the machine's noise)")


if __name__ == "__main__":
    main()
