"""THE epoch loop of every training family (`run_epochs(family_cls, cfg, config)` in each Ray Train worker).

A family (`playerseg.train.unet.UnetFamily`, `playerseg.sam.train.SamFamily`) supplies the hooks:
`build` (model, optimizer, schedule, data), `load` / `restore` (a checkpoint's state), `train_epoch`,
`validate`, `score` and `save`. The loop owns the rest:
  start   the run's latest checkpoint (a restarted worker group) or `run.resume`: everything restored,
          the next epoch; else `run.init_from` (a PBT exploit): the donor's weights and epoch with THIS
          config's optimizer hyperparameters and schedule (`init_checkpoint`).
  epochs  `run.inject_failure_epoch` (rank 0 dies once), the time budget (`run.time_budget_minutes`,
          rank 0's clock decides for every rank: that epoch is validated and checkpointed like the last).
  metrics one reduction over the workers (`reduce_metrics`): train/ and val/ keys are the mean over the
          ranks that have them, the family's `sum_keys` the sum; then the family's score; the best score.
  report  rank 0 logs (`Tracker`), writes the family's best model when the score improved, and every
          rank calls `ray.train.report` (rank 0 with the checkpoint `checkpoint_epoch<NNN>`).
"""
from __future__ import annotations

import math
import numbers
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from playerseg.train.config import RunOptions


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Worker:
    """This Ray Train worker: rank, world size, device, AMP (asked for, on CUDA), the run folder."""

    rank: int
    world: int
    device: torch.device
    amp: bool
    run_dir: Path

    @property
    def distributed(self) -> bool:
        return self.world > 1 and dist.is_initialized()


def current_worker(run: RunOptions, run_dir: Path) -> Worker:
    """This worker's `Worker`; torch threads = run.cpus_per_worker."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(run.cpus_per_worker)))
    device = ray.train.torch.get_device()
    return Worker(ctx.get_world_rank(), ctx.get_world_size(), device, run.amp and device.type == "cuda", run_dir)


class Family:
    """The hooks of a training family, on `cfg` (its config), `config` (the train_loop_config) and `worker`:
      build()                  sets `model` (maybe DDP), `optimizer`, `sched` (`optim.Scheduler`),
                               `steps_per_epoch` (optimizer steps) and the family's data
      load(folder) -> state    the checkpoint in `folder`
      restore(state, resume)   its weights; with `resume` the optimizer, schedule and the rest too
      train_epoch(epoch)       -> this rank's train metrics
      validate(epoch, last, tracker) -> this rank's `val/` metrics (`last`: the run's last epoch)
      score(metrics)           the epoch's score from the reduced metrics (higher is better, NaN:
                               none); may add metrics derived from them
      save(folder, epoch, best, metrics)  rank 0: this epoch's checkpoint into `folder`
      save_best(epoch, metrics)           rank 0, when the score improved (optional)
      finish()                            rank 0, after the last epoch (optional)"""

    sum_keys: tuple[str, ...] = ()  # metrics summed over the ranks (numbers or arrays), not averaged

    def __init__(self, cfg, config: dict, worker: Worker):
        self.cfg, self.config, self.worker = cfg, config, worker

    def save_best(self, epoch: int, metrics: dict) -> None:
        pass

    def finish(self) -> None:
        pass


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
    own config (a PBT exploit: a donor trial's weights, the mutated hyperparameters). The loop restores:
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
    """The optimizer side of starting from `init_checkpoint`'s `state`: moments kept when it is the same
    optimizer, this config's schedule advanced to the start epoch; returns that epoch."""
    if (state.get("config") or {}).get("optim", {}).get("name") == optim_name:
        keep_moments(optimizer, state["optimizer"])
    start_epoch = int(state["epoch"]) + 1
    advance_schedule(sched, min(start_epoch, epochs) * steps_per_epoch)
    return start_epoch


