"""The driver of every `playerseg train <family>` job (`run_job`: the Unet's `train.trainer.train`, SAM's
`sam.train.train_sam`) and the TorchTrainer of a family's loop (`torch_trainer`). Resuming, the time budget
and failed workers are the loop's and Ray's; a family's driver keeps only what it prepares before the fit
and what it makes of the result."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from playerseg.config import dump, resolve_paths
from playerseg.train.config import RunOptions


def run_dir_of(cfg) -> Path:
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


def best_checkpoint(result):
    """The reported checkpoint with the highest score (else the latest)."""
    scored = [(m.get("score", -1.0), c) for c, m in (result.best_checkpoints or [])]
    return max(scored, key=lambda t: t[0])[1] if scored else result.checkpoint


def run_job(cfg, trainer_of: Callable[[Path], object]):
    """Run a family's job: paths made absolute (`load` did it; a config built in code gets it here), the run
    folder with its `config.yaml`, Ray (with its dashboard: Train V2 needs it; the workers print the progress),
    then `trainer_of(run_dir)` (the family's preparation and its `torch_trainer`) fitted. Returns Ray's
    result and {run_dir, checkpoint (the best one's folder, else None), metrics (the last epoch's), seconds
    (the whole job: Ray, preparation, fit)}."""
    from playerseg.ray_cluster import init_ray

    t0 = time.perf_counter()
    resolve_paths(cfg)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump(cfg, run_dir / "config.yaml")
    init_ray(dashboard=True, quiet=False)
    result = trainer_of(run_dir).fit()
    best = best_checkpoint(result)
    return result, {"run_dir": str(run_dir), "checkpoint": best.path if best else None, "metrics": result.metrics,
                    "seconds": time.perf_counter() - t0}
