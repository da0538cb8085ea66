"""Cost of the semantic metrics per frame (`SegmentationMeter.update`) against a plain full-frame
reference (np.bincount confusion matrix, distance transforms over the whole frame), side by side
in one run on real Acme frames, at full size and downscaled; also checks both give the same values.

    .venv/bin/python benchmarks/bench_metrics.py [--frames 10] [--repeat 3]

Predictions are the truth with players near boards given to the board and shifted 3 px: a made-up
error so that every metric has something to measure (timings only; no accuracy claim).
"""
from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.acme import AcmeReader
from playerseg.io import shared_data_dir
from playerseg.metrics.boundary import mask_boundary
from playerseg.metrics.semantic import SegmentationMeter, led_region


def reference(pred: np.ndarray, target: np.ndarray, classes: TaskClasses, radius: int, tol: int) -> dict:
    """The same metrics, computed the plain way over the whole frame."""
    k, valid = len(classes), target != IGNORE_INDEX
    cm = np.bincount(target[valid].astype(np.int64) * k + pred[valid], minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    out = {f"iou/{n}": tp[i] / union[i] if union[i] else math.nan for i, n in enumerate(classes.names)}
    dist = lambda b: cv2.distanceTransform((~b).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # noqa: E731
    for i, n in enumerate(classes.names[1:], 1):
        bp, bt = mask_boundary(pred == i) & valid, mask_boundary(target == i)
        if not bp.any() and not bt.any():
            out[f"boundary_f/{n}"] = math.nan
            continue
        p = (dist(bt)[bp] <= tol + 1e-3).mean() if bp.any() and bt.any() else 0.0
        r = (dist(bp)[bt] <= tol + 1e-3).mean() if bp.any() and bt.any() else 0.0
        out[f"boundary_f/{n}"] = 2 * p * r / (p + r) if p + r else 0.0
    led = target == classes.led_board
    region = (dist(led) <= radius + 1e-3) & valid if led.any() else np.zeros_like(led)
    pp, tt = (pred == classes.player) & region, (target == classes.player) & region
    u = np.count_nonzero(pp | tt)
    out["players_over_led_iou"] = np.count_nonzero(pp & tt) / u if u else math.nan
    return out


def damaged(target: np.ndarray, classes: TaskClasses, radius: int) -> np.ndarray:
    pred = np.where(target == IGNORE_INDEX, 0, target).astype(np.uint8)
    pred[led_region(target, classes.led_board, radius) & (pred == classes.player)] = classes.led_board
    return np.roll(pred, 3, axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    root = shared_data_dir() / "acme-football-semseg"
    reader = AcmeReader(str(root))
    classes = reader.classes
    targets = [reader.load(k).semantic for k in reader.keys()[: args.frames]]
    print(f"{len(targets)} Acme frames, {args.repeat} repeats; ms per frame (median)")
    print(f"{'size':>10} {'meter':>8} {'reference':>10} {'ratio':>6} {'max |diff|':>11}")
    for scale in (1.0, 0.5):
        ts = [cv2.resize(t, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for t in targets]
        radius, tol = max(1, round(15 * scale)), max(1, round(2 * scale))
        ps = [damaged(t, classes, radius) for t in ts]
        times = {"meter": [], "reference": []}
        diff = 0.0
        for _ in range(args.repeat):
            meter = SegmentationMeter(classes, led_radius=radius, boundary_tol=tol)
            t0 = time.perf_counter()
            rows = [meter.update(p, t)[0] for p, t in zip(ps, ts)]
            times["meter"].append((time.perf_counter() - t0) / len(ts))
            t0 = time.perf_counter()
            refs = [reference(p, t, classes, radius, tol) for p, t in zip(ps, ts)]
            times["reference"].append((time.perf_counter() - t0) / len(ts))
            for row, ref in zip(rows, refs):
                for key, value in ref.items():
                    if not (math.isnan(value) and math.isnan(row[key])):
                        diff = max(diff, abs(value - row[key]))
        m, r = (1000 * float(np.median(times[k])) for k in ("meter", "reference"))
        h, w = ts[0].shape
        print(f"{w}x{h:<5} {m:8.1f} {r:10.1f} {r / m:6.1f} {diff:11.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
