"""`train_loop_per_worker`: what each Ray Train worker runs (DDP over gloo on CPU, NCCL on GPU).

Per epoch: augmented random crops (a DistributedSampler shards them over workers), AMP on CUDA,
gradient accumulation (`run.accum_steps`, no all-reduce on the intermediate micro-steps), lr
schedule per optimizer step; then rank 0 validates on the whole validation frames
(`SegmentationMeter`), logs metrics and overlays, and every rank calls `ray.train.report` with a
checkpoint (rank 0's: weights, optimizer, scheduler, scaler, SWA, epoch, best score). A restarted
worker group (FailureConfig) or `run.resume` continues from the checkpoint's next epoch; `run.init_from`
(a PBT exploit) starts from a checkpoint's weights and epoch with this config's hyperparameters.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from playerseg.classes import TaskClasses
from playerseg.config import from_dict
from playerseg.data.errors import Failures
from playerseg.data.registry import build_reader
from playerseg.losses import PartialLabelLoss
from playerseg.metrics.semantic import REFERENCE_HEIGHT
from playerseg.metrics.sources import SourceMeter
from playerseg.models.registry import build_model, normalisation
from playerseg.models.segmenter import CHECKPOINT_FILE, META_FILE, Preprocess, load_checkpoint, model_meta
from playerseg.optim import SWA, build_optimizer, build_scheduler
from playerseg.train.config import RunOptions, TrainConfig
from playerseg.train.dataset import CropDataset, FrameStore, box_lists
from playerseg.train.tracking import Tracker


def preprocess_of(cfg: TrainConfig) -> Preprocess:
    mean, std = normalisation(cfg.model)
    return Preprocess(scale=cfg.input.scale, pad_multiple=cfg.input.pad_multiple, mean=tuple(mean), std=tuple(std),
                      target_height=cfg.input.target_height)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- shared by every family's Ray Train worker (this loop, playerseg.sam.train) ---------------
def worker_context(run: RunOptions) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, amp) of this Ray Train worker; torch threads = run.cpus_per_worker."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(run.cpus_per_worker)))
    device = ray.train.torch.get_device()
    return ctx.get_world_rank(), ctx.get_world_size(), device, run.amp and device.type == "cuda"


def start_checkpoint(run: RunOptions):
    """The checkpoint to continue from: the run's latest (a restarted worker group), else run.resume.

    Ray Train V2 has no resume_from_checkpoint in the worker: the path travels in the config."""
    import ray.train

    return ray.train.get_checkpoint() or (ray.train.Checkpoint(run.resume) if run.resume else None)


def init_checkpoint(run: RunOptions):
    """`run.init_from` when the run has nothing to continue from (`start_checkpoint` is None: no own
    checkpoint, no run.resume, which both win), else None.

    Its model weights (and numeric state such as optimizer moments, where the loop can keep them) and
    its epoch counter start the run; the optimizer hyperparameters and the lr schedule are the run's
    own config (a PBT exploit: a donor trial's weights, the mutated hyperparameters). A loop restores:
      weights, start epoch = its epoch + 1 (the run's epochs go on counting from the donor's);
      optimizer: built from this config; `keep_moments` carries the per-parameter state when it was
      the same optimizer, keeping this config's lr / weight decay / betas;
      schedule: built from this config, `advance_schedule` to the start epoch's step;
      best score, GradScaler, plateau counters: fresh (a new run folder keeps its own bests)."""
    if not run.init_from or start_checkpoint(run) is not None:  # e.g. its own progress since init_from
        return None
    import ray.train

    return ray.train.Checkpoint(run.init_from)


def keep_moments(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state_dict's per-parameter state (Adam moments, momentum buffers, step counts)
    while every param group keeps this optimizer's hyperparameters (lr, initial_lr, weight decay...)."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, groups):
        group.update(own)


def advance_schedule(sched, steps: int) -> None:
    """Step a freshly built schedule `steps` optimizer steps forward (its lr at that point of the run)."""
    import warnings

    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": on purpose here
        warnings.simplefilter("ignore")
        for _ in range(steps):
            sched.step()


def continue_from_init(state: dict, optimizer, sched, optim_name: str, epochs: int, steps_per_epoch: int) -> int:
    """The optimizer side of starting from `init_checkpoint`'s `state` (every family's loop): moments kept
    when it is the same optimizer, this config's schedule advanced to the start epoch; returns that epoch."""
    if (state.get("config") or {}).get("optim", {}).get("name") == optim_name:
        keep_moments(optimizer, state["optimizer"])
    start_epoch = int(state["epoch"]) + 1
    advance_schedule(sched, min(start_epoch, epochs) * steps_per_epoch)
    return start_epoch


