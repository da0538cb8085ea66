"""Hyperparameter sweeps on Ray Tune over the training job of `playerseg train`.

Each trial is a function trainable that builds THE trainer of `playerseg train <family>`
(`<module>.build_trainer(cfg)`, a TorchTrainer) for its config and runs it. The trial itself holds
`DRIVER_CPUS`; its Train workers ask for `run.num_workers` x (`run.cpus_per_worker`,
`run.gpus_per_worker`: fractions allowed) like any training run.

Schedulers (one Tune iteration = one epoch):
  asha  stops trials whose metric is in the worse part at the same epoch. Train V2 reports reach Tune
        through `ray.tune.integration.ray_train.TuneReportCallback` (metrics, `checkpoint_path`).
  pbt   Population Based Training: every `perturbation_interval` epochs a trial in the worst quarter
        clones a trial of the best quarter (exploit) and perturbs its hyperparameters (explore: x0.8 /
        x1.2 or a resample of a range, a neighbour or a resample of a choice; the mutations are the
        space's searched keys, `Space.mutations`, kept inside their ranges). The trials report Tune
        checkpoints (`playerseg.tune.report`: each Train checkpoint, copied into the trial's Tune folder,
        the last `keep_checkpoints` kept). An exploiting trial restarts in a new Train run folder
        `trials/<trial_id>/pbt-<donor>-epoch<NNN>/` from the donor's weights and epoch with ITS new
        hyperparameters (`run.init_from`: fresh lr schedule advanced to that epoch, optimizer moments
        kept when the optimizer is the same; see `playerseg.train.loop.init_checkpoint`). Keys that shape
        the weights (`Family.weights_keys`: the Unet's `model`, `data.classes`) are sampled but never
        mutated: an exploit takes them from the donor with its weights. Each result carries the
        trial's lineage: `run_folder`, `parent_trial`, `parent_epoch`.

Outputs, in `<out_dir>/<name>/` (the Tune experiment folder):
  trials/<trial_id>/    each trial's run folder (config.yaml, metrics.csv, checkpoints, W&B); under PBT,
                        its runs after exploits in trials/<trial_id>/pbt-<donor>-epoch<NNN>/ (parent.json)
  <trial_id>/           Tune's trial folder (progress.csv, result.json; PBT: its Tune checkpoints);
                        PBT also writes pbt_global.txt / pbt_policy_<trial_id>.txt (every exploit)
  results.csv / results.parquet   one row per trial: its config (`config/<key>`), last metrics,
                        `best_<metric>`, iterations, status
  best_config.yaml      the best trial's full training config (`playerseg train <family> --config`)
  best.json             best trial id, its metrics, its best checkpoint path
  sweep.yaml            this SweepConfig: `resume=True` continues the sweep as it was started
                        (`Tuner.restore`: unfinished and errored trials run again from their checkpoints)

Train V2 removes the worker placement group of a trial stopped by the scheduler through the Ray
State API, which needs the dashboard: `run_sweep` starts a local Ray with it (or joins RAY_ADDRESS).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from playerseg.config import dump, to_dict
from playerseg.io import atomic_path, write_json_atomic, write_table_atomic
from playerseg.tune.space import Space, apply, load_space

log = logging.getLogger(__name__)

DRIVER_CPUS = 0.01  # the trial's own process: it only waits on its TorchTrainer


@dataclass(frozen=True)
class Family:
    config: str  # "module:Class" of the training config
    trainer_module: str  # exposes build_trainer(cfg) -> TorchTrainer (the one `playerseg train` runs)
    forced: dict = field(default_factory=dict)  # values every trial needs (e.g. validate every epoch)
    pbt: bool = False  # its training loop starts from run.init_from (loop.init_checkpoint): PBT can exploit
    weights_keys: tuple[str, ...] = ()  # config keys / sections that shape the weights: never PBT-mutated

    def config_cls(self):
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, Family] = {
    "unet": Family("playerseg.train.config:TrainConfig", "playerseg.train.trainer", {"val.every": 1},
                   pbt=True, weights_keys=("model", "data.classes")),
    "sam": Family("playerseg.sam.train:SamTrainConfig", "playerseg.sam.train", {}, pbt=True,
                  weights_keys=("sam.model_type", "sam.checkpoint", "sam.mode", "sam.last_n", "sam.head_hidden",
                                "data.classes")),
}


@dataclass
class SweepConfig:
    family: str = "unet"  # a key of FAMILIES
    space: str = ""  # search space YAML (tune_spaces/unet.yaml)
    config: str = ""  # base training config YAML (configs/unet_acme.yaml); "" = defaults
    overrides: list[str] = field(default_factory=list)  # base config overrides, "run.epochs=6"
    name: str = "sweep"  # experiment folder <out_dir>/<name>
    out_dir: str = "runs/tune"
    num_samples: int = 8  # samples of the space (each grid point is repeated this many times)
    scheduler: Literal["asha", "pbt"] = "asha"
    metric: str = "score"  # a metric the training reports (score = val.metric, higher is better)
    mode: Literal["max", "min"] = "max"
    max_concurrent: int = 0  # trials at once; 0 = as many as the cluster's CPUs/GPUs hold now
    grace_period: int = 1  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = 2  # ASHA: 1/reduction_factor of the trials go on at each rung
    perturbation_interval: int = 2  # PBT: epochs between exploit/explore steps
    keep_checkpoints: int = 4  # PBT: Tune checkpoints kept per trial (what exploits clone)
    seed: int = 0  # sampling of the space
    wandb: bool = True  # Tune's W&B callback (offline unless WANDB_API_KEY is set)
    resume: bool = False  # continue <out_dir>/<name> (Tuner.restore)


def base_config(cfg: SweepConfig):
    """The family's training config from `cfg.config` + `cfg.overrides` (`load` makes its local paths
    absolute: trials run in other processes, nodes and folders)."""
    from playerseg.config import load

    family = FAMILIES[cfg.family]
    return load(family.config_cls(), cfg.config or None, cfg.overrides)


def trial_config(family: Family, base_tree: dict, values: dict, trials_dir: str, trial_id: str):
    """A trial's training config: base, then the sampled values, then the family's forced values;
    its run folder is <trials_dir>/<trial_id>."""
    cls = family.config_cls()
    cfg = apply(cls, base_tree, {**values, **family.forced})
    cfg.run.out_dir, cfg.run.name = trials_dir, trial_id
    return cfg


def run_trial(config: dict, family_name: str, base_tree: dict, trials_dir: str, tune_checkpoints: int = 0) -> None:
    """The Tune trainable: `playerseg train`'s TorchTrainer for this trial's config. With `tune_checkpoints`
    (PBT: how many to keep) it reports Tune checkpoints and starts where its Tune checkpoint says
    (`playerseg.tune.report.trial_run`: its own run folder, or a new one from a donor's weights)."""
    from ray import tune

    family = FAMILIES[family_name]
    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(family, base_tree, config, trials_dir, trial_id)
    run, parent = trial_id, None
    if tune_checkpoints:
        from playerseg.tune.report import trial_run

        run, parent = trial_run(trial_id, trials_dir, config)
    run_dir = Path(trials_dir) / run
    cfg.run.out_dir, cfg.run.name = str(run_dir.parent), run_dir.name
    if parent is not None:
        cfg.run.init_from = parent["init_from"]
        if parent.get("epoch") is not None and parent["epoch"] + 1 >= cfg.run.epochs:
            return  # cloned a donor's last epoch: nothing left to train (the trial ends as the donor did)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump(cfg, run_dir / "config.yaml")
    trainer = importlib.import_module(family.trainer_module).build_trainer(cfg)
    # a re-run of the same Train run folder (restore) continues from its latest Train checkpoint
    if tune_checkpoints:
        from playerseg.tune.report import fit_reporting, lineage_metrics

        fit_reporting(trainer, {"trial_id": trial_id, "run": run}, lineage_metrics(run, parent), tune_checkpoints)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        trainer.run_config.callbacks = [*(trainer.run_config.callbacks or []), TuneReportCallback()]
        trainer.fit()


def _scheduler(cfg: SweepConfig, family: Family, space: Space, max_t: int):
    from ray.tune.schedulers import ASHAScheduler

    if cfg.scheduler == "asha":
        # max_t past the last epoch: a trial that is never cut ends by itself (its Train run shuts down cleanly)
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t + 1, grace_period=cfg.grace_period,
                             reduction_factor=cfg.reduction_factor)
    if cfg.scheduler == "pbt":
        from playerseg.tune.pbt import pbt_scheduler

        # exploit = restart the trial from a better trial's Tune checkpoint (run_trial, tune_checkpoints)
        return pbt_scheduler(space, family.weights_keys, cfg.perturbation_interval)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; schedulers are asha, pbt")


