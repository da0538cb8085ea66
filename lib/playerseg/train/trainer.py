"""`playerseg train unet`: the Ray Train job of the Unet family (`unet.train_loop_per_worker`, `driver.run_job`).

    playerseg train unet --config configs/unet_acme.yaml --num-workers 2 --gpus-per-worker 1 \\
        --set optim.lr=3e-4 --set run.epochs=40

The run folder is `<run.out_dir>/<run.name>`: Ray's checkpoints (`checkpoint_epochNNN/`, the best
`run.keep_checkpoints` by `val.metric` plus the latest), `config.yaml`, `metrics.csv/json`,
`overlays/`, `wandb/`, `best/` (the best model so far) and, at the end, `export/`. Running the same
name again continues the run from its latest checkpoint; `--resume DIR` starts from a checkpoint.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from playerseg.config import add_config_arguments, from_args, to_dict
from playerseg.train.config import RUN_FLAGS, TrainConfig, add_run_arguments
from playerseg.train.driver import run_dir_of, run_job, torch_trainer

log = logging.getLogger(__name__)


def build_trainer(cfg: TrainConfig):
    from playerseg.train.unet import train_loop_per_worker

    run_dir = run_dir_of(cfg)
    return torch_trainer(train_loop_per_worker, {"cfg": to_dict(cfg), "run_dir": str(run_dir)}, cfg.run, run_dir)


def train(cfg: TrainConfig) -> dict:
    """Run the job (`driver.run_job`); returns {run_dir, checkpoint (the best), metrics, seconds, failures
    (the samples the workers skipped), export (the folders exported to)}."""
    from playerseg.train.export import export_model

    def trainer_of(run_dir: Path):
        (run_dir / "failures.txt").unlink(missing_ok=True)  # UnetFamily.finish's; a resumed run says anew
        return build_trainer(cfg)

    _, out = run_job(cfg, trainer_of)
    run_dir = Path(out["run_dir"])
    failures = run_dir / "failures.txt"
    out.update(failures=failures.read_text().strip() if failures.is_file() else "", export=[])
    if out["checkpoint"] is not None and cfg.export.formats:
        extra = {"train_seconds": out["seconds"], "run_dir": str(run_dir)}
        for target in [run_dir / "export", *([Path(cfg.export.dir)] if cfg.export.dir else [])]:
            export_model(out["checkpoint"], str(target), cfg.export.formats, cfg.export.half, extra)
            out["export"].append(str(target))
    return out


# ---- command line -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, TrainConfig)
    add_run_arguments(p)
    p.add_argument("--accum-steps", type=int, help="gradient accumulation (run.accum_steps)")
    p.add_argument("--export-dir", help="also export the best model here (export.dir)")


_FLAGS = {**RUN_FLAGS, "accum_steps": "run.accum_steps", "export_dir": "export.dir"}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return from_args(TrainConfig, args, _FLAGS)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = train(cfg)
    m = out["metrics"] or {}
    wanted = {f"val/{k}" for k in cfg.val.score_keys} | {"val/score", "val/players_over_led_iou", "val/miou"}
    keys = [k for k in m if k.startswith("val/iou/") or k in wanted]
    print(f"run folder: {out['run_dir']}  ({out['seconds'] / 60:.1f} min)")
    print(f"best checkpoint: {out['checkpoint']}")
    print("last epoch: " + ", ".join(f"{k}={m[k]:.4f}" for k in keys if isinstance(m[k], float)))
    for path in out["export"]:
        print(f"exported: {path}")
    if out["failures"]:  # trained on the rest; the exit rule of every job: something failed -> 1
        print(f"skipped samples ({out['run_dir']}/failures.txt): {out['failures']}")
        return 1
    return 0