def report_epoch(metrics: dict, epoch: int, save=None) -> None:
    """`ray.train.report` of one epoch; with `save(folder)` (rank 0) also the checkpoint it writes into
    a temporary folder, kept as `checkpoint_epoch<NNN>`."""
    import ray.train

    if save is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"checkpoint_epoch{epoch:03d}")


def build_training(cfg: TrainConfig, device: torch.device, read=None, transform=None):
    """Model, loss and the train / val frame stores of a config (shared with the benchmarks).

    Several `data.sources` are read side by side (source names key the stores and the metrics);
    one source is named "" so its metrics keep their plain names. `read(source_cfg, split)` replaces
    `build_reader` (the GPU bundle reads a prepared pack), `transform` the albumentations pipeline
    of `train.augment` (imported only when used: a machine without albumentations can still train)."""
    classes = TaskClasses(tuple(cfg.data.classes))
    cfg.model.num_classes = len(classes)
    preprocess = preprocess_of(cfg)
    failures = Failures()
    sources = cfg.data.source_list()
    named = {(s.name if cfg.data.sources else ""): s for s in sources}
    read = read or build_reader
    train_store = FrameStore({n: read(s, "train") for n, s in named.items()}, preprocess, cfg.run.cache, failures)
    val_store = FrameStore({n: read(s, "val") for n, s in named.items()}, preprocess, cfg.run.cache, failures)
    if cfg.run.max_val_images:
        val_store.keys = [e for n in named for e in [k for k in val_store.keys if k[0] == n][: cfg.run.max_val_images]]
    if transform is None:
        from playerseg.train.augment import build_augment

        transform = build_augment(cfg.augment, tuple(cfg.input.crop))
    train_set = CropDataset(train_store, transform, classes,
                            cfg.run.samples_per_epoch, {n: s.weight for n, s in named.items()},
                            cfg.input.object_crop_p, tuple(cfg.input.crop),
                            {n: s.pitch_prior for n, s in named.items()})
    model = build_model(cfg.model)
    if cfg.run.init_weights:
        from playerseg.models.segmenter import Segmenter

        donor = Segmenter.load(cfg.run.init_weights, device="cpu")
        if tuple(donor.classes.names) != classes.names:
            raise ValueError(f"run.init_weights {cfg.run.init_weights} has classes {list(donor.classes.names)}, "
                             f"this run {list(classes.names)}")
        model.load_state_dict(donor.model.state_dict())
    model = model.to(device)
    loss_fn = PartialLabelLoss(cfg.loss, len(classes)).to(device)
    return classes, preprocess, model, loss_fn, train_set, val_store, failures


def _epoch_seed(cfg: TrainConfig, epoch: int, rank: int) -> int:
    return cfg.run.seed * 1_000_003 + epoch * 1009 + rank


def train_one_epoch(model, loader, loss_fn, optimizer, sched, scaler, preprocess: Preprocess,
                    device: torch.device, accum_steps: int, amp: bool) -> dict:
    model.train()
    sums: dict[str, float] = {}
    images = batches = 0
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    n = len(loader)
    for i, (raw, allowed, table) in enumerate(loader):
        raw, allowed = raw.to(device, non_blocking=True), allowed.to(device, non_blocking=True)
        x = preprocess.normalize(raw)
        step_now = (i + 1) % accum_steps == 0 or i + 1 == n
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not step_now else contextlib.nullcontext()
        with sync:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = model(x)
            loss, parts = loss_fn(logits, allowed, box_lists(table.to(device)), raw)
            scaler.scale(loss / accum_steps).backward()
        if step_now:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            sched.step()
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for k, v in parts.items():
            sums[f"loss_{k}"] = sums.get(f"loss_{k}", 0.0) + v
        images += len(x)
        batches += 1
    seconds = time.perf_counter() - start
    out = {f"train/{k}": v / max(1, batches) for k, v in sums.items()}
    out["train/images"] = images
    out["train/seconds"] = seconds
    return out


