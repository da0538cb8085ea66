"""`playerseg export`: a trained model as ONNX, torch.export (.pt2), TorchScript or safetensors.

    playerseg export models/unet_effl0_acme --format onnx --out exports/unet_effl0_acme.onnx
    playerseg export models/unet_effl0_acme --format pt2 --out exports/unet_effl0_acme.pt2
    playerseg export runs/train/unet/best --format onnx,pt2,safetensors --out exports/unet   # a model folder

An `--out` ending in `.onnx` / `.pt2` is one self-contained file: dynamic batch, height and width,
classes and preprocessing (the model folder's `model.json`) inside, loadable by every job that
takes `--model` (`Segmenter.load`) and by plain ONNX Runtime (`session.get_modelmeta()
.custom_metadata_map["model.json"]`). Any other `--out` is a model folder (`train.export.export_model`:
model.json, preprocess.json and the files of each format).
"""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from playerseg.models.formats import FORMATS  # torch-free: `playerseg --help` stays fast

    p.add_argument("model", help="model / checkpoint / training run folder (path or URI)")
    p.add_argument("--format", dest="formats", action="append", metavar="FORMAT",
                   help=f"{' | '.join(FORMATS)}; comma list or repeated (default onnx)")
    p.add_argument("--out", required=True, help="a .onnx / .pt2 file, or a model folder for the others")
    p.add_argument("--fp32", action="store_true", help="safetensors weights in fp32 (default fp16)")


def run(args: argparse.Namespace) -> int:
    from playerseg.models.formats import FORMATS
    from playerseg.train.export import export_file, export_model

    formats = [f.strip() for v in (args.formats or ["onnx"]) for f in v.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise SystemExit(f"unknown format(s) {unknown}; formats are {list(FORMATS)}")
    suffix = args.out.rsplit(".", 1)[-1] if "." in args.out.rsplit("/", 1)[-1] else ""
    if suffix in ("onnx", "pt2"):
        if formats != [suffix]:
            raise SystemExit(f"--out {args.out} is one .{suffix} file: give --format {suffix} alone "
                             "(a folder --out takes several formats)")
        export_file(args.model, args.out, suffix)
        print(f"exported {args.model} -> {args.out}")
    else:
        files = export_model(args.model, args.out, formats, half=not args.fp32)
        print(f"exported {args.model} -> {args.out}/ ({', '.join(files)})")
    return 0
