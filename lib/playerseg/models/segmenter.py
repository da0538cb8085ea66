"""`Segmenter`: a trained segmentation model with its exact preprocessing, for every job that
predicts (evaluation, inference, demo).

    seg = Segmenter.load("models/unet_effl0_acme")          # or a run checkpoint dir, or s3://...
    seg.classes                                              # TaskClasses
    proba = seg.predict_proba(frames)                        # N x H x W x 3 uint8 RGB -> N x C x H x W float32
    labels = seg.predict(frames, tta=True)                   # -> N x H x W uint8 class ids

A model folder holds `model.json` (model config, classes, preprocessing, provenance) and the
weights: `model.safetensors` (an export, fp16 or fp32) or `checkpoint.pt` (a training checkpoint,
key "model"). A training run folder is accepted too: its `best/` model is used.

Preprocessing (`Preprocess`, in the torch-free `playerseg.models.preprocess`, re-exported here):
resize the frame by `scale` (cv2 INTER_AREA), RGB / 255, minus `mean`, over `std`, zero-pad right
and bottom to a multiple of `pad_multiple`. Probabilities are
the softmax, cropped and resized (bilinear) back to the input resolution. TTA averages the
probabilities of the horizontal flip and of each scale factor in `tta_scales` (times `scale`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from playerseg.classes import TaskClasses
from playerseg.config import from_dict
from playerseg.models.preprocess import Preprocess
from playerseg.models.registry import ModelConfig, build_model

META_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "playerseg-segmenter/1"


def _to_batch(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 RGB images, got {arr.shape} {arr.dtype}")
    return arr


class Segmenter:
    def __init__(self, model: nn.Module, classes: TaskClasses, preprocess: Preprocess,
                 tta_scales: Sequence[float] = (0.75, 1.0, 1.25), device: str | torch.device | None = None,
                 meta: dict | None = None, batch_size: int = 4):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.classes = classes
        self.preprocess = preprocess
        self.tta_scales = tuple(tta_scales)
        self.meta = meta or {}
        self.batch_size = batch_size

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Segmenter":
        """From a model folder (export or checkpoint), a run folder (its `best/`), local or fsspec URI."""
        path = str(path)
        if "://" in path and not path.startswith("file://"):
            from playerseg.io import filesystem

            fs, fpath = filesystem(path)
            tmp = tempfile.mkdtemp(prefix="playerseg-model-")
            try:
                fs.get(fpath.rstrip("/") + "/", tmp + "/", recursive=True)
                return cls.load(tmp, device)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        root = Path(path.removeprefix("file://"))
        if not (root / META_FILE).is_file() and (root / "best" / META_FILE).is_file():
            root = root / "best"
        if not (root / META_FILE).is_file():
            raise FileNotFoundError(f"{root}: no {META_FILE} (not a model, checkpoint or run folder)")
        meta = json.loads((root / META_FILE).read_text())
        model_cfg = from_dict(ModelConfig, meta["model"], f"{root / META_FILE}:model")
        model_cfg.encoder_weights = ""  # the weights below replace any initialisation
        model = build_model(model_cfg)
        if (root / WEIGHTS_FILE).is_file():
            from safetensors.torch import load_file

            state = load_file(str(root / WEIGHTS_FILE))
        elif (root / CHECKPOINT_FILE).is_file():
            state = torch.load(root / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["model"]
        else:
            raise FileNotFoundError(f"{root}: neither {WEIGHTS_FILE} nor {CHECKPOINT_FILE}")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        preprocess = Preprocess.from_dict(meta["preprocess"])
        return cls(model, TaskClasses(tuple(meta["classes"])), preprocess,
                   tta_scales=meta.get("tta_scales", (0.75, 1.0, 1.25)), device=device, meta=meta)

    # ---- prediction ----------------------------------------------------------------------
    @torch.inference_mode()
    def _proba_at(self, batch: np.ndarray, factor: float, flip: bool) -> torch.Tensor:
        h, w = batch.shape[1:3]
        resized = np.stack([self.preprocess.resize(im, factor) for im in batch])
        x = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2)
        x = self.preprocess.pad(self.preprocess.normalize(x))
        if flip:
            x = x.flip(-1)
        logits = self.model(x).float()
        if flip:
            logits = logits.flip(-1)
        logits = logits[..., : resized.shape[1], : resized.shape[2]]
        proba = logits.softmax(1)
        if proba.shape[-2:] != (h, w):
            proba = F.interpolate(proba, size=(h, w), mode="bilinear", align_corners=False)
        return proba

    def predict_proba(self, images, tta: bool = False) -> np.ndarray:
        """N x H x W x 3 uint8 RGB -> N x C x H x W float32 class probabilities at input resolution."""
        images = _to_batch(images)
        views = [(f, flip) for f in (self.tta_scales if tta else (1.0,)) for flip in ((False, True) if tta else (False,))]
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size]
            total = sum(self._proba_at(batch, f, flip) for f, flip in views) / len(views)
            out.append(total.cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes), *images.shape[1:3]), np.float32)

    def predict(self, images, tta: bool = False) -> np.ndarray:
        """N x H x W x 3 uint8 RGB -> N x H x W uint8 class ids."""
        return self.predict_proba(images, tta=tta).argmax(1).astype(np.uint8)


def model_meta(model_cfg: ModelConfig, classes: TaskClasses, preprocess: Preprocess,
               tta_scales: Sequence[float] = (0.75, 1.0, 1.25), **extra) -> dict:
    """The `model.json` of a checkpoint or an export."""
    return {"format": FORMAT, "model": asdict(model_cfg), "classes": list(classes.names),
            "preprocess": asdict(preprocess), "tta_scales": list(tta_scales), **extra}