@torch.inference_mode()
def validate(model, store: FrameStore, classes: TaskClasses, cfg: TrainConfig, preprocess: Preprocess,
             device: torch.device, overlays: int = 0):
    """Metrics of `model` on the whole validation frames, per source (`SourceMeter`: only what each
    source labels; keys `<source>/<metric>`, plain with one unnamed source), the mean of
    `val.score_keys` as `score`, and up to `overlays` (image, truth, pred) of label-map sources."""
    model.eval()
    height = preprocess.target_height or int(round(REFERENCE_HEIGHT * preprocess.scale))
    meters = {n: SourceMeter(n, classes, cfg.val.led_radius, cfg.val.boundary_tol, reference_height=height)
              for n in store.sources()}
    shown = []
    for entry in store.keys:
        sample = store.get(entry)
        x = preprocess.pad(torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1))
        xb = preprocess.normalize(x[None].to(device))
        logits = model(xb).float()
        if cfg.val.tta:
            logits = logits.softmax(1) + model(xb.flip(-1)).float().softmax(1).flip(-1)
        h, w = sample.image.shape[:2]
        proba = logits[0, :, :h, :w].softmax(0).cpu().numpy()
        pred = proba.argmax(0).astype(np.uint8)
        meters[entry[0]].update(sample, pred, proba)
        if len(shown) < overlays and sample.semantic is not None:
            shown.append((sample.image, sample.semantic, pred))
    out = {}
    for name, meter in meters.items():
        out.update({(f"{name}/{k}" if name else k): v for k, v in meter.compute().items()})
    if cfg.val.score_keys:
        missing = [k for k in cfg.val.score_keys if k not in out]
        if missing:
            raise ValueError(f"val.score_keys {missing} are not validation metrics; there are {sorted(out)}")
        vals = [out[k] for k in cfg.val.score_keys if not math.isnan(out[k])]
        out["score"] = sum(vals) / len(vals) if vals else math.nan
    return out, shown


