"""Throughput of `playerseg infer` (Ray Data) against a plain single-process loop (ONNX Runtime or PyTorch).

    .venv/bin/python benchmarks/bench_infer.py                       # sample clip, 2 CPUs
    .venv/bin/python benchmarks/bench_infer.py --clip x.mp4 --model models/unet_effl0_acme --cpus 2
    .venv/bin/python benchmarks/bench_infer.py --repeat 8 --variants default,naive   # steady state
    .venv/bin/python benchmarks/bench_infer.py --repeat 6 --variants default,torch --plain-runtime onnxruntime

Both sides do the same work on the same clip and model: decode -> resize by the model's scale
-> model (probabilities) -> the same post-processing (`infer.postprocess`) -> the same Parquet.
The plain loop is one process with `--cpus` threads on `--plain-runtime` (default onnxruntime: the
fastest a single process gets from these cores; `torch`: eager PyTorch); the Ray side is the job
itself (`resources.runtime` auto: ONNX Runtime in CPU actors; variant "torch": eager) on a local Ray of `--cpus` CPUs (planning, probing and actor start-up included in its time). The
variants differ only in resources; "naive" reproduces the first version's cause of slowness:
two actors with two torch threads each on two cores (oversubscribed), one frame per call.
Ratios come from one run, measured side by side (the baseline runs first and last, averaged).

On a machine shared with other work, wall-clock ratios say little (a job of several processes
takes a larger share of a contended CPU than one process does), so the script also reports
CPU seconds per frame of the whole process tree (this driver, Ray's daemons and workers, from
/proc): the work each way costs, which is what decides throughput on dedicated cores.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

VARIANTS = {  # name: (resources overrides, what it is)
    "default": ({}, "defaults: one 1-thread actor per spare CPU (2 x 0.875), post-processing in the actor"),
    "torch": ({"runtime": "torch"}, "defaults, eager PyTorch in the actors instead of ONNX Runtime"),
    "post-tasks": ({"actors": 2, "cpus_per_actor": 0.75, "postprocess_in_actor": False},
                   "2 actors x 1 torch thread, post-processing as separate tasks"),
    "1x1": ({"actors": 1, "cpus_per_actor": 1.0}, "1 actor x 1 torch thread"),
    "1x2": ({"actors": 1, "cpus_per_actor": 1.5}, "1 actor x 2 torch threads"),
    "naive": ({"actors": 2, "cpus_per_actor": 0.75, "torch_threads": 2, "batch_size": 1,
               "postprocess_in_actor": False},
              "first version: 2 actors x 2 torch threads on 2 cores, batch 1"),
}


def default_clip(tmp: Path) -> str:
    from playerseg.io import shared_data_dir

    clip = shared_data_dir() / "videos" / "bundesliga_478p.mp4"
    if clip.is_file():
        return str(clip)
    from playerseg.data.synthetic import generate

    return generate(str(tmp / "synthetic"), num_frames=150, size=(848, 478), fps=25, seed=3, progress=False)["video"]


def default_model(tmp: Path) -> str:
    """The committed model when present, else Unet + ImageNet Lite0 encoder (decoder untrained)."""
    committed = Path(__file__).resolve().parents[1] / "models" / "unet_effl0_acme"
    if committed.is_dir():
        return str(committed)
    from playerseg.classes import TaskClasses
    from playerseg.models.registry import ModelConfig, build_model
    from playerseg.models.segmenter import Preprocess, model_meta
    from playerseg.train.unet import write_model_dir

    cfg = ModelConfig(num_classes=3)
    write_model_dir(tmp / "model", build_model(cfg).state_dict(), model_meta(cfg, TaskClasses(), Preprocess(scale=0.5)))
    return str(tmp / "model")


def long_clip(clip: str, repeat: int, tmp: Path) -> str:
    """`clip` joined to itself `repeat` times by remuxing (no re-encode), in `tmp`."""
    from playerseg.video.encode import concat

    out = str(tmp / "long.mp4")
    concat([clip] * repeat, out)
    return out


def descendants(root: int) -> list[int]:
    """Live descendants of process `root`, from the parent pids in /proc."""
    import os

    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def tree_cpu() -> dict[int, float]:
    """pid -> CPU seconds (user + system) of this process and each live descendant."""
    import os

    out = {}
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return out


def measured(fn, *a):
    """(frames, wall seconds, CPU seconds of the process tree, extra) of fn(*a). The tree is
    sampled 5 times a second, so workers that exit before the end (actors) are counted too."""
    import threading

    start = tree_cpu()
    last = dict(start)
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            last.update(tree_cpu())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    n, _, *extra = fn(*a)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    last.update(tree_cpu())
    return n, wall, sum(cpu - start.get(pid, 0.0) for pid, cpu in last.items()), extra


def plain_loop(clip: str, model: str, out: Path, threads: int, batch_size: int,
               runtime: str = "onnxruntime") -> tuple[int, float]:
    """decode -> resize -> model (`runtime`) -> post-processing -> Parquet in one process; (frames, seconds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from playerseg.infer.pipeline import frame_result
    from playerseg.infer.postprocess import PostprocessConfig
    from playerseg.models.segmenter import Segmenter
    from playerseg.video import decode_segment, plan_segments, probe
    from playerseg.video.schema import PREDICTION_SCHEMA, prediction_row

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    resize = Segmenter.load(model, "cpu").preprocess.resize
    seg = Segmenter.load(model, "cpu", model_resolution=True, runtime=runtime, threads=threads)
    post = PostprocessConfig()
    info = probe(clip)
    rows, n = [], 0

    def flush(batch, metas):
        proba = seg.predict_proba(np.stack(batch))
        for p, meta in zip(proba, metas):
            r = frame_result(meta, p.astype(np.float16), seg.classes, post)
            rows.extend(prediction_row(meta["video_id"], meta["frame_index"], meta["pts_seconds"], inst)
                        for inst in r["instances"])

    batch, metas = [], []
    for segment in plan_segments(info, segment_seconds=None, segment_frames=10**9):
        for f in decode_segment(segment):
            h, w = f.image.shape[:2]
            batch.append(resize(f.image))
            metas.append({"unit": "", "video_id": f.video_id, "frame_index": f.frame_index,
                          "pts_seconds": f.pts_seconds, "width": w, "height": h, "error": ""})
            n += 1
            if len(batch) == batch_size:
                flush(batch, metas)
                batch, metas = [], []
    if batch:
        flush(batch, metas)
    pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), str(out / "plain.parquet"))
    return n, time.perf_counter() - t0


