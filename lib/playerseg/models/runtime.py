"""Which runtime runs a model on which device, and the ONNX Runtime side of it.

    runtime "auto"         ONNX Runtime (CPU provider) on a CPU device when onnxruntime is installed;
                           torch otherwise: on CUDA with channels_last and fp16 / bf16 autocast
    runtime "torch"        eager torch (on CUDA: channels_last + autocast, as above)
    runtime "onnxruntime"  ONNX Runtime; a model folder is exported to ONNX once, into the cache

On the same cores ONNX Runtime's CPU provider runs the committed model ~1.8x faster than eager
torch at equal outputs (`benchmarks/bench_runtime.py`). `OnnxModel` is called like the torch
model (N x 3 x H x W float tensor -> logits tensor), so `Segmenter` does the same pre- and
post-processing around either. ONNX Runtime's intra-op threads follow `threads`, else torch's
thread count (`torch.set_num_threads`, which the actors set to their CPUs).

The export cache: `$PLAYERSEG_CACHE` (default `$XDG_CACHE_HOME/playerseg`, `~/.cache/playerseg`)
`/onnx/<sha256 of the weights file and model.json>.onnx`, written once by the first process that
needs it (temporary name + rename), shared by every actor and run after it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def can_export_onnx() -> bool:
    """torch.onnx's exporter has what it needs (onnx, onnxscript)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def resolve(runtime: str, device) -> str:
    """"torch" or "onnxruntime" for `runtime` on `device` (a torch.device)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; runtimes are {list(RUNTIMES)}")
    if runtime == "auto":
        return "onnxruntime" if device.type == "cpu" and has_onnxruntime() else "torch"
    return runtime


def cuda_precision(device):
    """autocast dtype on a CUDA device: bf16 where the GPU has it, else fp16; None on CPU."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class OnnxModel:
    """An ONNX model in an ONNX Runtime session, called like the torch model it was exported from."""

    def __init__(self, model: str | bytes, threads: int = 0, device=None):
        import onnxruntime as ort
        import torch

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
            else:
                log.warning("onnxruntime has no CUDA provider here: the model runs on the CPU")
        self.threads = opts.intra_op_num_threads
        self.session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x):
        import numpy as np
        import torch

        out = self.session.run(None, {self.input: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})[0]
        return torch.from_numpy(out)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()


def cache_dir() -> Path:
    base = os.environ.get("PLAYERSEG_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "playerseg"
    return Path(base)


def cache_key(weights: Path, meta: dict) -> str:
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def shipped_onnx(weights: Path) -> Path | None:
    """The model folder's own `model.onnx` when it is the export of `weights` (`playerseg export
    ... --format safetensors,onnx` records the weights' sha256 in it): no export on a fresh
    machine. None when absent or when the weights changed since (the cache exports them again)."""
    import onnx

    from playerseg.io import sha256_file
    from playerseg.models.formats import META_KEY

    path = weights.parent / "model.onnx"
    if not path.is_file():
        return None
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    recorded = json.loads(props.get(META_KEY, "{}")).get("weights_sha256")
    if recorded == sha256_file(str(weights)):
        return path
    log.warning("%s: not the export of %s (%s); using an export of the weights instead", path, weights.name,
                "weights changed since" if recorded else "no weights_sha256 recorded")
    return None


def cached_onnx(weights: Path, meta: dict, model, classes, preprocess) -> Path:
    """The ONNX export of a model folder's torch `model` (weights file `weights`, `meta` its
    model.json): from the cache, exported into it the first time."""
    from playerseg.models.formats import preprocess_spec, write_onnx

    import fcntl

    path = cache_dir() / "onnx" / f"{cache_key(weights, meta)}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:  # actors starting together: one exports, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            log.info("exporting %s to ONNX (once) -> %s", weights.parent, path)
            write_onnx(model, path, meta, preprocess_spec(preprocess, classes, preprocess.size(1080, 1920)))
    return path
