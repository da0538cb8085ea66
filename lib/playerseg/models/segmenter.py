"""`Segmenter`: a trained segmentation model with its exact preprocessing, for every job that
predicts (evaluation, inference, demo).

    seg = Segmenter.load("models/unet_effl0_acme")          # or a run checkpoint dir, or s3://...
    seg.classes                                              # TaskClasses
    proba = seg.predict_proba(frames)                        # N x H x W x 3 uint8 RGB -> N x C x H x W float32
                                                             # (C + 1 with a centre head: the last channel)
    labels = seg.predict(frames, tta=True)                   # -> N x H x W uint8 class ids

A model folder holds `model.json` (model config, classes, preprocessing, provenance) and the
weights: `model.safetensors` (an export, fp16 or fp32) or `checkpoint.pt` (a training checkpoint,
key "model"). A training run folder is accepted too: its `best/` model is used. `Segmenter.load`
is the one loader of every model kind (folders, `.onnx`, `.pt2`, `.ts`, SAM heads) and runtime
(`runtime="auto" | "torch" | "onnxruntime"`, `playerseg.models.runtime`):

    seg = Segmenter.load("models/unet_effl0_acme", runtime="auto")   # ONNX Runtime on CPU, torch on CUDA
    seg = Segmenter.load("exports/unet.onnx")                        # classes + preprocessing inside

Preprocessing (`Preprocess`, in the torch-free `playerseg.models.preprocess`, re-exported here):
resize the frame by `scale` (cv2 INTER_AREA), RGB / 255, minus `mean`, over `std`, zero-pad right
and bottom to a multiple of `pad_multiple`. Probabilities are
the softmax over the classes (`activate`; a centre channel after them, if the model has one, goes
through a sigmoid), cropped and resized (bilinear) back to the input resolution. TTA averages the
probabilities of the horizontal flip and of each scale factor in `tta_scales` (times `scale`).
"""
from __future__ import annotations

