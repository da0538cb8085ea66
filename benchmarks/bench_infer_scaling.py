"""Scaling of `playerseg infer`: measured stage costs, a throughput model per node and per GPU,
and the same job on one node and on a 2-node `ray.cluster_utils.Cluster`.

    .venv/bin/python benchmarks/bench_infer_scaling.py [--clip x.mp4] [--model m] [--gpu-model-ms 6]

Stage costs are measured in one process on this machine (ms per frame): decode (source size),
resize (to model size), model forward at 1 and 2 torch threads, post-processing (+ RLE).

Throughput model (frames/s), with c_* the CPU costs in seconds per frame on one core:
  CPU node, C cores, model actors of 1 torch thread (no intra-op overhead), every stage sharing
  the cores: fps_node = C / (c_model + c_decode + c_resize + c_post)
  GPU node, G GPUs, C cores, g_model the GPU forward time per frame (incl. transfer):
      fps_node = min(G / g_model, (C - G) / (c_decode + c_resize + c_post))
  cluster of N nodes: N * fps_node (the driver only writes small Parquet rows, ~0.2 ms/frame).
So a GPU at g frames/s needs (c_decode + c_resize + c_post) * g CPU cores beside it to stay busy.
g_model is not measured here (no GPU on this machine): pass `--gpu-model-ms` from a GPU run.

The 2-node run shares this machine's cores with the 1-node run (both 2 CPUs in total): it shows
that the job spreads over nodes and what cross-node transfer costs, not more hardware.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))


def stage_costs(clip: str, model: str, frames: int = 32, batch: int = 4) -> dict[str, float]:
    """Seconds per frame of each stage, measured in this process."""
    import torch

    from playerseg.infer.pipeline import frame_result
    from playerseg.infer.postprocess import PostprocessConfig
    from playerseg.models.segmenter import Segmenter
    from playerseg.video import decode_segment, plan_segments, probe

    seg = plan_segments(probe(clip), segment_seconds=None, segment_frames=frames)[0]
    t = time.perf_counter()
    images = [f.image for f in decode_segment(seg)][:frames]
    c = {"decode": (time.perf_counter() - t) / len(images)}
    resize = Segmenter.load(model, "cpu").preprocess.resize
    h, w = images[0].shape[:2]
    t = time.perf_counter()
    small = [resize(im) for im in images]
    c["resize"] = (time.perf_counter() - t) / len(images)
    net = Segmenter.load(model, "cpu", model_resolution=True)
    net.batch_size = batch
    x = np.stack(small[: 4 * batch])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        net.predict_proba(x[:batch])  # warm-up
        t = time.perf_counter()
        proba = net.predict_proba(x)
        c[f"model_t{threads}"] = (time.perf_counter() - t) / len(x)
    meta = {"unit": "", "video_id": "v", "frame_index": 0, "pts_seconds": 0.0, "width": w, "height": h, "error": ""}
    t = time.perf_counter()
    for p in proba:
        frame_result(meta, p.astype(np.float16), net.classes, PostprocessConfig())
    c["post"] = (time.perf_counter() - t) / len(proba)
    return c


def run_job(address: str | None, clip: str, model: str, out: Path, cpus: int | None) -> dict:
    import ray

    from playerseg.infer.pipeline import InferConfig, run_inference

    ray.init(address=address, num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        cfg = InferConfig(model=model, inputs=[clip], output=str(out), segment_frames=32)
        cfg.resources.actors, cfg.resources.cpus_per_actor, cfg.resources.torch_threads = 2, 0.75, 1
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        s = run_inference(cfg, overwrite=True)
        s["nodes"] = nodes
        return s
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip")
    ap.add_argument("--model")
    ap.add_argument("--gpu-model-ms", type=float, default=0.0, help="measured GPU forward ms/frame (0: unknown)")
    args = ap.parse_args()

    from ray.cluster_utils import Cluster

    from bench_infer import default_clip, default_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-scale-"))
    try:
        clip = args.clip or default_clip(tmp)
        model = args.model or default_model(tmp)
        c = stage_costs(clip, model)
        print(f"clip {clip}\nmodel {model}\nstage costs, ms/frame (one process): "
              + ", ".join(f"{k} {v * 1000:.1f}" for k, v in c.items()))
        cpu_side = c["decode"] + c["resize"] + c["post"]
        print("\nthroughput model (frames/s):")
        per_frame = c["model_t1"] + cpu_side
        for cores in (2, 8, 16, 64):
            print(f"  CPU node, {cores:2d} cores: {cores / per_frame:7.1f}")
        print(f"  a GPU at g frames/s needs {cpu_side * 1000:.1f} ms of CPU per frame beside it: "
              f"{cpu_side * 100:.1f} cores at 100 frames/s")
        if args.gpu_model_ms:
            g = 1000 / args.gpu_model_ms
            for cores, gpus in ((8, 1), (16, 1), (16, 4), (48, 8)):
                print(f"  GPU node {cores:2d} cores, {gpus} GPU(s): {min(gpus * g, (cores - gpus) / cpu_side):7.1f}")

        one = run_job(None, clip, model, tmp / "one", 2)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        try:
            two = run_job(cluster.address, clip, model, tmp / "two", None)
        finally:
            cluster.shutdown()
        print("\nmeasured, same job (2 actors x 0.75 CPU, 1 thread):")
        for name, s in (("1 node x 2 CPUs", one), ("2 nodes x 1 CPU", two)):
            print(f"  {name}: {s['frames_per_second']:.2f} frames/s ({s['frames_written']} frames, {s['nodes']} node(s))")
        print(f"  2-node / 1-node: {two['frames_per_second'] / one['frames_per_second']:.2f}x on the same 2 cores")
        print(f"  model for 2 cores: {2 / per_frame:.2f} frames/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
