"""Model size per hardware: each shipped encoder x runtime x input height, CPU ms per frame and peak memory.

    .venv/bin/python benchmarks/bench_model_size.py                          # Lite0, Lite2 x torch, ORT x 540/720/1080
    .venv/bin/python benchmarks/bench_model_size.py --iters 3 --threads 1 --heights 540,720

Every cell runs in a fresh process that does what an inference actor does: `Segmenter.load(folder,
runtime=...)` (ONNX Runtime: the folder's cached ONNX export, made once per model before any cell),
then one warm-up and `--iters` model calls on the normalised, padded input of a 1920x1080 frame
brought to that height (batch 1, `--threads` intra-op threads). Reported per cell: the median wall
ms and process CPU ms (all threads) per call, and the process's peak resident memory (ru_maxrss of
the finished child, `os.wait4`: imports, model, runtime session and activations together), beside
its resident memory after the model was loaded.

Encoders: Lite0 is the committed model (models/unet_effl0_broadcast_v2, its trained weights); Lite2 is
the same Unet config with `tu-efficientnet_lite2`, random weights (time and memory do not depend on
the values). Quality figures exist only for the trained Lite0 model (README, "The model").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
LITE0 = ROOT / "models" / "unet_effl0_broadcast_v2"


def lite2_folder(out: Path) -> Path:
    """A model folder of the committed config with the Lite2 encoder, random weights."""
    from playerseg.classes import TaskClasses
    from playerseg.config import from_dict
    from playerseg.models.registry import ModelConfig, build_model
    from playerseg.models.segmenter import Preprocess, model_meta
    from playerseg.train.unet import write_model_dir

    meta = json.loads((LITE0 / "model.json").read_text())
    cfg = from_dict(ModelConfig, {**meta["model"], "encoder": "tu-efficientnet_lite2", "encoder_weights": ""})
    cfg.mean, cfg.std = list(meta["preprocess"]["mean"]), list(meta["preprocess"]["std"])
    write_model_dir(out, build_model(cfg).state_dict(),
                    model_meta(cfg, TaskClasses(tuple(meta["classes"])), Preprocess.from_dict(meta["preprocess"])))
    return out


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cell(folder: str, runtime: str, height: int, iters: int, threads: int) -> dict:
    """One cell, in this (fresh) process."""
    import numpy as np
    import torch

    from playerseg.models.segmenter import Segmenter

    torch.set_num_threads(threads)
    seg = Segmenter.load(folder, device="cpu", runtime=runtime, threads=threads)
    loaded = rss_mib()
    pre = seg.preprocess
    w = round(1920 * height / 1080)
    frame = np.random.default_rng(0).integers(0, 256, (1, height, w, 3), dtype=np.uint8)
    x = pre.pad(pre.normalize(torch.from_numpy(frame).permute(0, 3, 1, 2)))
    wall, cpu = [], []
    with torch.inference_mode():
        seg.model(x)  # warm-up
        for _ in range(iters):
            t, c = time.perf_counter(), time.process_time()
            seg.model(x)
            wall.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
    return {"input_hw": list(x.shape[-2:]), "wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu),
            "rss_loaded_mib": round(loaded)}


def run_cell(folder: Path, runtime: str, height: int, iters: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--cell", json.dumps([str(folder), runtime, height, iters, threads])]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"cell {runtime} {height} failed ({status}): {out[-500:]}")
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_mib"] = round(usage.ru_maxrss / 1024)  # KiB on Linux
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heights", default="540,720,1080")
    ap.add_argument("--runtimes", default="torch,onnxruntime")
    ap.add_argument("--encoders", default="lite0,lite2")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cell:
        print(json.dumps(cell(*json.loads(args.cell))))
        return 0

    from playerseg.models.segmenter import Segmenter

    tmp = Path(tempfile.mkdtemp(prefix="bench-size-"))
    folders = {"lite0": LITE0}
    if "lite2" in args.encoders:
        folders["lite2"] = lite2_folder(tmp / "lite2")
    folders = {k: v for k, v in folders.items() if k in args.encoders.split(",")}
    for name, folder in folders.items():  # the ONNX export, once, before any cell is timed
        t = time.perf_counter()
        Segmenter.load(str(folder), device="cpu", runtime="onnxruntime")
        print(f"{name}: ONNX export ready in {time.perf_counter() - t:.0f} s", flush=True)
    load0 = os.getloadavg()[0]
    rows = []
    for h in (int(v) for v in args.heights.split(",")):
        for name, folder in folders.items():
            for runtime in args.runtimes.split(","):
                r = {"encoder": name, "runtime": runtime, "height": h,
                     **run_cell(folder, runtime, h, args.iters, args.threads)}
                rows.append(r)
                print(f"  {name} {runtime:11s} {h}p: {r['cpu_ms']:.0f} CPU-ms, {r['wall_ms']:.0f} ms, "
                      f"peak {r['peak_rss_mib']} MiB (after load {r['rss_loaded_mib']})", flush=True)
    print(f"\nload average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"nice {os.nice(0)}; batch 1, {args.threads} thread(s), median of {args.iters} calls after 1 warm-up")
    print("| encoder | runtime | input | CPU ms / frame | wall ms | peak RSS MiB | RSS after load MiB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['encoder']} | {r['runtime']} | {r['input_hw'][1]}x{r['input_hw'][0]} ({r['height']}p) | "
              f"{r['cpu_ms']:.0f} | {r['wall_ms']:.0f} | {r['peak_rss_mib']} | {r['rss_loaded_mib']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
