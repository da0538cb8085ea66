"""Export a trained model: weights (safetensors, fp16 by default), TorchScript and/or ONNX, with
the exact preprocessing beside them.

    <out>/model.json          model config, classes, preprocessing, metrics, provenance (Segmenter.load)
    <out>/preprocess.json     resize scale, pad multiple, mean / std, input / output layout
    <out>/model.safetensors   weights
    <out>/model.ts            TorchScript (traced): N x 3 x H x W normalised float -> logits
    <out>/model.onnx          ONNX (needs the `onnx` package), same signature

The folder is written beside and renamed into place: never half written.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from playerseg.models.segmenter import META_FILE, WEIGHTS_FILE, Segmenter

FORMATS = ("safetensors", "torchscript", "onnx")


def preprocess_spec(seg: Segmenter, example_hw: tuple[int, int]) -> dict:
    p = seg.preprocess
    return {
        "input": "RGB uint8 frame, H x W x 3",
        "resize": {"scale": p.scale, "target_height": p.target_height, "interpolation": "cv2.INTER_AREA (downscale) / INTER_LINEAR (upscale)"},
        "normalize": {"divide": 255.0, "mean": list(p.mean), "std": list(p.std), "order": "RGB"},
        "pad": {"multiple": p.pad_multiple, "where": "right and bottom", "value": 0.0, "after": "normalize"},
        "layout": "N x 3 x H x W float32",
        "output": "N x C logits; crop the padding, softmax over C, resize (bilinear) to the frame",
        "classes": list(seg.classes.names),
        "traced_input_hw": list(example_hw),
    }


def export_model(source: str, out_dir: str, formats=("safetensors", "torchscript"), half: bool = True,
                 extra_meta: dict | None = None, example_hw: tuple[int, int] | None = None) -> list[str]:
    """Export the model at `source` (checkpoint, best or model folder) to `out_dir`; returns file names."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; formats are {list(FORMATS)}")
    seg = Segmenter.load(source, device="cpu")
    model = seg.model.float().eval()
    if example_hw is None:
        example_hw = seg.preprocess.size(1080, 1920)
    m = seg.preprocess.pad_multiple
    example_hw = (-(-example_hw[0] // m) * m, -(-example_hw[1] // m) * m)
    out = Path(out_dir)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = dict(seg.meta)
    meta.update(extra_meta or {})
    meta["weights_dtype"] = "float16" if half else "float32"
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (tmp / "preprocess.json").write_text(json.dumps(preprocess_spec(seg, example_hw), indent=2) + "\n")
    example = torch.zeros(1, 3, *example_hw)
    if "safetensors" in formats:
        from safetensors.torch import save_file

        state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": meta.get("format", "")})
    if "torchscript" in formats:
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(tmp / "model.ts"))
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise RuntimeError("ONNX export needs the `onnx` package, which is not installed") from None
        torch.onnx.export(model, example, str(tmp / "model.onnx"), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}})
    old = out.parent / f".old-{out.name}-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(p.name for p in out.iterdir())
