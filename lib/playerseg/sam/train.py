"""`playerseg train sam`: fine-tune SAM (or a head on its embeddings) as a Ray Train DDP job.

    playerseg train sam --data ../shared/data/acme-football-semseg --set sam.model_type=vit_b \\
        --set sam.checkpoint=s3://models/sam_vit_b_01ec64.pth --num-workers 2 --gpus-per-worker 1

Modes (`sam.mode`): `decoder` (default), `decoder_prompt`, `last_n_blocks` (+ the last
`sam.last_n` encoder blocks and the neck), `full`, and `head` (a semantic head on frozen
embeddings, `playerseg.sam.head`). `decoder`, `decoder_prompt` and `head` first build the
embedding cache (a Ray Data job, `playerseg.sam.embeddings`) in `<cache.dir>/<model_type>-<hash>`
(default `cache.dir`: `<run.out_dir>/sam_cache`; the hash covers model, weights (by sha256), data and
crops, so runs and sweep trials that agree on them share it; `--overwrite` rebuilds it) and their epochs never run the encoder: each
epoch reports `encoder_calls` (0 in these modes) and `train/items` / `train/items_distinct` (over
all ranks). Checkpoints hold the trained parameters only, with the base checkpoint's reference
(`playerseg.sam.checkpoint`). The run folder `<run.out_dir>/<run.name>` is the Unet's: Ray
checkpoints, metrics.csv/json, W&B offline, `final/sam_trained.pt`; running the same name again
continues the run.

`build_trainer(cfg)` is THE TorchTrainer of the job (`train_sam` fits it, each `playerseg tune sam`
trial too); it runs `prepare(cfg)` (absolute paths, run folder, cache, items) unless given its result.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from playerseg.classes import TaskClasses
from playerseg.config import from_dict, path_field, resolve_paths, to_dict
from playerseg.data.errors import Failures
from playerseg.data.registry import DataConfig, build_reader
from playerseg.io import short_hash, write_bytes_atomic
from playerseg.losses import LossConfig, build_loss
from playerseg.optim import OptimConfig, SchedConfig, build_optimizer, build_scheduler
from playerseg.ray_cluster import init_ray
from playerseg.sam.build import SAM_MODELS, build_sam
from playerseg.sam.checkpoint import FILE, apply_trained, load_trained, save_trained
from playerseg.sam.dataset import CachedItems, FrameItems, PromptConfig, collate, to_device
from playerseg.sam.embeddings import CacheConfig, build_cache, cache_spec, list_items
from playerseg.sam.head import SamEmbeddingHead
from playerseg.sam.inputs import Geometry, to_model_input
from playerseg.sam.loss import SamLoss, SamLossConfig
from playerseg.sam.model import CACHED_MODES, SamTrainModel
from playerseg.sam.prompts import CropConfig
from playerseg.train.config import RunOptions
from playerseg.train.loop import Family, run_epochs, seed_everything, unwrap
from playerseg.train.driver import run_dir_of, run_job, torch_trainer

log = logging.getLogger(__name__)


@dataclass
class SamConfig:
    model_type: str = "tiny_untrained"  # a key of playerseg.sam.build.SAM_MODELS
    checkpoint: str = path_field()  # base SAM weights: path or fsspec URI ("" = random: tiny_untrained only makes sense)
    mode: str = "decoder"  # decoder | decoder_prompt | last_n_blocks | full | head
    last_n: int = 2  # last_n_blocks: encoder blocks trained
    multimask: bool = False  # 3 masks per prompt, the best one trained (SAM paper)
    head_hidden: int = 128  # head mode: channels of the head


@dataclass
class SamTrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    loss: SamLossConfig = field(default_factory=SamLossConfig)
    head_loss: LossConfig = field(default_factory=LossConfig)  # head mode: playerseg.losses terms
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=1e-4))
    sched: SchedConfig = field(default_factory=lambda: SchedConfig(warmup_epochs=0.0))
    run: RunOptions = field(default_factory=lambda: RunOptions(name="sam", batch_size=4, epochs=10))


# ---- one step, one epoch (no Ray: the worker loop, tests and the benchmark call these) ------
def build_train_model(cfg: SamTrainConfig, num_classes: int) -> SamTrainModel:
    s = cfg.sam
    sam = build_sam(s.model_type, s.checkpoint or None)
    head = SamEmbeddingHead(num_classes, hidden=s.head_hidden) if s.mode == "head" else None
    return SamTrainModel(sam, s.mode, s.last_n, head, s.multimask)


def forward_loss(model, batch: dict, sam_loss: SamLoss, head_loss=None) -> dict[str, torch.Tensor]:
    """Loss terms of one batch; `model` is a SamTrainModel, maybe DDP-wrapped."""
    core = getattr(model, "module", model)
    if "images" in batch and isinstance(batch["images"], list):
        batch = {**batch, "images": to_model_input(core.sam, batch["images"])}
    out = model(batch)
    if core.mode == "head":
        total, parts = head_loss(out, batch["semantic"])
        return {"loss": total, **{k: torch.tensor(v) for k, v in parts.items()}}
    logits = torch.cat([o[0] for o in out])
    iou = torch.cat([o[1] for o in out])
    return sam_loss(logits.float(), iou.float(), torch.cat(batch["masks"]))


def run_epoch(model, items, order: list[int], batch_size: int, rng: np.random.Generator, prompts: PromptConfig,
              geo: Geometry, sam_loss: SamLoss, head_loss=None, optimizer=None, sched=None,
              device: torch.device = torch.device("cpu"), amp: bool = False) -> dict[str, float]:
    """One pass over `items[order]` in batches: trains when `optimizer` is given, else evaluates
    (no jitter, no grad). Returns means of the loss terms weighted by batch, plus counts."""
    train = optimizer is not None
    model.train(train)
    ddp = train and dist.is_initialized() and dist.get_world_size() > 1
    sums: dict[str, float] = {}
    batches = 0
    for s in range(0, len(order), batch_size):
        batch = collate([items[i] for i in order[s:s + batch_size]], rng, prompts, geo, train)
        if ddp:  # every rank takes the step or none does (a rank alone in backward would wait forever)
            have = torch.tensor([int(batch is not None)], device=device)
            dist.all_reduce(have, op=dist.ReduceOp.MIN)
            batch = batch if int(have) else None
        if batch is None:
            continue
        batch = to_device(batch, device)
        with torch.set_grad_enabled(train), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            terms = forward_loss(model, batch, sam_loss, head_loss)
        if train:
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            if sched is not None:
                sched.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        batches += 1
    return {**{k: v / max(1, batches) for k, v in sums.items()}, "batches": float(batches)}


def _shard(n: int, rank: int, world: int, rng: np.random.Generator | None) -> list[int]:
    """This rank's indices: every rank gets the same count (wrapping around), shuffled if rng."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    per = math.ceil(n / world) if n else 0
    order = np.resize(order, per * world) if n else order
    return [int(i) for i in order[rank::world]]


