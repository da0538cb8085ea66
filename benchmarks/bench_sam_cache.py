"""SAM decoder training: an epoch on cached embeddings against recomputing the encoder every
step, on the same data, side by side in one run; where each epoch's time goes; and the
embedding cache size per 1080p frame.

    .venv/bin/python benchmarks/bench_sam_cache.py [--model-type vit_b] [--frames 2] [--epochs 1]

Data: synthetic 1920x1080 frames (for speed only: their content does not matter here), read
back through the Acme reader (JPEG + PNG masks) as in training; items = full frame + up to
`--crops` crops around players. Both sides train the mask decoder (mode `decoder`, the same
`run_epoch`) on the same items, prompts (at most `--max-prompts` per item) and batch size:
  cached     CachedItems: .npz items of the cache (embedding + low-res targets), encoder never runs
  recompute  FrameItems: every step decodes the frame, crops, resizes and runs the encoder (no grad)
Printed per side: seconds per epoch (best of --epochs) split into data (item loading + collate:
reading .npz files / decoding frames and making targets), encoder and the rest (the decoder step:
prompt encoder, mask decoder forward + backward, loss, optimizer); the ratio; the cache size per
frame, measured for the chosen model and for vit_b analytically.

What bounds the ratio: a cached epoch is the decoder step alone (data is < 1 %), and SAM's mask
decoder runs its two-way transformer and upscaling once PER PROMPT over the whole embedding, so
ratio ~ 1 + encoder / (decoder step of the item's prompts). `tiny_untrained` (default, a smoke run)
has an encoder far cheaper than its decoder: its ratio means nothing; pass --model-type vit_b/l/h
(random weights) for real encoder costs.
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
from playerseg.optim import OptimConfig, build_optimizer
from playerseg.sam.build import build_sam
from playerseg.sam.dataset import CachedItems, FrameItems, PromptConfig
from playerseg.sam.embeddings import embed_frame, list_items
from playerseg.sam.inputs import Geometry
from playerseg.sam.loss import SamLoss
from playerseg.sam.model import SamTrainModel
from playerseg.sam.prompts import CropConfig
from playerseg.sam.train import run_epoch


class Timed:
    """Items whose loading time (what `run_epoch` spends getting them) is summed in `seconds`."""

    def __init__(self, items):
        self.items, self.seconds = items, 0.0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        t0 = time.perf_counter()
        try:
            return self.items[i]
        finally:
            self.seconds += time.perf_counter() - t0


def time_encoder(sam) -> dict:
    """{'calls', 'seconds'} of the image encoder as training runs it (patch_embed ... neck, see
    playerseg.sam.model.encode)."""
    clock = {"calls": 0, "seconds": 0.0, "t0": 0.0}

    def start(*a):
        clock["calls"] += 1
        clock["t0"] = time.perf_counter()

    def stop(*a):
        clock["seconds"] += time.perf_counter() - clock["t0"]

    sam.image_encoder.patch_embed.register_forward_pre_hook(start)
    sam.image_encoder.neck.register_forward_hook(stop)
    return clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-type", default="tiny_untrained")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--crops", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-prompts", type=int, default=PromptConfig.max_per_image, help="prompts per item and step")
    ap.add_argument("--threads", type=int, default=1)  # 2+ spin-waits badly on a shared machine
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classes = TaskClasses()
    prompts = PromptConfig(max_per_image=args.max_prompts)
    with tempfile.TemporaryDirectory() as tmp:
        generate(f"{tmp}/data", args.frames, size=(1920, 1080), seed=0, people=22, progress=False)
        reader = build_reader(DataConfig(format="acme", root=f"{tmp}/data"))
        keys = reader.keys()
        crops = CropConfig(size=512, max_per_frame=args.crops)
        sam = build_sam(args.model_type, None, device)
        geo = Geometry.of(sam)
        encoder = time_encoder(sam)
        t0 = time.perf_counter()
        for k in keys:
            embed_frame(sam, reader.load(k), classes, crops, (classes.player,), f"{tmp}/cache")
        build_s = time.perf_counter() - t0
        paths = list_items(f"{tmp}/cache", keys)
        sizes = [os.path.getsize(p) for p in paths]
        cached = CachedItems(paths)
        n_prompts = [min(len(cached[i][0]["boxes"]), args.max_prompts) for i in range(len(cached))]
        emb_bytes = int(np.prod((256, *sam.prompt_encoder.image_embedding_size))) * 2
        items = {"cached": cached, "recompute": FrameItems(reader, keys, geo, classes, crops, (classes.player,))}
        model = SamTrainModel(sam, "decoder").to(device)
        opt = build_optimizer(OptimConfig(lr=1e-4), [p for p in model.parameters() if p.requires_grad])
        best: dict[str, dict] = {}
        for epoch in range(args.epochs):
            for name, ds in items.items():  # interleaved: load on a shared machine hits both alike
                timed = Timed(ds)
                encoder.update(calls=0, seconds=0.0)
                t0 = time.perf_counter()
                # cached: batch_size items; recompute: a frame yields all its crops, so fewer frames per step
                bs = args.batch_size if name == "cached" else max(1, args.batch_size * args.frames // len(paths))
                run_epoch(model, timed, list(range(len(ds))), bs, np.random.default_rng(epoch), prompts, geo,
                          SamLoss(), optimizer=opt, device=torch.device(device))
                s = time.perf_counter() - t0
                r = {"epoch": s, "data": timed.seconds, "encoder": encoder["seconds"], "calls": encoder["calls"]}
                r["decoder"] = s - r["data"] - r["encoder"]
                print(f"  epoch {epoch} {name}: {s:.3f} s (data {r['data']:.3f}, encoder {r['encoder']:.3f}, "
                      f"decoder step {r['decoder']:.3f})", flush=True)
                if r["epoch"] < best.get(name, {"epoch": float("inf")})["epoch"]:
                    best[name] = r
    per_frame = len(paths) / args.frames
    print(f"model {args.model_type} on {device} ({torch.get_num_threads()} threads), {args.frames} frames 1920x1080, "
          f"{len(paths)} items ({per_frame:.1f} per frame), {sum(n_prompts)} prompts per epoch (max "
          f"{args.max_prompts} per item), batch {args.batch_size} items, best of {args.epochs} epochs")
    print(f"  cache build (encoder once per item): {build_s:.2f} s")
    for name in ("cached", "recompute"):
        r = best[name]
        print(f"  decoder epoch, {name:9s}: {r['epoch']:8.3f} s = data {r['data']:.3f} + encoder {r['encoder']:.3f} "
              f"({r['calls']} calls) + decoder step {r['decoder']:.3f}")
    c, u = best["cached"], best["recompute"]
    print(f"  speed-up cached vs recompute: {u['epoch'] / c['epoch']:.1f}x  (target >= 20x); the cached epoch is "
          f"{100 * c['decoder'] / c['epoch']:.1f} % decoder step; encoder time / cached decoder-step time "
          f"{u['encoder'] / max(1e-9, c['decoder']):.1f}")
    print(f"  cache per 1080p frame, measured ({args.model_type}): {np.sum(sizes) / args.frames / 2**20:.3f} MiB "
          f"({np.mean(sizes) / 2**10:.0f} KiB per item; embedding {emb_bytes / 2**10:.0f} KiB fp16 + targets)")
    print(f"  cache per 1080p frame, vit_b analytic: 256x64x64 fp16 = 2.00 MiB per item x {per_frame:.1f} items = "
          f"{2 * per_frame:.1f} MiB (+ targets: 256x256 bit-packed masks, 8 KiB per player)")


if __name__ == "__main__":
    main()
