"""`playerseg train unet`: the Ray Train job of the Unet family (`unet.train_loop_per_worker`, `driver.run_job`).

The run folder is `<run.out_dir>/<run.name>`: Ray's checkpoints (`checkpoint_epochNNN/`, the best
`run.keep_checkpoints` by `val.metric` plus the latest), `config.yaml`, `metrics.csv/json`,
`overlays/`, `wandb/`, `best/` (the best model so far) and, at the end, `export/`. Running the same
name again continues the run from its latest checkpoint; `--resume DIR` starts from a checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

from playerseg.config import to_dict
from playerseg.train.config import TrainConfig
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
