"""The model's resolution policy, chosen on validation data: each model folder at each input height,
side by side in one run, on every validation set it was trained beside (`evaluate --data-from`),
with the CPU milliseconds of one forward pass at that height (1920x1080 source, batch 1).

    .venv/bin/python benchmarks/bench_resolution.py --models models/unet_effl0_broadcast_v2 \
        --heights 540,720,900,1080 --data-from configs/unet_broadcast.yaml [--threads 2] [--out outputs/resolution]

Prints one row per (model, height): the per-source figures (acme player IoU and players-over-LED
IoU, detection people recall / precision / box AP50 at IoU 0.5 on held-out matches, EPL board IoU
and player share of hidden board) and ms per frame; writes `<out>/resolution.json`. The height with
the best mean of the figures that fits the CPU budget is what `input.target_height` records.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

KEYS = [("acme", "iou/player"), ("acme", "players_over_led_iou"), ("detection", "recall/player"),
        ("detection", "precision/player"), ("detection", "box_AP50"), ("epl", "iou/led_board"),
        ("epl", "player_over_board")]


def figures(results: dict) -> dict[str, float]:
    out = {}
    for source, key in KEYS:
        res = results["sources"].get(source, {})
        value = (res.get("semantic") or {}).get(key, (res.get("metrics") or {}).get(key))
        if value is None and "source_metrics" in res:
            value = res["source_metrics"].get(key)
        out[f"{source}/{key}"] = math.nan if value is None else float(value)
    return out


def forward_ms(model_dir: str, height: int, threads: int, repeat: int = 5) -> float:
    from playerseg.models.segmenter import Segmenter

    torch.set_num_threads(threads)
    seg = Segmenter.load(model_dir, device="cpu")
    h, w = seg.preprocess.size(1080, 1920) if height <= 0 else (height, int(round(1920 * height / 1080)))
    m = seg.preprocess.pad_multiple
    x = torch.zeros(1, 3, -(-h // m) * m, -(-w // m) * m)
    times = []
    with torch.inference_mode():
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            seg.model(x)
            if i:
                times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="models/unet_effl0_broadcast_v2")
    p.add_argument("--heights", default="540,720,900,1080")
    p.add_argument("--data-from", default="configs/unet_broadcast.yaml")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worst", type=int, default=4, help="frames in each source's gallery")
    p.add_argument("--max-samples", type=int, default=0, help="frames per source (0 = the whole val split)")
    p.add_argument("--out", default="outputs/resolution")
    args = p.parse_args()
    from playerseg.evaluate import EvaluateConfig, evaluate

    torch.set_num_threads(args.threads)
    rows = []
    for model in args.models.split(","):
        for height in [int(h) for h in args.heights.split(",")]:
            cfg = EvaluateConfig(checkpoint=model, data_from=args.data_from, split="val", worst=args.worst,
                                 out=f"{args.out}/{Path(model).name}_h{height}", target_height=height,
                                 max_samples=args.max_samples, device="cpu")
            t0 = time.perf_counter()
            row = {"model": model, "height": height, **figures(evaluate(cfg)),
                   "ms_per_frame": forward_ms(model, height, args.threads), "eval_s": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "resolution.json").write_text(json.dumps(rows, indent=2))
    names = [f"{s}/{k}" for s, k in KEYS]
    print("\n| model | height | " + " | ".join(names) + " | mean | CPU ms/frame |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |")
    for r in rows:
        vals = [r[n] for n in names if not math.isnan(r[n])]
        print(f"| {Path(r['model']).name} | {r['height']} | " + " | ".join(f"{r[n]:.3f}" for n in names)
              + f" | {sum(vals) / len(vals):.3f} | {r['ms_per_frame']:.0f} |")


if __name__ == "__main__":
    main()