import hashlib
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
from playerseg.data.errors import DataError
from playerseg.io import read_weights
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
    def __init__(self, model, classes: TaskClasses, preprocess: Preprocess,
                 tta_scales: Sequence[float] = (0.75, 1.0, 1.25), device: str | torch.device | None = None,
                 meta: dict | None = None, batch_size: int = 4, runtime: str = "torch",
                 amp_dtype: torch.dtype | None = None, channels_last: bool = False):
        """`model`: a torch module, or any callable N x 3 x H x W float tensor -> logits tensor (an
        `OnnxModel`, an exported program's module). `amp_dtype` / `channels_last`: CUDA settings."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, nn.Module):
            model = model.to(self.device)
            if not isinstance(model, torch.fx.GraphModule):  # an exported program's module has no eval()
                model = model.eval()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.classes = classes
        self.preprocess = preprocess
        self.tta_scales = tuple(tta_scales)
        self.meta = meta or {}
        self.batch_size = batch_size
        self.runtime = runtime
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None, runtime: str | None = None,
             threads: int = 0, model_resolution: bool = False) -> "Segmenter":
        """The one model loader: every job that predicts calls it. `path`, local or fsspec URI:

            model folder        model.json + model.safetensors / checkpoint.pt; a run folder: its best/
            model.onnx          ONNX Runtime; classes and preprocessing from its metadata (else a
                                model.json beside it)
            model.pt2           torch.export program; model.json inside (extra file)
            model.ts            TorchScript (deprecated), model.json beside it
            sam_trained.pt      a SAM semantic-head checkpoint (`playerseg train sam`, mode head)

        `runtime`: None = the file's own (a folder: eager torch), or "auto" | "torch" |
        "onnxruntime" (`playerseg.models.runtime`): a model folder on "onnxruntime" runs its ONNX
        export, made once into the cache. `threads`: ONNX Runtime intra-op threads (0 = torch's).
        `model_resolution=True`: frames arrive already resized by the model's scale (the inference
        decode task), so the model runs them at scale 1 (TTA scales stay relative to it).
        """
        from playerseg.models import runtime as rt

        path = str(path)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        kind = next((k for k, ends in _FILE_KINDS.items() if path.endswith(ends)), "folder")
        want = rt.resolve(runtime, dev) if runtime else ("onnxruntime" if kind == "onnx" else "torch")
        if want == "onnxruntime" and kind not in ("onnx", "folder"):
            if runtime == "auto":
                want = "torch"
            else:
                raise ValueError(f"{path}: runtime onnxruntime runs model folders and .onnx files, not a {kind} file")
        if kind == "folder" and want == "onnxruntime" and runtime == "auto" and not rt.can_export_onnx():
            want = "torch"  # a folder reaches ONNX Runtime through the exporter; without it, eager torch
        if kind == "onnx" and want != "onnxruntime":
            raise ValueError(f"{path}: an ONNX file runs on runtime onnxruntime; for torch give its model folder or .pt2")
        if kind == "folder":
            seg = cls._load_folder(path, dev, want, threads)
        else:
            seg = _LOADERS[kind](path, dev, threads)
        if model_resolution:
            seg.preprocess = seg.preprocess.at_model_resolution()
        return seg

    @classmethod
    def _load_folder(cls, path: str, device: torch.device, runtime: str, threads: int) -> "Segmenter":
        if "://" in path and not path.startswith("file://"):
            from playerseg.io import filesystem

            fs, fpath = filesystem(path)
            tmp = tempfile.mkdtemp(prefix="playerseg-model-")
            try:
                fs.get(fpath.rstrip("/") + "/", tmp + "/", recursive=True)
                return cls._load_folder(tmp, device, runtime, threads)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        root = Path(path.removeprefix("file://"))
        if not (root / META_FILE).is_file() and (root / "best" / META_FILE).is_file():
            root = root / "best"
        if not (root / META_FILE).is_file():
            raise FileNotFoundError(f"{root}: no {META_FILE} (not a model, checkpoint or run folder)")
        try:
            meta = json.loads((root / META_FILE).read_text())
            model_cfg = from_dict(ModelConfig, meta["model"], f"{root / META_FILE}:model")
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(root / META_FILE, f"not a model description: {type(e).__name__}: {e}") from None
        model_cfg.encoder_weights = ""  # the weights below replace any initialisation
        model = build_model(model_cfg)
        if (root / WEIGHTS_FILE).is_file():
            weights = root / WEIGHTS_FILE
            state = read_weights(weights)
        elif (root / CHECKPOINT_FILE).is_file():
            weights = root / CHECKPOINT_FILE
            state = read_weights(weights)["model"]
        else:
            raise FileNotFoundError(f"{root}: neither {WEIGHTS_FILE} nor {CHECKPOINT_FILE}")
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            classes, preprocess, tta = _meta_parts(meta)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise DataError(root, f"weights and {META_FILE} do not fit: {str(e).splitlines()[0]}") from None
        if runtime == "onnxruntime":
            from playerseg.models.runtime import OnnxModel, cached_onnx, shipped_onnx

            onnx_path = shipped_onnx(weights) or cached_onnx(weights, meta, model, classes, preprocess)
            return cls(OnnxModel(str(onnx_path), threads, device), classes, preprocess, tta, "cpu", meta,
                       runtime="onnxruntime")
        return cls(model, classes, preprocess, tta, device, meta, **_torch_settings(device))

    # ---- prediction ----------------------------------------------------------------------
    @torch.inference_mode()
    def _proba_at(self, batch: np.ndarray, factor: float, flip: bool) -> torch.Tensor:
        h, w = batch.shape[1:3]
        resized = np.stack([self.preprocess.resize(im, factor) for im in batch])
        x = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2)
        x = self.preprocess.pad(self.preprocess.normalize(x))
        if flip:
            x = x.flip(-1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(x).float()
        if flip:
            logits = logits.flip(-1)
        logits = logits[..., : resized.shape[1], : resized.shape[2]]
        proba = activate(logits, len(self.classes))
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
        return self.predict_proba(images, tta=tta)[:, : len(self.classes)].argmax(1).astype(np.uint8)


def activate(logits: torch.Tensor, num_classes: int, dim: int = 1) -> torch.Tensor:
    """Logits -> probabilities: softmax over the `num_classes` class channels; the channel after
    them, where the model has a centre head (`ModelConfig.centre_head`), through a sigmoid."""
    if logits.shape[dim] == num_classes:
        return logits.softmax(dim)
    classes, centre = logits.split([num_classes, logits.shape[dim] - num_classes], dim)
    return torch.cat([classes.softmax(dim), centre.sigmoid()], dim)


def model_meta(model_cfg: ModelConfig, classes: TaskClasses, preprocess: Preprocess,
               tta_scales: Sequence[float] = (0.75, 1.0, 1.25), **extra) -> dict:
    """The `model.json` of a checkpoint or an export."""
    return {"format": FORMAT, "model": asdict(model_cfg), "classes": list(classes.names),
            "preprocess": asdict(preprocess), "tta_scales": list(tta_scales), **extra}


def weights_sha256(path: str) -> str:
    """The sha256 of what `Segmenter.load(path)` reads (a model folder's model.json and weights, its
    best/ for a run folder; a single file and the model.json beside it): weights replaced in place
    give another value. Empty for what is not a file or folder (e.g. SAM's "untrained")."""
    import posixpath

    from playerseg.io import filesystem, sha256_file

    fs, fpath = filesystem(str(path))
    if not fs.exists(fpath):
        return ""
    if fs.isdir(fpath):
        root = fpath.rstrip("/")
        if not fs.exists(f"{root}/{META_FILE}") and fs.exists(f"{root}/best/{META_FILE}"):
            root += "/best"
        names = [n for n in (META_FILE, WEIGHTS_FILE, CHECKPOINT_FILE) if fs.exists(f"{root}/{n}")]
    else:
        root, names = posixpath.dirname(fpath), [posixpath.basename(fpath)]
        if fs.exists(f"{root}/{META_FILE}"):
            names.append(META_FILE)
    proto = "" if "://" not in str(path) or str(path).startswith("file://") else str(path).split("://", 1)[0] + "://"
    h = hashlib.sha256()
    for n in names:
        h.update(f"{n}:{sha256_file(proto + root + '/' + n)}\n".encode())
    return h.hexdigest()


# ---- the single-file kinds of Segmenter.load ---------------------------------------------------
_FILE_KINDS = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": (".ts", ".torchscript"), "sam_head": ".pt"}


def _meta_parts(meta: dict) -> tuple[TaskClasses, Preprocess, tuple]:
    """(classes, preprocessing, TTA scales) of a model.json."""
    preprocess = Preprocess.from_dict(meta["preprocess"])
    return TaskClasses(tuple(meta["classes"])), preprocess, tuple(meta.get("tta_scales", (0.75, 1.0, 1.25)))


def _torch_settings(device: torch.device) -> dict:
    """Eager torch on CUDA: channels_last and fp16 / bf16 autocast; nothing on CPU."""
    from playerseg.models.runtime import cuda_precision

    return {"amp_dtype": cuda_precision(device), "channels_last": device.type == "cuda"}


def _read_bytes(path: str) -> bytes:
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()


def _meta_beside(path: str) -> dict:
    import posixpath

    import fsspec

    with fsspec.open(posixpath.join(posixpath.dirname(path), META_FILE), "r") as f:
        return json.load(f)


def _load_onnx(path: str, device: torch.device, threads: int) -> Segmenter:
    from playerseg.models.formats import read_onnx_meta
    from playerseg.models.runtime import OnnxModel

    model = OnnxModel(_read_bytes(path), threads, device)
    meta = read_onnx_meta(model.session) or _meta_beside(path)
    classes, preprocess, tta = _meta_parts(meta)
    return Segmenter(model, classes, preprocess, tta, "cpu", meta, runtime="onnxruntime")


def _load_pt2(path: str, device: torch.device, threads: int) -> Segmenter:
    from playerseg.models.formats import read_pt2

    module, meta = read_pt2(_read_bytes(path), str(device))
    classes, preprocess, tta = _meta_parts(meta or _meta_beside(path))
    # the exported graph is fixed fp32 / contiguous: no autocast or channels_last around it
    return Segmenter(module, classes, preprocess, tta, device, meta)


def _load_torchscript(path: str, device: torch.device, threads: int) -> Segmenter:
    import io

    module = torch.jit.load(io.BytesIO(_read_bytes(path)), map_location="cpu")
    meta = _meta_beside(path)
    classes, preprocess, tta = _meta_parts(meta)
    return Segmenter(module, classes, preprocess, tta, device, meta)


def _load_sam_head(path: str, device: torch.device, threads: int) -> Segmenter:
    """A SAM semantic-head checkpoint (`playerseg train sam --set sam.mode=head`): frozen SAM
    encoder + head, same normalised input as the Unets; frames at half size (SAM resizes to its own
    1024 px input)."""
    from playerseg.sam.checkpoint import load_trained
    from playerseg.sam.head import build_sam_head

    state = load_trained(path)
    if state.get("mode") != "head" or not state.get("head"):
        raise ValueError(f"{path}: a SAM {state.get('mode')!r} checkpoint has no semantic head; "
                         "use it for refinement (--sam-checkpoint) instead")
    names = ((state.get("config") or {}).get("data") or {}).get("classes") or TaskClasses().names
    model = build_sam_head(state["num_classes"], state["model_type"], state["base_checkpoint"], path,
                           hidden=state.get("head_hidden") or 128)
    return Segmenter(model, TaskClasses(tuple(names)), Preprocess(scale=0.5), device=device,
                     meta={"format": "playerseg-sam-head", "path": path})


_LOADERS = {"onnx": _load_onnx, "pt2": _load_pt2, "torchscript": _load_torchscript, "sam_head": _load_sam_head}