def _max_concurrent(base, requested: int) -> int:
    """Trials at once: `requested`, else what the cluster's current CPUs/GPUs hold."""
    import ray

    if requested > 0:
        return requested
    res = ray.cluster_resources()
    run = base.run
    fits = [math.floor(res.get("CPU", 0) / max(1e-6, run.num_workers * run.cpus_per_worker))]
    if run.gpus_per_worker > 0:
        fits.append(math.floor(res.get("GPU", 0) / (run.num_workers * run.gpus_per_worker)))
    return max(1, min(fits))


def _wandb_callback(cfg: SweepConfig, base, exp_dir: Path):
    from ray.air.integrations.wandb import WandbLoggerCallback

    from playerseg.train.tracking import wandb_mode

    return WandbLoggerCallback(project=getattr(base.run, "wandb_project", "playerseg"), group=cfg.name,
                               mode=wandb_mode(), dir=str(exp_dir), log_config=True)


def _scalar(v):
    return json.dumps(v) if isinstance(v, (list, tuple, dict)) else v


def results_table(results, metric: str, mode: str):
    """pandas DataFrame, one row per trial: config/<key>, last metrics, best_<metric>, status."""
    import pandas as pd

    rows = []
    for r in results:
        history = r.metrics_dataframe
        best = math.nan
        if history is not None and metric in history:
            best = history[metric].max() if mode == "max" else history[metric].min()
        m = r.metrics or {}
        # the trial's folder is named by its id (trial_dirname_creator); its last metrics may be a PBT donor's
        row = {"trial_id": Path(r.path).name, "status": "ERROR" if r.error else "OK",
               "iterations": m.get("training_iteration", 0), f"best_{metric}": best, "path": r.path}
        row.update({f"config/{k}": _scalar(v) for k, v in (r.config or {}).items()})
        row.update({k: _scalar(v) for k, v in m.items() if k not in ("config", "trial_id", "training_iteration")})
        rows.append(row)
    return pd.DataFrame(rows)


