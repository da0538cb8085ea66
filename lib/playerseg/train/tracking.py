"""Run tracking: W&B (offline by default), metrics as CSV + JSON, prediction overlays as PNG.

W&B runs offline into `<run>/wandb` unless `WANDB_API_KEY` is set (then online); `WANDB_MODE`
set by the user wins (`disabled` turns it off). Keys only ever come from the environment.
Every epoch rewrites `<run>/metrics.json` (the whole history) and `<run>/metrics.csv` atomically;
on resume the history after the resumed epoch is dropped.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from playerseg.classes import TaskClasses
from playerseg.io import write_bytes_atomic, write_json_atomic
from playerseg.viz import overlay, resize_width, save_png

log = logging.getLogger(__name__)


def overlay_panel(images, truths, preds, names, width: int = 1440) -> np.ndarray:
    """One RGB picture: a row per sample of image | truth | prediction (`viz.overlay` colours)."""
    classes = TaskClasses(tuple(names))
    rows = []
    for im, t, p in zip(images, truths, preds):
        row = np.concatenate([im, overlay(im, t, classes), overlay(im, p, classes)], axis=1)
        rows.append(resize_width(row, width))
    return np.concatenate(rows, axis=0)


def wandb_mode() -> str:
    """W&B's mode for a run or a sweep (module doc): `WANDB_MODE`, else online with a key, else offline."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


class Tracker:
    """Rank 0's tracking; other ranks build it with `enabled=False` and it does nothing."""

    def __init__(self, run_dir: str, config: dict, name: str, project: str = "playerseg",
                 enabled: bool = True, start_epoch: int = 0):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.history: list[dict] = []
        self.wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        old = self.run_dir / "metrics.json"
        if old.is_file():
            self.history = [r for r in json.loads(old.read_text()) if r.get("epoch", 0) < start_epoch]
        mode = wandb_mode()
        if mode != "disabled":
            try:
                import wandb

                self.wandb = wandb.init(project=project, name=name, id=f"{name}".replace("/", "-"),
                                        dir=str(self.run_dir), config=config, mode=mode, resume="allow",
                                        settings=wandb.Settings(silent=True, console="off"))
            except Exception as e:  # tracking must never stop training
                log.warning("W&B disabled: %s", e)

    def log(self, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
        self.history.append(row)
        write_json_atomic(self.run_dir / "metrics.json", self.history)
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        write_bytes_atomic(self.run_dir / "metrics.csv", buf.getvalue().encode())
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if v is not None}, step=int(row.get("epoch", 0)))

    def overlays(self, epoch: int, images, truths, preds, names) -> str | None:
        if not self.enabled or not len(images):
            return None
        panel = overlay_panel(images, truths, preds, names)
        path = self.run_dir / "overlays" / f"epoch_{epoch:03d}.png"
        save_png(str(path), panel)
        if self.wandb is not None:
            import wandb

            self.wandb.log({"val/overlays": wandb.Image(panel, caption="image | truth | prediction")}, step=epoch)
        return str(path)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