def ray_job(clip: str, model: str, out: Path, overrides: dict, segment_frames: int) -> tuple[int, float, dict]:
    from playerseg.infer.pipeline import InferConfig, run_inference

    cfg = InferConfig(model=model, inputs=[clip], output=str(out), segment_frames=segment_frames)
    cfg.tracking.enabled = False  # the plain loop does not track: the same work on both sides
    for k, v in overrides.items():
        setattr(cfg.resources, k, v)
    t0 = time.perf_counter()
    s = run_inference(cfg, overwrite=True)
    if s["failures"]:
        raise RuntimeError(s["failures"])
    return s["frames_written"], time.perf_counter() - t0, s["resources"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip")
    ap.add_argument("--model")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--segment-frames", type=int, default=32)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    ap.add_argument("--plain-runtime", default="onnxruntime", choices=("onnxruntime", "torch"),
                    help="the plain loop's runtime (the job's is resources.runtime: auto, or a variant's)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="join the clip to itself N times (remux, no re-encode): a longer clip weighs the job's "
                         "fixed start-up (actors load the model) less against its steady throughput")
    args = ap.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    try:
        clip = args.clip or default_clip(tmp)
        model = args.model or default_model(tmp)
        if args.repeat > 1:
            clip = long_clip(clip, args.repeat, tmp)
            print(f"the clip joined {args.repeat} times")
        print(f"clip {clip}\nmodel {model}\nlocal Ray with {args.cpus} CPUs; plain loop on {args.plain_runtime} "
              f"with {args.cpus} threads")
        from playerseg.models.segmenter import Segmenter

        Segmenter.load(model, "cpu", runtime="auto")  # a folder's ONNX export made once, before anything is timed
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        import os

        load0 = os.getloadavg()[0]
        results = []
        plain = (plain_loop, clip, model, tmp, args.cpus, args.batch_size, args.plain_runtime)
        n0, t_first, cpu_first, _ = measured(*plain)
        for name in args.variants.split(","):
            overrides, what = VARIANTS[name]
            overrides = {"batch_size": args.batch_size, **overrides}
            n, t, cpu, (res,) = measured(ray_job, clip, model, tmp / f"ray-{name}", overrides, args.segment_frames)
            assert n == n0, f"{name}: {n} frames, plain loop {n0}"
            results.append((name, what, n / t, cpu / n, res))
            print(f"  ray {name:14s} {n / t:6.2f} frames/s ({t:.1f} s), {cpu / n * 1000:.0f} CPU-ms/frame  {res}", flush=True)
        _, t_last, cpu_last, _ = measured(*plain)
        base = n0 / ((t_first + t_last) / 2)
        base_cpu = (cpu_first + cpu_last) / 2 / n0
        print(f"\nplain single-process loop ({args.plain_runtime}): {base:.2f} frames/s, {base_cpu * 1000:.0f} CPU-ms/frame "
              f"({n0} frames; runs {t_first:.1f} s and {t_last:.1f} s)")
        print(f"load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'variant':14s} {'frames/s':>9s} {'ratio':>6s} {'CPU-ms/frame':>13s} {'CPU ratio':>9s}  what")
        for name, what, fps, cpu, _ in results:
            print(f"{name:14s} {fps:9.2f} {fps / base:5.2f}x {cpu * 1000:13.0f} {base_cpu / cpu:8.2f}x  {what}")
        print("ratio = frames/s over the plain loop's; CPU ratio = plain loop's CPU per frame over the variant's "
              "(>= 1: the job costs no more CPU per frame than the plain loop)")
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
