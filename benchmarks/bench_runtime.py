"""Eager torch against ONNX Runtime (CPU provider) on the same inputs, side by side: model ms per frame.

    .venv/bin/python benchmarks/bench_runtime.py                              # committed model, 540/720/1080
    .venv/bin/python benchmarks/bench_runtime.py --heights 540,720 --iters 5 --threads 2
    .venv/bin/python benchmarks/bench_runtime.py --model exports/unet.onnx    # ORT side from a file

Both runtimes come from the one loader (`Segmenter.load(..., runtime=...)`; the ONNX side is the
model folder's cached export) and get the same normalised, padded 16:9 input of each height (a
sample-clip frame resized, else a synthetic one), batch 1, `--threads` intra-op threads each. Calls
are interleaved (torch, ORT, ORT, torch, ...) so both see the same machine load; the median of
`--iters` calls is reported, with the largest class-probability difference between the two.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

MODEL = Path(__file__).resolve().parents[1] / "models" / "unet_effl0_acme"


def frame(h: int, w: int) -> np.ndarray:
    import cv2

    from playerseg.io import shared_data_dir

    clip = shared_data_dir() / "videos" / "bundesliga_478p.mp4"
    if clip.is_file():
        cap = cv2.VideoCapture(str(clip))
        ok, bgr = cap.read()
        cap.release()
        if ok:
            return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_LINEAR)
    from playerseg.data.synthetic import render_frame

    return render_frame(0, 0, size=(w, h)).image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(MODEL), help="model folder (both sides), or a .onnx file (ORT side)")
    ap.add_argument("--heights", default="540,720,1080", help="model input heights (16:9 width)")
    ap.add_argument("--iters", type=int, default=10, help="timed calls per runtime and height")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from playerseg.models.segmenter import Segmenter

    torch.set_num_threads(args.threads)
    folder = args.model if not args.model.endswith(".onnx") else str(MODEL)
    t0 = time.perf_counter()
    ort = Segmenter.load(args.model, device="cpu", runtime="onnxruntime", threads=args.threads)
    print(f"ONNX Runtime session ready in {time.perf_counter() - t0:.1f} s (export on first use, then cached)")
    eager = Segmenter.load(folder, device="cpu", runtime="torch")
    print(f"model {args.model}; batch 1, {args.threads} threads each; {args.iters} interleaved calls; "
          f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}")
    load0 = os.getloadavg()[0]
    rows = []
    for h in (int(v) for v in args.heights.split(",")):
        w = int(round(h * 16 / 9 / 2)) * 2
        pre = eager.preprocess
        x = pre.pad(pre.normalize(torch.from_numpy(frame(h, w)[None]).permute(0, 3, 1, 2)))
        times = {"torch": [], "onnxruntime": []}
        sides = {"torch": eager.model, "onnxruntime": ort.model}
        with torch.inference_mode():
            out = {name: m(x).float()[..., :h, :w].softmax(1) for name, m in sides.items()}  # warm-up
            diff = float((out["torch"] - out["onnxruntime"]).abs().max())
            for i in range(args.iters):
                for name in (("torch", "onnxruntime") if i % 2 == 0 else ("onnxruntime", "torch")):
                    t = time.perf_counter()
                    sides[name](x)
                    times[name].append(time.perf_counter() - t)
        ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
        rows.append((h, w, tuple(x.shape[-2:]), ms["torch"], ms["onnxruntime"], diff))
        print(f"  {h}p done: torch {ms['torch']:.0f} ms, ORT {ms['onnxruntime']:.0f} ms", flush=True)
    print(f"\nload average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'input':>11s} {'padded':>11s} {'torch ms':>9s} {'ORT ms':>8s} {'speed-up':>9s} {'max |dp|':>9s}")
    for h, w, padded, t, o, diff in rows:
        print(f"{w:>5d}x{h:<5d} {padded[1]:>5d}x{padded[0]:<5d} {t:9.0f} {o:8.0f} {t / o:8.2f}x {diff:9.1e}")
    print("ms = median wall time of one model call (batch 1: ms per frame); speed-up = torch / ORT; "
          "max |dp| = largest class-probability difference")


if __name__ == "__main__":
    main()
