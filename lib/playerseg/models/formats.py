"""Single-file model formats: ONNX and `torch.export` (.pt2), each carrying the model's `model.json`
(classes, preprocessing, provenance) inside, and TorchScript (`model.ts`, `model.json` beside it).

    write_onnx(model, "m.onnx", meta)       # ONNX, dynamic batch / height / width, metadata_props
    write_pt2(model, "m.pt2", meta)         # torch.export ExportedProgram, model.json as an extra file
    read_onnx_meta(data) / read_pt2(data)   # back: the metadata / (exported module, metadata)

Every format has the model's own signature: N x 3 x H x W normalised float32 (H, W multiples of the
preprocessing's `pad_multiple`, at least 2 of them: 64 px) -> N x C x H x W logits; `preprocess.json`
says how to get there.
Writers go through a temporary name and a rename: a reader never sees half a file.
"""
from __future__ import annotations

import io
import json
import os

from playerseg.io import atomic_path

FORMATS = ("safetensors", "onnx", "pt2", "torchscript")  # of an export (safetensors: a model folder)
META_KEY = "model.json"  # ONNX metadata_props key / .pt2 extra file: the model folder's model.json
SPEC_KEY = "preprocess.json"  # the human-readable preprocessing spec (export.preprocess_spec)
EXAMPLE_HW = (128, 192)  # example input of the dynamic-shape exports (distinct sizes: no H == W guard)


def preprocess_spec(preprocess, classes, example_hw: tuple[int, int]) -> dict:
    """`preprocess.json`: how a frame becomes the model's input, and what comes out."""
    p = preprocess
    return {
        "input": "RGB uint8 frame, H x W x 3",
        "resize": {"scale": p.scale, "target_height": p.target_height, "interpolation": "cv2.INTER_AREA (downscale) / INTER_LINEAR (upscale)"},
        "normalize": {"divide": 255.0, "mean": list(p.mean), "std": list(p.std), "order": "RGB"},
        "pad": {"multiple": p.pad_multiple, "where": "right and bottom", "value": 0.0, "after": "normalize"},
        "layout": "N x 3 x H x W float32",
        "output": "N x C logits; crop the padding, softmax over C, resize (bilinear) to the frame",
        "classes": list(classes.names),
        "traced_input_hw": list(example_hw),
    }


def _dynamic_shapes(pad_multiple: int) -> dict:
    """Batch, height and width free; height and width multiples of `pad_multiple` (the encoder's
    stride), at least two (a .pt2 program guards against a 1 x 1 bottleneck)."""
    from torch.export import Dim

    hb, wb = Dim("h_blocks", min=2, max=1024), Dim("w_blocks", min=2, max=1024)
    return {"x": {0: Dim("batch", min=1, max=4096), 2: pad_multiple * hb, 3: pad_multiple * wb}}


def _example(pad_multiple: int, example_hw: tuple[int, int] | None):
    import torch

    h, w = example_hw or EXAMPLE_HW
    h, w = -(-h // pad_multiple) * pad_multiple, -(-w // pad_multiple) * pad_multiple
    if h == w:
        w += pad_multiple
    return torch.zeros(2, 3, h, w)  # batch 2: a batch of 1 would be specialised to a constant


def _exported(model, pad_multiple: int, example_hw):
    import torch

    model = model.float().eval()
    with torch.no_grad():
        return torch.export.export(model, (_example(pad_multiple, example_hw),),
                                   dynamic_shapes=_dynamic_shapes(pad_multiple))


def write_onnx(model, path: str | os.PathLike, meta: dict, spec: dict | None = None,
               example_hw: tuple[int, int] | None = None) -> None:
    """ONNX (torch.export-based exporter, onnxscript) with dynamic batch, height and width; input
    `image`, output `logits`; `model.json` (and `preprocess.json`) in the metadata_props."""
    import torch

    pad = int(meta["preprocess"]["pad_multiple"])
    program = torch.onnx.export(_exported(model, pad, example_hw), dynamo=True, input_names=["image"],
                                output_names=["logits"], external_data=False, verbose=False)
    program.model.metadata_props[META_KEY] = json.dumps(meta, default=str)
    if spec is not None:
        program.model.metadata_props[SPEC_KEY] = json.dumps(spec)
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)


def write_pt2(model, path: str | os.PathLike, meta: dict, spec: dict | None = None,
              example_hw: tuple[int, int] | None = None) -> None:
    """`torch.export` ExportedProgram (.pt2) with dynamic batch, height and width; `model.json`
    (and `preprocess.json`) as extra files of the archive."""
    import torch

    ep = _exported(model, int(meta["preprocess"]["pad_multiple"]), example_hw)
    extra = {META_KEY: json.dumps(meta, default=str), **({SPEC_KEY: json.dumps(spec)} if spec else {})}
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix torch.export.save checks
        torch.export.save(ep, tmp, extra_files=extra)


def write_torchscript(model, path: str | os.PathLike, example_hw: tuple[int, int]) -> None:
    """TorchScript, traced at `example_hw` (deprecated in torch 2.14: prefer .pt2 or ONNX)."""
    import torch

    with torch.no_grad():
        traced = torch.jit.trace(model.float().eval(), torch.zeros(1, 3, *example_hw), check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(tmp)


def read_onnx_meta(session) -> dict | None:
    """The `model.json` an ONNX Runtime session's model carries (None: a foreign ONNX file)."""
    text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    return json.loads(text) if text else None


def read_pt2(data: bytes, device: str = "cpu"):
    """(callable module, model.json or None) of a .pt2 archive's bytes, on `device`."""
    import torch

    extra = {META_KEY: ""}
    ep = torch.export.load(io.BytesIO(data), extra_files=extra)
    if str(device) != "cpu":
        from torch.export.passes import move_to_device_pass

        ep = move_to_device_pass(ep, device)
    return ep.module(), (json.loads(extra[META_KEY]) if extra[META_KEY] else None)
