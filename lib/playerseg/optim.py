"""Optimizers and learning-rate schedules by name, linear warmup, stochastic weight averaging.

    opt = build_optimizer(OptimConfig(name="adamw", lr=1e-3), model.parameters())
    sched = build_scheduler(SchedConfig(name="cosine", warmup_epochs=1), opt, steps_per_epoch, epochs)
    for each optimizer step: sched.step()        at each epoch end: sched.epoch_end(val_metric)

Every schedule except `plateau` is a function of the optimizer step, with `warmup_epochs` of
linear warmup from `warmup_start` x lr in front:
- cosine: cosine decay to `min_lr_ratio` x lr;   linear: linear decay to `min_lr_ratio` x lr;
- step: x `gamma` every `step_epochs` epochs;      constant: warmup, then constant;
- onecycle: torch's OneCycleLR (its own warmup, `pct_start`);
- plateau: ReduceLROnPlateau on the validation metric at each epoch end (after the warmup).
`Scheduler.state_dict()` holds everything needed to resume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch.optim import swa_utils


@dataclass
class OptimConfig:
    name: str = "adamw"  # a key of OPTIMIZERS
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD, RMSprop
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, AdamW
    nesterov: bool = True  # SGD


@dataclass
class SchedConfig:
    name: str = "cosine"  # a key of SCHEDULERS
    warmup_epochs: float = 1.0
    warmup_start: float = 0.01  # first warmup lr as a fraction of lr
    min_lr_ratio: float = 0.01  # cosine / linear end
    step_epochs: int = 10  # step
    gamma: float = 0.1  # step, plateau
    patience: int = 3  # plateau
    mode: str = "max"  # plateau: the validation metric is better when larger ("max") or smaller
    pct_start: float = 0.3  # onecycle


@dataclass
class SWAConfig:
    enabled: bool = False
    start_epoch: float = 0.75  # fraction of the epochs (< 1) or an epoch number (>= 1)
    lr: float = 1e-4  # SWALR target lr
    anneal_epochs: int = 1


OPTIMIZERS: dict[str, Callable[[OptimConfig, Iterable], torch.optim.Optimizer]] = {
    "sgd": lambda c, p: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                                        nesterov=c.nesterov and c.momentum > 0),
    "adam": lambda c, p: torch.optim.Adam(p, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay),
    "adamw": lambda c, p: torch.optim.AdamW(p, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay),
    "rmsprop": lambda c, p: torch.optim.RMSprop(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
}


def build_optimizer(cfg: OptimConfig, params: Iterable) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.name!r}; optimizers are {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[cfg.name](cfg, params)


def _warmup(cfg: SchedConfig, step: int, warmup_steps: int) -> float | None:
    if step < warmup_steps:
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * step / warmup_steps
    return None


def _cosine(cfg, step, warm, total):
    t = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _linear(cfg, step, warm, total):
    t = min(1.0, (step - warm) / max(1, total - warm))
    return 1.0 - (1.0 - cfg.min_lr_ratio) * t


# name -> lr multiplier after warmup as a function of (cfg, step, warmup steps, total steps, steps per epoch)
SCHEDULERS: dict[str, Callable | None] = {
    "cosine": lambda c, s, w, t, e: _cosine(c, s, w, t),
    "linear": lambda c, s, w, t, e: _linear(c, s, w, t),
    "step": lambda c, s, w, t, e: c.gamma ** (s // max(1, c.step_epochs * e)),
    "constant": lambda c, s, w, t, e: 1.0,
    "onecycle": None,  # torch OneCycleLR
    "plateau": None,  # torch ReduceLROnPlateau
}


class Scheduler:
    """One schedule; `step()` after every optimizer step, `epoch_end(metric)` after validation."""

    def __init__(self, cfg: SchedConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
        if cfg.name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {cfg.name!r}; schedulers are {sorted(SCHEDULERS)}")
        self.cfg = cfg
        self.optimizer = optimizer
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.steps = 0
        self.plateau = None
        if cfg.name == "onecycle":
            self.torch_sched = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=self.total + 1,
                pct_start=cfg.pct_start)
        else:
            fn = SCHEDULERS[cfg.name] or (lambda c, s, w, t, e: 1.0)

            def multiplier(step: int) -> float:
                warm = _warmup(cfg, step, self.warmup_steps)
                return warm if warm is not None else fn(cfg, step, self.warmup_steps, self.total, steps_per_epoch)

            self.torch_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
            if cfg.name == "plateau":
                self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                    optimizer, mode=cfg.mode, factor=cfg.gamma, patience=cfg.patience)

    def step(self) -> None:
        self.steps += 1
        if self.plateau is None or self.steps <= self.warmup_steps:  # plateau: lambda only warms up
            self.torch_sched.step()

    def epoch_end(self, metric: float | None = None) -> None:
        if self.plateau is not None and self.steps >= self.warmup_steps and metric is not None \
                and not math.isnan(metric):
            self.plateau.step(metric)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "torch": self.torch_sched.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.torch_sched.load_state_dict(state["torch"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])


def build_scheduler(cfg: SchedConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> Scheduler:
    return Scheduler(cfg, optimizer, steps_per_epoch, epochs)


class SWA:
    """Stochastic weight averaging (torch.optim.swa_utils): average the weights of the last epochs.

    From `start_epoch` on, `epoch_end(model, epoch)` adds the weights to the average and SWALR takes
    over the lr; `finalize(loader, forward)` recomputes the BatchNorm statistics of the averaged model.
    """

    def __init__(self, cfg: SWAConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epochs: int):
        self.cfg = cfg
        self.start = int(cfg.start_epoch * epochs) if cfg.start_epoch < 1 else int(cfg.start_epoch)
        self.averaged = swa_utils.AveragedModel(model)
        self.swalr = swa_utils.SWALR(optimizer, swa_lr=cfg.lr, anneal_epochs=cfg.anneal_epochs)

    def active(self, epoch: int) -> bool:
        return epoch >= self.start

    def epoch_end(self, model: torch.nn.Module, epoch: int) -> None:
        if self.active(epoch):
            self.averaged.update_parameters(model)
            self.swalr.step()

    def finalize(self, loader, device: torch.device) -> torch.nn.Module:
        """BatchNorm statistics of the averaged weights over `loader` (yielding (images, targets))."""
        swa_utils.update_bn((images for images, _ in loader), self.averaged, device=device)
        return self.averaged.module

    def state_dict(self) -> dict:
        return {"averaged": self.averaged.state_dict(), "swalr": self.swalr.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.swalr.load_state_dict(state["swalr"])