def _save_checkpoint(directory: Path, state: dict, meta: dict) -> None:
    import json

    torch.save(state, directory / CHECKPOINT_FILE)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def write_model_dir(target: Path, state_dict: dict, meta: dict) -> None:
    """Replace `target` with a model folder (model.json + model.safetensors fp32), all or nothing."""
    import json

    from safetensors.torch import save_file

    target = Path(target)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp / "model.safetensors"))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    old = target.parent / f".old-{target.name}-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def train_loop_per_worker(config: dict) -> None:
    import ray.train.torch

    cfg: TrainConfig = from_dict(TrainConfig, config["cfg"])
    run_dir = Path(config["run_dir"])
    rank, world, device, amp = worker_context(cfg.run)
    seed_everything(_epoch_seed(cfg, 0, 0))  # same initial weights on every rank

    classes, preprocess, model, loss_fn, train_set, val_set, failures = build_training(cfg, device)
    model = ray.train.torch.prepare_model(model)
    loader = DataLoader(train_set, batch_size=cfg.run.batch_size, shuffle=True, drop_last=len(train_set) >= cfg.run.batch_size * world,
                        num_workers=cfg.run.loader_workers, persistent_workers=cfg.run.loader_workers > 0)
    loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)
    steps_per_epoch = math.ceil(len(loader) / cfg.run.accum_steps)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    sched = build_scheduler(cfg.sched, optimizer, steps_per_epoch, cfg.run.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    swa = SWA(cfg.swa, unwrap(model), optimizer, cfg.run.epochs) if cfg.swa.enabled else None

    start_epoch, best = 0, -math.inf
    checkpoint = start_checkpoint(cfg.run)
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT_FILE, map_location=device)
        unwrap(model).load_state_dict(state["train_model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if swa is not None and state.get("swa"):
            swa.load_state_dict(state["swa"])
        start_epoch, best = state["epoch"] + 1, state["best"]
    elif (init := init_checkpoint(cfg.run)) is not None:
        # PBT exploit: the donor's weights and epoch, THIS config's hyperparameters (its lr takes effect).
        # Adam/SGD moments are per-parameter estimates of the same weights: kept when the optimizer is the
        # same one (else they mean nothing to it). The schedule is this config's, advanced to the start
        # epoch, not the donor's (whose state holds the donor's base lr). Best score and scaler start fresh.
        with init.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT_FILE, map_location=device)
        unwrap(model).load_state_dict(state["train_model"])
        if swa is not None and state.get("swa"):
            swa.averaged.load_state_dict(state["swa"]["averaged"])
        start_epoch = continue_from_init(state, optimizer, sched, cfg.optim.name, cfg.run.epochs, steps_per_epoch)

    tracker = Tracker(str(run_dir), config["cfg"], name=cfg.run.name, project=cfg.run.wandb_project,
                      enabled=rank == 0, start_epoch=start_epoch)
    meta_extra = {"data": {"format": cfg.data.format, "root": cfg.data.root, "split_block": cfg.data.split_block,
                           "val_fraction": cfg.data.val_fraction, "seed": cfg.data.seed,
                           "sources": [dataclasses.asdict(s) for s in cfg.data.sources],
                           "train_frames": len(train_set.store), "val_frames": len(val_set)}}
    started = time.monotonic()
    for epoch in range(start_epoch, cfg.run.epochs):
        marker = run_dir / f".injected-failure-{epoch}"
        if epoch == cfg.run.inject_failure_epoch and rank == 0 and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("this worker died here once on purpose (run.inject_failure_epoch)\n")
            os._exit(1)
        seed_everything(_epoch_seed(cfg, epoch, rank))
        train_set.set_epoch_seed(_epoch_seed(cfg, epoch, rank))
        sampler = getattr(loader, "_dataloader", loader).sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        metrics = {"epoch": epoch, "lr": sched.lr}
        metrics.update(train_one_epoch(model, loader, loss_fn, optimizer, sched, scaler, preprocess, device,
                                       cfg.run.accum_steps, amp))
        metrics["train/images_per_s"] = metrics["train/images"] * world / max(1e-9, metrics["train/seconds"])
        if swa is not None:
            swa.epoch_end(unwrap(model), epoch)
        budget = cfg.run.time_budget_minutes
        out_of_time = budget > 0 and time.monotonic() - started > 60 * budget
        if world > 1 and dist.is_initialized():  # every rank stops at the same epoch
            flag = torch.tensor([float(out_of_time)], device=device)
            dist.broadcast(flag, src=0)
            out_of_time = bool(flag.item())
        last = epoch == cfg.run.epochs - 1 or out_of_time
        eval_model = unwrap(model)
        if last and swa is not None and swa.active(epoch):
            eval_model = swa.finalize(((preprocess.normalize(x.to(device)), a) for x, a, _ in loader), device)
            metrics["swa"] = True
        score = math.nan
        if rank == 0 and ((epoch + 1) % cfg.val.every == 0 or last):
            t0 = time.perf_counter()
            val_metrics, shown = validate(eval_model, val_set, classes, cfg, preprocess, device, cfg.val.overlays)
            metrics.update({f"val/{k}": v for k, v in val_metrics.items()})
            metrics["val/seconds"] = time.perf_counter() - t0
            score = val_metrics.get("score" if cfg.val.score_keys else cfg.val.metric, math.nan)
            if shown:
                tracker.overlays(epoch, *zip(*shown), classes.names)
        if world > 1 and dist.is_initialized():
            t = torch.tensor([score], dtype=torch.float64, device=device)
            dist.broadcast(t, src=0)
            score = float(t.item())
        sched.epoch_end(score)
        metrics["score"] = score if not math.isnan(score) else -1.0
        improved = not math.isnan(score) and score > best
        best = max(best, score) if not math.isnan(score) else best
        metrics["best_score"] = best if best > -math.inf else -1.0
        meta = model_meta(cfg.model, classes, preprocess, cfg.val.tta_scales, epoch=epoch,
                          metrics={k: v for k, v in metrics.items() if k.startswith("val/")}, **meta_extra)
        def save(folder: Path) -> None:
            _save_checkpoint(folder, {
                "model": eval_model.state_dict(), "train_model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "swa": swa.state_dict() if swa is not None else None,
                "epoch": epoch, "best": best, "config": config["cfg"]}, meta)

        if rank == 0:
            tracker.log(metrics)
            if improved:
                write_model_dir(run_dir / "best", eval_model.state_dict(), meta)
        report_epoch(metrics, epoch, save if rank == 0 else None)
        if out_of_time:
            break
    if rank == 0 and failures:
        (run_dir / "failures.txt").write_text(failures.summary() + "\n")
    tracker.finish()
