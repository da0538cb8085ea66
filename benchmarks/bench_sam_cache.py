"""SAM decoder training: an epoch on cached embeddings against recomputing the encoder every
step, on the same data, side by side in one run; and the embedding cache size per 1080p frame.

    .venv/bin/python benchmarks/bench_sam_cache.py [--model-type tiny_untrained] [--frames 4] [--epochs 2]

Data: synthetic 1920x1080 frames (for speed only: their content does not matter here), read
back through the Acme reader (JPEG + PNG masks) as in training; items = full frame + up to
`--crops` crops around players. Both paths train the mask decoder (mode `decoder`) with the
same items, prompts and batch size:
  cached     CachedItems: .npz items of the cache (embedding + targets), encoder never runs
  recompute  FrameItems: every step decodes the frame, crops, resizes and runs the encoder (no grad)
Printed: seconds per epoch for both (best of --epochs), the ratio, encoder calls per epoch, and
the cache size per frame: measured for the chosen model, and for vit_b analytically (256 x 64 x
64 fp16 = 2 MiB per item, times items per frame). Default model: the tiny UNTRAINED config on CPU,
whose encoder is much cheaper relative to its decoder than vit_b's/vit_h's: the ratio there is a
lower bound for real models (pass --model-type vit_b, random weights, for the real encoder cost).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from playerseg.classes import TaskClasses
from playerseg.data.registry import DataConfig, build_reader
from playerseg.data.synthetic import generate
from playerseg.sam.build import build_sam
from playerseg.sam.dataset import CachedItems, FrameItems, PromptConfig
from playerseg.sam.embeddings import embed_frame, list_items
from playerseg.sam.inputs import Geometry
from playerseg.sam.loss import SamLoss
from playerseg.sam.model import SamTrainModel
from playerseg.sam.prompts import CropConfig
from playerseg.sam.train import run_epoch
from playerseg.optim import OptimConfig, build_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-type", default="tiny_untrained")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--crops", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)  # 2+ spin-waits badly on a shared machine
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classes = TaskClasses()
    with tempfile.TemporaryDirectory() as tmp:
        generate(f"{tmp}/data", args.frames, size=(1920, 1080), seed=0, people=22, progress=False)
        reader = build_reader(DataConfig(format="acme", root=f"{tmp}/data"))
        keys = reader.keys()
        crops = CropConfig(size=512, max_per_frame=args.crops)
        sam = build_sam(args.model_type, None, device)
        geo = Geometry.of(sam)
        calls = [0]
        sam.image_encoder.patch_embed.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
        t0 = time.perf_counter()
        for k in keys:
            embed_frame(sam, reader.load(k), classes, crops, (classes.player,), f"{tmp}/cache")
        build_s = time.perf_counter() - t0
        paths = list_items(f"{tmp}/cache", keys)
        sizes = [os.path.getsize(p) for p in paths]
        emb_bytes = int(np.prod((256, *sam.prompt_encoder.image_embedding_size))) * 2
        items = {"cached": CachedItems(paths),
                 "recompute": FrameItems(reader, keys, geo, classes, crops, (classes.player,))}
        model = SamTrainModel(sam, "decoder").to(device)
        opt = build_optimizer(OptimConfig(lr=1e-4), [p for p in model.parameters() if p.requires_grad])
        results = {}
        for epoch in range(args.epochs):
            for name, ds in items.items():  # interleaved: load on a shared machine hits both alike
                calls[0] = 0
                t0 = time.perf_counter()
                # cached: batch_size items; recompute: a frame yields all its crops, so fewer frames per step
                bs = args.batch_size if name == "cached" else max(1, args.batch_size * args.frames // len(paths))
                run_epoch(model, ds, list(range(len(ds))), bs, np.random.default_rng(epoch), PromptConfig(), geo,
                          SamLoss(), optimizer=opt, device=torch.device(device))
                s = time.perf_counter() - t0
                results[name] = min(results.get(name, float("inf")), s)
                print(f"  epoch {epoch} {name}: {s:.3f} s", flush=True)
                results[f"{name}_calls"] = calls[0]
    per_frame = len(paths) / args.frames
    print(f"model {args.model_type} on {device} ({torch.get_num_threads()} threads), {args.frames} frames 1920x1080, "
          f"{len(paths)} items ({per_frame:.1f} per frame), batch {args.batch_size} items, best of {args.epochs} epochs")
    print(f"  cache build (encoder once per item): {build_s:.2f} s")
    print(f"  decoder epoch, cached embeddings : {results['cached']:.3f} s  (encoder calls {results['cached_calls']})")
    print(f"  decoder epoch, recomputed encoder: {results['recompute']:.3f} s  (encoder calls {results['recompute_calls']})")
    print(f"  speed-up cached vs recompute: {results['recompute'] / results['cached']:.1f}x  (target >= 20x)")
    print(f"  cache per 1080p frame, measured ({args.model_type}): {np.sum(sizes) / args.frames / 2**20:.3f} MiB "
          f"({np.mean(sizes) / 2**10:.0f} KiB per item; embedding {emb_bytes / 2**10:.0f} KiB fp16 + targets)")
    print(f"  cache per 1080p frame, vit_b analytic: 256x64x64 fp16 = 2.00 MiB per item x {per_frame:.1f} items = "
          f"{2 * per_frame:.1f} MiB (+ targets: 256x256 bit-packed masks, 8 KiB per player)")


if __name__ == "__main__":
    main()