# ---- the family of the training loop (playerseg.train.loop.run_epochs) ---------------------
class SamFamily(Family):
    """The hooks of `run_epochs` for a `SamTrainConfig`: every rank trains and validates its shard of the
    items; `encoder_calls` and the item visits are summed over ranks (`train/items`, `train/items_distinct`)."""

    sum_keys = ("encoder_calls", "_visits")

    def build(self) -> None:
        import ray.train.torch

        cfg, w, config = self.cfg, self.worker, self.config
        seed_everything(cfg.run.seed)
        self.classes = classes = TaskClasses(tuple(cfg.data.classes))
        model = build_train_model(cfg, len(classes))
        self.geo = Geometry.of(model.sam)
        self.encoder_calls = [0]
        model.sam.image_encoder.patch_embed.register_forward_hook(
            lambda *a: self.encoder_calls.__setitem__(0, self.encoder_calls[0] + 1))
        model.to(w.device)
        ddp_kwargs = {"find_unused_parameters": True} if cfg.sam.mode not in ("decoder", "head") else None
        self.model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=ddp_kwargs)
        if cfg.sam.mode in CACHED_MODES:
            self.train_items, self.val_items = CachedItems(config["train_items"]), CachedItems(config["val_items"])
        else:
            reader = build_reader(cfg.data)
            prompt_ids = tuple(classes.id(n) for n in cfg.prompts.classes)
            self.train_items, self.val_items = (FrameItems(reader, config[k], self.geo, classes, cfg.crops, prompt_ids)
                                                for k in ("train_items", "val_items"))
        self.steps_per_epoch = math.ceil(len(_shard(len(self.train_items), w.rank, w.world, None)) / cfg.run.batch_size)
        self.optimizer = build_optimizer(cfg.optim, [p for p in self.model.parameters() if p.requires_grad])
        self.sched = build_scheduler(cfg.sched, self.optimizer, self.steps_per_epoch, cfg.run.epochs)
        self.sam_loss = SamLoss(cfg.loss)
        self.head_loss = build_loss(cfg.head_loss, len(classes)).to(w.device) if cfg.sam.mode == "head" else None

    def load(self, folder: Path) -> dict:
        return load_trained(str(folder / FILE))

    def restore(self, state: dict, resume: bool) -> None:
        core = unwrap(self.model)
        apply_trained(core.sam, state)
        if core.head is not None:
            core.head.load_state_dict(state["head"])
        if resume:
            self.optimizer.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])

    def _epoch(self, items, order, rng, train: bool) -> dict:
        cfg, w = self.cfg, self.worker
        return run_epoch(self.model if train else unwrap(self.model), items, order, cfg.run.batch_size, rng,
                         cfg.prompts, self.geo, self.sam_loss, self.head_loss, self.optimizer if train else None,
                         self.sched if train else None, w.device, w.amp)

    def train_epoch(self, epoch: int) -> dict:
        cfg, w = self.cfg, self.worker
        rng = np.random.default_rng([cfg.run.seed, epoch, w.rank])
        self.encoder_calls[0] = 0
        t0 = time.perf_counter()
        shard = _shard(len(self.train_items), w.rank, w.world, np.random.default_rng([cfg.run.seed, epoch]))
        tr = self._epoch(self.train_items, shard, rng, train=True)
        return {"train/seconds": time.perf_counter() - t0, "encoder_calls": self.encoder_calls[0],
                **{f"train/{k}": v for k, v in tr.items()},
                "_visits": np.bincount(shard, minlength=len(self.train_items))}

    def validate(self, epoch: int, last: bool, tracker) -> dict:
        w = self.worker
        if not len(self.val_items):
            return {}
        va = self._epoch(self.val_items, _shard(len(self.val_items), w.rank, w.world, None),
                         np.random.default_rng([self.cfg.run.seed, 7]), train=False)
        return {f"val/{k}": v for k, v in va.items()}

    def score(self, metrics: dict) -> float:
        # items trained this epoch over all ranks, and how many distinct: equal when the shards are disjoint
        visits = metrics.pop("_visits")
        metrics.update({"train/items": int(visits.sum()), "train/items_distinct": int((visits > 0).sum())})
        if not any(k.startswith("val/") for k in metrics):
            return math.nan  # no validation items: reported as -1
        return metrics.get("val/iou", -metrics.get("val/loss", math.inf))

    def save(self, folder: Path, epoch: int, best: float, metrics: dict) -> None:
        core, s = unwrap(self.model), self.cfg.sam
        save_trained(str(folder / FILE), core.sam, core.trained, model_type=s.model_type,
                     base_checkpoint=s.checkpoint or None, mode=s.mode, last_n=s.last_n, head=core.head, epoch=epoch,
                     optimizer=self.optimizer.state_dict(), scheduler=self.sched.state_dict(),
                     config=self.config["cfg"], best=best)


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker of `playerseg train sam` runs."""
    run_epochs(SamFamily, from_dict(SamTrainConfig, config["cfg"]), config)


# ---- the driver -----------------------------------------------------------------------------
@dataclass
class Prepared:
    """What a SAM trainer needs before it starts (`prepare`): its items, and what failed on the way."""

    run_dir: Path
    train_items: list[str]  # cache item paths (cached modes) or frame keys
    val_items: list[str]
    failures: Failures
    cache_dir: str | None = None  # the embedding cache used (cached modes)


def cache_dir_of(cfg: SamTrainConfig, run_dir: Path, spec: dict) -> str:
    """`<cache.dir or <run folder's parent>/sam_cache>/<model_type>-<hash of spec>`: one cache per
    model, weights, data and crops, shared by every run (and every sweep trial) that agrees on them."""
    digest = short_hash(spec, 10)
    root = cfg.cache.dir or str(run_dir.parent / "sam_cache")
    return f"{root.rstrip('/')}/{cfg.sam.model_type}-{digest}"


def prepare(cfg: SamTrainConfig, overwrite: bool = False) -> Prepared:
    """Paths made absolute, the run folder, and the items: in cached modes the embedding cache is
    built first (a Ray Data job; frames already cached are skipped; `overwrite`: all rebuilt), else
    frame keys. Idempotent."""
    resolve_paths(cfg)  # `load` did it; a config built in code gets it here
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.sam.model_type not in SAM_MODELS:
        raise ValueError(f"unknown SAM model type {cfg.sam.model_type!r}; types are {sorted(SAM_MODELS)}")
    train_keys, val_keys = build_reader(cfg.data, "train").keys(), build_reader(cfg.data, "val").keys()
    if cfg.sam.mode not in CACHED_MODES:
        prepared = Prepared(run_dir, list(train_keys), list(val_keys), Failures())
    else:
        spec = cache_spec(cfg.data, cfg.crops, cfg.sam.model_type, cfg.sam.checkpoint or None, cfg.prompts.classes,
                          SAM_MODELS[cfg.sam.model_type][2], cfg.cache.dtype)
        cache_dir = cache_dir_of(cfg, run_dir, spec)
        init_ray(dashboard=True, quiet=False)
        failures = build_cache(spec, cache_dir, train_keys + val_keys, cfg.cache, overwrite)
        prepared = Prepared(run_dir, list_items(cache_dir, train_keys), list_items(cache_dir, val_keys), failures,
                            cache_dir)
    if not prepared.train_items:
        raise ValueError(f"no training items for SAM in {cfg.data.root!r} ({prepared.failures.summary()})")
    if prepared.failures:
        log.warning("%s", prepared.failures.summary())
    return prepared


def build_trainer(cfg: SamTrainConfig, prepared: Prepared | None = None):
    """THE TorchTrainer of `playerseg train sam` for `cfg` (what `train_sam` and each `playerseg tune sam`
    trial run); `prepare(cfg)` first unless its result is given."""
    prepared = prepared or prepare(cfg)
    loop_config = {"cfg": to_dict(cfg), "run_dir": str(prepared.run_dir), "train_items": prepared.train_items,
                   "val_items": prepared.val_items}
    return torch_trainer(train_loop_per_worker, loop_config, cfg.run, prepared.run_dir)


def train_sam(cfg: SamTrainConfig, overwrite: bool = False) -> dict:
    """Run the job (`driver.run_job`, `prepare` first); returns {run_dir, checkpoint (final sam_trained.pt),
    best, metrics, seconds, failures, train_items, val_items, cache_dir}. `overwrite`: the cache is rebuilt."""
    prepared = None

    def trainer_of(run_dir: Path):
        nonlocal prepared
        prepared = prepare(cfg, overwrite)
        return build_trainer(cfg, prepared)

    result, out = run_job(cfg, trainer_of)
    out["best"], out["checkpoint"] = out["checkpoint"], None
    if result.checkpoint is not None:  # the latest: where the run ended
        with result.checkpoint.as_directory() as d:
            out["checkpoint"] = str(Path(out["run_dir"]) / "final" / FILE)
            write_bytes_atomic(out["checkpoint"], (Path(d) / FILE).read_bytes())
    return {**out, "failures": prepared.failures, "train_items": len(prepared.train_items),
            "val_items": len(prepared.val_items), "cache_dir": prepared.cache_dir}
