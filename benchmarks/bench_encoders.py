"""CPU speed of Unet with an EfficientNet-Lite0, Lite1 or Lite2 encoder: median ms per frame.

    .venv/bin/python benchmarks/bench_encoders.py                    # 3 encoders x 3 sizes, <= ~3 min
    .venv/bin/python benchmarks/bench_encoders.py --repeats 9 --sizes 960x544
    .venv/bin/python benchmarks/bench_encoders.py --encoders tu-efficientnet_lite0,resnet18

Eager PyTorch on the CPU, batch 1, `--threads` torch threads (default 2), forward only under
`torch.inference_mode()`, random initialisation (speed does not depend on the weights), the
project's default Unet decoder (`ModelConfig`). Sizes are W x H frames; a size that is not a
multiple of 32 is zero-padded up to one, as inference does (1280x720 runs as 1280x736).

Side by side: one warm-up forward per encoder (smallest size), then `--repeats` rounds (fewer if
the next would end past `--budget-s`); in each round every size runs every encoder once, in an
order rotated per round, so drifting load on a shared machine hits all encoders alike. The table gives the median and the min..max over the rounds, and the
load average before and after (numbers taken under load say how the encoders compare, not what a
dedicated core delivers).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

DEFAULT_ENCODERS = "tu-efficientnet_lite0,tu-efficientnet_lite1,tu-efficientnet_lite2"
DEFAULT_SIZES = "1280x720,960x544,1920x1088"


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def padded(size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    return tuple(-(-v // multiple) * multiple for v in size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS, help="comma-separated smp encoder names")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated WxH frame sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--budget-s", type=float, default=170.0,
                        help="start no new round that would end past this many seconds (>= 1 round)")
    args = parser.parse_args(argv)

    import torch

    from playerseg.models.registry import ModelConfig, build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    models = {e: build_model(ModelConfig(encoder=e, encoder_weights=""), num_classes=3).eval() for e in encoders}
    params = {e: sum(p.numel() for p in m.parameters()) / 1e6 for e, m in models.items()}
    inputs = {s: torch.randn(1, 3, padded(s)[1], padded(s)[0]) for s in sizes}
    wall: dict[tuple[str, tuple[int, int]], list[float]] = {(e, s): [] for e in encoders for s in sizes}
    cpu: dict[tuple[str, tuple[int, int]], list[float]] = {(e, s): [] for e in encoders for s in sizes}
    load_before = os.getloadavg()
    start = time.perf_counter()

    def forward(encoder: str, size: tuple[int, int]) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()  # process CPU time: all torch threads
        models[encoder](inputs[size])
        return (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3

    rounds = 0
    with torch.inference_mode():
        smallest = min(sizes, key=lambda s: s[0] * s[1])
        for e in encoders:
            forward(e, smallest)  # warm-up (one forward per encoder, smallest size: time is short)
        warmup = time.perf_counter() - start
        print(f"warm-up done, {warmup:.0f} s", file=sys.stderr, flush=True)
        while rounds < args.repeats:
            t = time.perf_counter()
            for s in sizes:
                order = encoders[rounds % len(encoders):] + encoders[:rounds % len(encoders)]
                for e in order:
                    w, c = forward(e, s)
                    wall[e, s].append(w)
                    cpu[e, s].append(c)
            rounds += 1
            elapsed = time.perf_counter() - start
            print(f"round {rounds}/{args.repeats} done, {elapsed:.0f} s", file=sys.stderr, flush=True)
            if elapsed + (time.perf_counter() - t) > args.budget_s:
                break
    load_after = os.getloadavg()

    def label(s: tuple[int, int]) -> str:
        p = padded(s)
        return f"{s[0]}x{s[1]}" + (f" (as {p[0]}x{p[1]})" if p != s else "")

    def table(times: dict, what: str) -> None:
        base = encoders[0]
        rows = [["encoder", "params M", *(label(s) for s in sizes)]]
        for e in encoders:
            cells = []
            for s in sizes:
                t = times[e, s]
                med = statistics.median(t)
                ratio = "" if e == base else f", x{med / statistics.median(times[base, s]):.2f}"
                cells.append(f"{med:.0f} ({min(t):.0f}..{max(t):.0f}{ratio})")
            rows.append([e, f"{params[e]:.2f}", *cells])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        print(f"\n{what}, median (min..max) over {rounds} rounds; x: median relative to {base}, same size\n")
        print(fmt(rows[0]))
        print("| " + " | ".join("-" * w for w in widths) + " |")
        for r in rows[1:]:
            print(fmt(r))

    print(f"Unet forward, eager torch {torch.__version__} CPU, batch 1, {args.threads} threads, random init, "
          f"{rounds} interleaved rounds after 1 warm-up per encoder")
    print(f"nice {os.nice(0)}, load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"on {os.cpu_count()} CPUs; {time.perf_counter() - start:.0f} s measured (warm-up {warmup:.0f} s)")
    table(wall, "wall ms per frame")
    table(cpu, "CPU ms per frame (process CPU time, all threads; less sensitive to other load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