def _best_checkpoint(result, metric: str, mode: str) -> str | None:
    """The checkpoint reported with the trial's best `metric` (else its latest one still on disk)."""
    history = result.metrics_dataframe
    if history is None or "checkpoint_path" not in history:
        return None
    history = history.dropna(subset=["checkpoint_path"])
    if metric in history and len(history):
        ordered = history.sort_values(metric, ascending=mode == "min")
        for path in ordered["checkpoint_path"]:
            if Path(path).exists() or "://" in path:
                return path
    paths = [p for p in history["checkpoint_path"] if Path(p).exists()]
    return paths[-1] if paths else None


def write_results(cfg: SweepConfig, results, base, exp_dir: Path) -> dict:
    """results.csv/.parquet, best_config.yaml, best.json; returns the best.json content."""
    import pyarrow as pa

    family = FAMILIES[cfg.family]
    table = results_table(results, cfg.metric, cfg.mode)
    with atomic_path(str(exp_dir / "results.csv")) as p:
        table.to_csv(p, index=False)
    write_table_atomic(str(exp_dir / "results.parquet"), pa.Table.from_pandas(table, preserve_index=False))
    best = results.get_best_result(metric=cfg.metric, mode=cfg.mode, scope="all")
    best_cfg = apply(family.config_cls(), to_dict(base), best.config)
    best_cfg.run.name = f"{cfg.name}-best"
    dump(best_cfg, exp_dir / "best_config.yaml")
    summary = {"trial_id": Path(best.path).name, "trial_dir": best.path, "config": best.config,
               "checkpoint": _best_checkpoint(best, cfg.metric, cfg.mode),
               "metric": cfg.metric, "mode": cfg.mode,
               f"best_{cfg.metric}": table.set_index("path").loc[best.path, f"best_{cfg.metric}"],
               "trials": len(table), "errors": int((table["status"] == "ERROR").sum())}
    write_json_atomic(str(exp_dir / "best.json"), json.loads(json.dumps(summary, default=float)))
    return summary