def reduce_metrics(metrics: dict, worker: Worker, sum_keys=()) -> dict:
    """One epoch's metrics over every rank: `sum_keys` summed (numbers or arrays), train/ and val/ keys
    averaged over the ranks that have them (rank 0 alone may validate), the rest this rank's own."""
    if not worker.distributed:
        return dict(metrics)
    every: list = [None] * worker.world
    dist.all_gather_object(every, metrics)
    out = dict(metrics)
    for key in {k for m in every for k in m}:
        values = [m[key] for m in every if key in m]
        if key in sum_keys:
            out[key] = sum(values[1:], values[0])
        elif key.startswith(("train/", "val/")) and all(isinstance(v, numbers.Real) for v in values):
            out[key] = float(sum(values)) / len(values)
        elif key not in out:
            out[key] = values[0]
    return out


def _rank0_says(flag: bool, worker: Worker) -> bool:
    """Rank 0's `flag` on every rank (every rank stops at the same epoch)."""
    if not worker.distributed:
        return flag
    t = torch.tensor([float(flag)], device=worker.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


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


def _die_once(run: RunOptions, worker: Worker, epoch: int) -> None:
    """`run.inject_failure_epoch`: rank 0 exits at the start of that epoch, once (a marker in the run folder)."""
    marker = worker.run_dir / f".injected-failure-{epoch}"
    if epoch == run.inject_failure_epoch and worker.rank == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("this worker died here once on purpose (run.inject_failure_epoch)\n")
        os._exit(1)


def run_epochs(family_cls: type[Family], cfg, config: dict) -> None:
    """Train `cfg` (a family's config; `config` is the worker's train_loop_config, with `cfg` as a dict
    and `run_dir`) with the hooks of `family_cls`, from where its checkpoints say."""
    from playerseg.train.tracking import Tracker

    run = cfg.run
    worker = current_worker(run, Path(config["run_dir"]))
    family = family_cls(cfg, config, worker)
    family.build()

    start_epoch, best = 0, -math.inf
    checkpoint = start_checkpoint(run)
    init = init_checkpoint(run) if checkpoint is None else None
    if checkpoint is not None or init is not None:
        with (checkpoint or init).as_directory() as d:
            state = family.load(Path(d))
        family.restore(state, resume=checkpoint is not None)
        if checkpoint is not None:
            start_epoch, best = int(state["epoch"]) + 1, state.get("best", -math.inf)
        else:  # the donor's weights and epoch, THIS config's hyperparameters (its lr takes effect)
            start_epoch = continue_from_init(state, family.optimizer, family.sched, cfg.optim.name, run.epochs,
                                             family.steps_per_epoch)

    rank0 = worker.rank == 0
    tracker = Tracker(str(worker.run_dir), config["cfg"], name=run.name, project=run.wandb_project,
                      enabled=rank0, start_epoch=start_epoch)
    started = time.monotonic()
    for epoch in range(start_epoch, run.epochs):
        _die_once(run, worker, epoch)
        metrics = {"epoch": epoch, "lr": family.sched.lr, **family.train_epoch(epoch)}
        budget = run.time_budget_minutes
        out_of_time = _rank0_says(budget > 0 and time.monotonic() - started > 60 * budget, worker)
        metrics.update(family.validate(epoch, epoch == run.epochs - 1 or out_of_time, tracker))
        metrics = reduce_metrics(metrics, worker, family.sum_keys)
        score = family.score(metrics)
        family.sched.epoch_end(score)
        metrics["score"] = score if not math.isnan(score) else -1.0
        improved = not math.isnan(score) and score > best
        best = max(best, score) if not math.isnan(score) else best
        metrics["best_score"] = best if best > -math.inf else -1.0
        if rank0:
            tracker.log(metrics)
            if improved:
                family.save_best(epoch, metrics)
        report_epoch(metrics, epoch, (lambda folder: family.save(folder, epoch, best, metrics)) if rank0 else None)
        if out_of_time:
            break
    if rank0:
        family.finish()
    tracker.finish()
