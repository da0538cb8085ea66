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

import cv2
import numpy as np

from playerseg.io import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

# RGB colours of task classes in overlays (background stays the image)
PALETTE = {"player": (255, 40, 40), "led_board": (40, 160, 255)}
FALLBACK = [(255, 220, 0), (0, 220, 120), (200, 0, 255), (255, 128, 0)]


def colourise(image: np.ndarray, labels: np.ndarray, names, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over an RGB image (ignored / background pixels unchanged)."""
    out = image.astype(np.float32).copy()
    extra = iter(FALLBACK)
    for cid, name in enumerate(names):
        if cid == 0:
            continue
        colour = np.array(PALETTE.get(name) or next(extra, (255, 255, 255)), np.float32)
        m = labels == cid
        out[m] = (1 - alpha) * out[m] + alpha * colour
    return out.clip(0, 255).astype(np.uint8)


def overlay_panel(images, truths, preds, names, width: int = 1440) -> np.ndarray:
    """One RGB picture: a row per sample of image | truth | prediction."""
    rows = []
    for im, t, p in zip(images, truths, preds):
        row = np.concatenate([im, colourise(im, t, names), colourise(im, p, names)], axis=1)
        s = width / row.shape[1]
        rows.append(cv2.resize(row, (width, max(1, int(row.shape[0] * s))), interpolation=cv2.INTER_AREA))
    return np.concatenate(rows, axis=0)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


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
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
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
        row = {k: _clean(v) for k, v in metrics.items()}
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
        ok, png = cv2.imencode(".png", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        if ok:
            write_bytes_atomic(path, png.tobytes())
        if self.wandb is not None:
            import wandb

            self.wandb.log({"val/overlays": wandb.Image(panel, caption="image | truth | prediction")}, step=epoch)
        return str(path)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
