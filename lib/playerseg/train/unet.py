"""The Unet family of the training loop (`playerseg.train.loop.run_epochs`): what `playerseg train unet` trains.

Per epoch: augmented random crops (a DistributedSampler shards them over workers), AMP on CUDA,
gradient accumulation (`run.accum_steps`, no all-reduce on the intermediate micro-steps), lr
schedule per optimizer step; then rank 0 validates on the whole validation frames
(`SegmentationMeter`) and writes overlays; SWA (`swa`) is finalised on the last epoch. A checkpoint
(`checkpoint.pt` + `model.json`) holds the weights (eval and train), optimizer, scheduler, scaler, SWA,
epoch, best score and config; `best/` is the best model so far (`write_model_dir`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from playerseg.classes import TaskClasses
from playerseg.config import from_dict
from playerseg.data.errors import Failures
from playerseg.data.registry import build_reader
from playerseg.io import read_weights
from playerseg.losses import PartialLabelLoss
from playerseg.metrics.semantic import REFERENCE_HEIGHT
from playerseg.metrics.sources import SourceMeter
from playerseg.models.registry import build_model, normalisation
from playerseg.models.segmenter import CHECKPOINT_FILE, META_FILE, Preprocess, activate, model_meta
from playerseg.optim import SWA, build_optimizer, build_scheduler
from playerseg.train.config import TrainConfig
from playerseg.train.dataset import CropDataset, FrameStore, box_lists
from playerseg.train.loop import Family, run_epochs, seed_everything, unwrap


def preprocess_of(cfg: TrainConfig) -> Preprocess:
    mean, std = normalisation(cfg.model)
    return Preprocess(scale=cfg.input.scale, pad_multiple=cfg.input.pad_multiple, mean=tuple(mean), std=tuple(std),
                      target_height=cfg.input.target_height)


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
        load_donor(model, donor.model.state_dict())
    model = model.to(device)
    loss_fn = PartialLabelLoss(cfg.loss, len(classes), classes.player).to(device)
    return classes, preprocess, model, loss_fn, train_set, val_store, failures


def load_donor(model: torch.nn.Module, state: dict) -> None:
    """`run.init_weights`' weights into `model`; a donor without the centre head
    (`models.centre.CentreModel`) becomes its base model, and the head starts fresh."""
    from playerseg.models.centre import CentreModel

    if isinstance(model, CentreModel) and not any(k.startswith("head.") for k in state):
        model.base.load_state_dict(state)
        return
    model.load_state_dict(state)


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
    for i, (raw, allowed, table, centres_known) in enumerate(loader):
        raw, allowed = raw.to(device, non_blocking=True), allowed.to(device, non_blocking=True)
        x = preprocess.normalize(raw)
        step_now = (i + 1) % accum_steps == 0 or i + 1 == n
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not step_now else contextlib.nullcontext()
        with sync:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = model(x)
            loss, parts = loss_fn(logits, allowed, box_lists(table.to(device)), raw, centres_known)
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
    return {**{f"train/{k}": v / max(1, batches) for k, v in sums.items()}, "train/images": images,
            "train/seconds": time.perf_counter() - start}


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
        k = len(classes)
        proba = activate(model(xb).float(), k)
        if cfg.val.tta:
            proba = (proba + activate(model(xb.flip(-1)).float(), k).flip(-1)) / 2
        h, w = sample.image.shape[:2]
        proba = proba[0, :, :h, :w].cpu().numpy()
        pred = proba[:k].argmax(0).astype(np.uint8)
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


def write_model_dir(target: Path, state_dict: dict, meta: dict) -> None:
    """Replace `target` with a model folder (model.json + model.safetensors fp32), all or nothing."""
    from safetensors.torch import save_file

    from playerseg.io import atomic_dir

    with atomic_dir(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp / "model.safetensors"))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


class UnetFamily(Family):
    """The hooks of `run_epochs` for a `TrainConfig`."""

    def build(self) -> None:
        import ray.train.torch

        cfg, w = self.cfg, self.worker
        seed_everything(_epoch_seed(cfg, 0, 0))  # same initial weights on every rank
        (self.classes, self.preprocess, model, self.loss_fn, self.train_set, self.val_set,
         self.failures) = build_training(cfg, w.device)
        self.model = ray.train.torch.prepare_model(model)
        loader = DataLoader(self.train_set, batch_size=cfg.run.batch_size, shuffle=True,
                            drop_last=len(self.train_set) >= cfg.run.batch_size * w.world,
                            num_workers=cfg.run.loader_workers, persistent_workers=cfg.run.loader_workers > 0)
        self.loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)
        self.steps_per_epoch = math.ceil(len(self.loader) / cfg.run.accum_steps)
        self.optimizer = build_optimizer(cfg.optim, [p for p in self.model.parameters() if p.requires_grad])
        self.sched = build_scheduler(cfg.sched, self.optimizer, self.steps_per_epoch, cfg.run.epochs)
        self.scaler = torch.amp.GradScaler(w.device.type, enabled=w.amp)
        self.swa = SWA(cfg.swa, unwrap(self.model), self.optimizer, cfg.run.epochs) if cfg.swa.enabled else None
        self.eval_model = unwrap(self.model)
        self.meta_extra = {"data": {
            "format": cfg.data.format, "root": cfg.data.root, "split_block": cfg.data.split_block,
            "val_fraction": cfg.data.val_fraction, "seed": cfg.data.seed,
            "sources": [dataclasses.asdict(s) for s in cfg.data.sources],
            "train_frames": len(self.train_set.store), "val_frames": len(self.val_set)}}

    def load(self, folder: Path) -> dict:
        return read_weights(folder / CHECKPOINT_FILE, map_location=self.worker.device)

    def restore(self, state: dict, resume: bool) -> None:
        unwrap(self.model).load_state_dict(state["train_model"])
        swa = state.get("swa") if self.swa is not None else None
        if not resume:  # a PBT start: SWA's average of the donor's weights; optimizer and scaler fresh
            if swa:
                self.swa.averaged.load_state_dict(swa["averaged"])
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if swa:
            self.swa.load_state_dict(swa)

    def train_epoch(self, epoch: int) -> dict:
        cfg, w = self.cfg, self.worker
        seed_everything(_epoch_seed(cfg, epoch, w.rank))
        self.train_set.set_epoch_seed(_epoch_seed(cfg, epoch, w.rank))
        sampler = getattr(self.loader, "_dataloader", self.loader).sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        out = train_one_epoch(self.model, self.loader, self.loss_fn, self.optimizer, self.sched, self.scaler,
                              self.preprocess, w.device, cfg.run.accum_steps, w.amp)
        out["train/images_per_s"] = out["train/images"] * w.world / max(1e-9, out["train/seconds"])
        if self.swa is not None:
            self.swa.epoch_end(unwrap(self.model), epoch)
        return out

    def validate(self, epoch: int, last: bool, tracker) -> dict:
        cfg, w = self.cfg, self.worker
        out = {}
        self.eval_model = unwrap(self.model)
        if last and self.swa is not None and self.swa.active(epoch):
            self.eval_model = self.swa.finalize(
                ((self.preprocess.normalize(x.to(w.device)), a) for x, a, *_ in self.loader), w.device)
            out["swa"] = True
        if w.rank == 0 and ((epoch + 1) % cfg.val.every == 0 or last):
            t0 = time.perf_counter()
            val_metrics, shown = validate(self.eval_model, self.val_set, self.classes, cfg, self.preprocess,
                                          w.device, cfg.val.overlays)
            out.update({f"val/{k}": v for k, v in val_metrics.items()})
            out["val/seconds"] = time.perf_counter() - t0
            if shown:
                tracker.overlays(epoch, *zip(*shown), self.classes.names)
        return out

    def score(self, metrics: dict) -> float:
        return metrics.get("val/score" if self.cfg.val.score_keys else f"val/{self.cfg.val.metric}", math.nan)

    def _meta(self, epoch: int, metrics: dict) -> dict:
        return model_meta(self.cfg.model, self.classes, self.preprocess, self.cfg.val.tta_scales, epoch=epoch,
                          metrics={k: v for k, v in metrics.items() if k.startswith("val/")}, **self.meta_extra)

    def save(self, folder: Path, epoch: int, best: float, metrics: dict) -> None:
        swa = self.swa.state_dict() if self.swa is not None else None
        torch.save({"model": self.eval_model.state_dict(), "train_model": unwrap(self.model).state_dict(),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.sched.state_dict(),
                    "scaler": self.scaler.state_dict(), "swa": swa, "epoch": epoch, "best": best,
                    "config": self.config["cfg"]}, folder / CHECKPOINT_FILE)
        (folder / META_FILE).write_text(json.dumps(self._meta(epoch, metrics), indent=2, default=str))

    def save_best(self, epoch: int, metrics: dict) -> None:
        write_model_dir(self.worker.run_dir / "best", self.eval_model.state_dict(), self._meta(epoch, metrics))

    def finish(self) -> None:
        if self.failures:
            (self.worker.run_dir / "failures.txt").write_text(self.failures.summary() + "\n")


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker of `playerseg train unet` runs."""
    run_epochs(UnetFamily, from_dict(TrainConfig, config["cfg"]), config)
