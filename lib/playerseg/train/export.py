"""Export a trained model: weights (safetensors, fp16 by default), ONNX, torch.export (.pt2) and/or
TorchScript, with the exact preprocessing beside them (and inside the single-file formats).

    <out>/model.json          model config, classes, preprocessing, metrics, provenance (Segmenter.load)
    <out>/preprocess.json     resize scale, pad multiple, mean / std, input / output layout
    <out>/model.safetensors   weights
    <out>/model.onnx          ONNX: N x 3 x H x W normalised float -> logits, dynamic batch / H / W,
                              model.json + preprocess.json in its metadata_props (ONNX Runtime); with
                              safetensors beside it, their sha256: `Segmenter.load` of the folder on
                              ONNX Runtime runs this file while the weights are unchanged
    <out>/model.pt2           torch.export program, same signature and dynamic axes, model.json inside
    <out>/model.ts            TorchScript (traced; deprecated in torch 2.14: prefer .pt2 or ONNX)

`export_file` writes one self-contained `.onnx` or `.pt2` file instead (`playerseg export ... --out
x.onnx`). The folder is written beside and renamed into place: never half written.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from playerseg.io import atomic_dir
from playerseg.models import formats as fmt
from playerseg.models.segmenter import META_FILE, WEIGHTS_FILE, Segmenter

FORMATS = fmt.FORMATS
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "torchscript": "model.ts"}
_WRITERS = {"onnx": fmt.write_onnx, "pt2": fmt.write_pt2}


def _source(source: str, extra_meta: dict | None, example_hw: tuple[int, int] | None):
    """(fp32 eval model, model.json, preprocess.json, traced example size) of the model at `source`."""
    seg = Segmenter.load(source, device="cpu")
    if example_hw is None:
        example_hw = seg.preprocess.size(1080, 1920)
    m = seg.preprocess.pad_multiple
    example_hw = (-(-example_hw[0] // m) * m, -(-example_hw[1] // m) * m)
    meta = {**seg.meta, **(extra_meta or {})}
    return seg.model.float().eval(), meta, fmt.preprocess_spec(seg.preprocess, seg.classes, example_hw), example_hw


def export_model(source: str, out_dir: str, formats=("safetensors", "torchscript"), half: bool = True,
                 extra_meta: dict | None = None, example_hw: tuple[int, int] | None = None) -> list[str]:
    """Export the model at `source` (checkpoint, best or model folder) to `out_dir`; returns file names."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; formats are {list(FORMATS)}")
    model, meta, spec, example_hw = _source(source, extra_meta, example_hw)
    meta["weights_dtype"] = "float16" if half else "float32"
    with atomic_dir(out_dir) as tmp:
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (tmp / "preprocess.json").write_text(json.dumps(spec, indent=2) + "\n")
        if "safetensors" in formats:
            from safetensors.torch import save_file

            state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
                     for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": meta.get("format", "")})
        if "torchscript" in formats:
            fmt.write_torchscript(model, tmp / FILES["torchscript"], example_hw)
        graph_meta = {**meta, "weights_dtype": "float32"}
        if "safetensors" in formats:  # Segmenter.load runs this folder's ONNX only for these weights
            from playerseg.io import sha256_file

            graph_meta["weights_sha256"] = sha256_file(str(tmp / WEIGHTS_FILE))
        for name, write in _WRITERS.items():
            if name in formats:  # the graph runs fp32, whatever the safetensors' dtype
                write(model, tmp / FILES[name], graph_meta, spec)
        for card in Path(out_dir).glob("*.md"):  # a model card written by hand stays with its folder
            if not (tmp / card.name).exists():
                shutil.copy2(card, tmp / card.name)
    return sorted(p.name for p in Path(out_dir).iterdir())


def export_file(source: str, out_file: str, format: str, extra_meta: dict | None = None) -> str:
    """One self-contained `.onnx` / `.pt2` file of the model at `source` (model.json inside)."""
    if format not in _WRITERS:
        raise ValueError(f"a single-file export is {sorted(_WRITERS)}; {format!r} writes a model folder")
    model, meta, spec, _ = _source(source, extra_meta, None)
    _WRITERS[format](model, out_file, {**meta, "weights_dtype": "float32"}, spec)
    return out_file
