"""`playerseg train unet`: the Ray Train job (TorchTrainer) of the Unet family (`unet.train_loop_per_worker`).

The run folder is `<run.out_dir>/<run.name>`: Ray's checkpoints (`checkpoint_epochNNN/`, the best
`run.keep_checkpoints` by `val.metric` plus the latest), `config.yaml`, `metrics.csv/json`,
`overlays/`, `wandb/`, `best/` (the best model so far) and, at the end, `export/`. Running the same
name again continues the run from its latest checkpoint; `--resume DIR` starts from a checkpoint.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from playerseg.config import dump, resolve_paths, to_dict
from playerseg.train.config import RunOptions, TrainConfig

log = logging.getLogger(__name__)


def run_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.run.out_dir).resolve() / cfg.run.name


def torch_trainer(loop, loop_config: dict, run: RunOptions, run_dir: Path, **kwargs):
    """A TorchTrainer of `loop` (every family's): workers, CPUs/GPUs, failure and checkpoint policy from
    `run`; Ray's results under `run_dir.parent` / `run.name`. `kwargs` go to TorchTrainer."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = run.gpus_per_worker > 0
    resources = {"CPU": run.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = run.gpus_per_worker
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=run.num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=run.keep_checkpoints, checkpoint_score_attribute="score",
                                               checkpoint_score_order="max"),
        ),
        **kwargs,
    )


def build_trainer(cfg: TrainConfig):
    from playerseg.train.unet import train_loop_per_worker

    run_dir = run_dir_of(cfg)
    return torch_trainer(train_loop_per_worker, {"cfg": to_dict(cfg), "run_dir": str(run_dir)}, cfg.run, run_dir)


def best_checkpoint(result):
    """The reported checkpoint with the highest score (else the latest)."""
    scored = [(m.get("score", -1.0), c) for c, m in (result.best_checkpoints or [])]
    return max(scored, key=lambda t: t[0])[1] if scored else result.checkpoint


def train(cfg: TrainConfig) -> dict:
    """Run the job; returns {run_dir, checkpoint, metrics, export, seconds}."""
    from playerseg.ray_cluster import init_ray
    from playerseg.train.export import export_model

    resolve_paths(cfg)  # `load` did it; a config built in code gets it here
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump(cfg, run_dir / "config.yaml")
    failures_file = run_dir / "failures.txt"  # the samples the workers skipped (UnetFamily.finish)
    failures_file.unlink(missing_ok=True)  # a resumed run reads its data again and says anew
    init_ray(dashboard=True, quiet=False)  # Train V2 needs the dashboard; the workers print the progress
    t0 = time.perf_counter()
    result = build_trainer(cfg).fit()
    seconds = time.perf_counter() - t0
    ckpt = best_checkpoint(result)
    out = {"run_dir": str(run_dir), "checkpoint": ckpt.path if ckpt else None, "metrics": result.metrics,
           "seconds": seconds, "export": [],
           "failures": failures_file.read_text().strip() if failures_file.is_file() else ""}
    if ckpt is not None and cfg.export.formats:
        extra = {"train_seconds": seconds, "run_dir": str(run_dir)}
        with ckpt.as_directory() as d:
            for target in [run_dir / "export", *([Path(cfg.export.dir)] if cfg.export.dir else [])]:
                export_model(d, str(target), cfg.export.formats, cfg.export.half, extra)
                out["export"].append(str(target))
    return out