def run_sweep(cfg: SweepConfig) -> dict:
    """Run (or resume) the sweep; returns best.json's content plus `dir`."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from playerseg.ray_cluster import init_ray

    exp_dir = Path(cfg.out_dir).resolve() / cfg.name
    if cfg.resume:  # the sweep as it was started (its space, base config, scheduler...)
        from playerseg.config import load

        if not (exp_dir / "sweep.yaml").is_file():
            raise FileNotFoundError(f"{exp_dir}: no sweep to resume there (no sweep.yaml)")
        cfg = dataclasses.replace(load(SweepConfig, exp_dir / "sweep.yaml"), resume=True)
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown family {cfg.family!r}; families are {sorted(FAMILIES)}")
    family = FAMILIES[cfg.family]
    base = base_config(cfg)
    space = load_space(family.config_cls(), cfg.space, base)  # errors here, before any trial
    if cfg.scheduler == "pbt" and not family.pbt:
        raise ValueError(f"family {cfg.family!r} can't run PBT: its training loop does not start from a donor "
                         f"trial's weights (run.init_from); use --scheduler asha")
    if cfg.scheduler == "pbt" and cfg.keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints={cfg.keep_checkpoints}: PBT clones trials' Tune checkpoints, keep >= 1")
    if not hasattr(importlib.import_module(family.trainer_module), "build_trainer"):
        raise ValueError(f"family {cfg.family!r}: {family.trainer_module} has no build_trainer(cfg) to run trials with")
    if not cfg.resume and (exp_dir / "tuner.pkl").exists():
        raise FileExistsError(f"{exp_dir}: a sweep exists there; resume it (--resume) or pick another --name")
    trials_dir = str(exp_dir / "trials")
    init_ray(dashboard=True, quiet=False)  # Train V2 (each trial's trainer) needs the dashboard
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, family_name=cfg.family, base_tree=to_dict(base), trials_dir=trials_dir,
                             tune_checkpoints=cfg.keep_checkpoints if cfg.scheduler == "pbt" else 0),
        {"cpu": DRIVER_CPUS})
    if cfg.resume:
        if not tune.Tuner.can_restore(str(exp_dir)):
            raise FileNotFoundError(f"{exp_dir}: no sweep to resume there")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        absolute = {k: str(Path(getattr(cfg, k)).resolve()) for k in ("space", "config") if getattr(cfg, k)}
        dump(dataclasses.replace(cfg, resume=False, **absolute), exp_dir / "sweep.yaml")
        callbacks = [_wandb_callback(cfg, base, exp_dir)] if cfg.wandb else []
        concurrent = _max_concurrent(base, cfg.max_concurrent)
        log.info("sweep %s: %d samples, %s, up to %d trials at once", cfg.name, cfg.num_samples, cfg.scheduler,
                 concurrent)
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples,
                scheduler=_scheduler(cfg, family, space, base.run.epochs),
                search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrent),
                trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name=cfg.name, storage_path=str(exp_dir.parent), callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
    results = tuner.fit()
    summary = write_results(cfg, results, base, exp_dir)
    return {**summary, "dir": str(exp_dir)}
