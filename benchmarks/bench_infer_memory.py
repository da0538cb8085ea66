"""Peak memory per worker of `playerseg infer` on a long clip: it must stay bounded (flat in the
clip's length), because every stage streams frames and each unit is written when it completes.

    .venv/bin/python benchmarks/bench_infer_memory.py --repeat 8      # the sample clip 8 times over

The long clip is the sample clip joined to itself `--repeat` times by remuxing (no re-encode,
`video.encode.concat`). Every process of the local Ray (and the driver) is sampled from /proc twice
a second. What must stay flat is each process's private memory (RssAnon) from the first quarter of
the run to the last. RSS alone misleads: it also counts the pages of Ray's shared-memory object
store a worker has touched (RssShmem), which grow as the store's allocator walks through its
arena and are bounded by the store's size (`--object-store-mb` caps it), not by the clip.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_infer import descendants  # noqa: E402


def proc_info(pid: int) -> tuple[str, int, int, int, int] | None:
    """(name, rss kB, peak rss kB, private rss kB, shared-memory rss kB) of a process.

    RssShmem counts the pages of Ray's shared-memory object store the process has touched (frames
    it read zero-copy): they belong to the object store, whose size is fixed when Ray starts, not to
    the process. RssAnon is the process's own heap: the figure that must stay flat."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            name = f.read().split(b"\0")[0].decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        kb = {k: int(status[k].split()[0]) for k in ("VmRSS", "VmHWM", "RssAnon", "RssShmem")}
        return name, kb["VmRSS"], kb["VmHWM"], kb["RssAnon"], kb["RssShmem"]
    except (OSError, KeyError, ValueError):
        return None


class Sampler(threading.Thread):
    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.samples: list[tuple[float, str, int, int, int, int, int]] = []  # t, name, pid, rss, hwm, anon, shmem

    def run(self):
        me = os.getpid()
        while not self.stop.is_set():
            t = time.time()
            for pid in [me, *descendants(me)]:
                info = proc_info(pid)
                if info and (info[0].startswith("ray::") or pid == me):
                    self.samples.append((t, info[0], pid, *info[1:]))
            self.stop.wait(self.every)


def kind(name: str) -> str:
    if not name.startswith("ray::"):
        return "driver"
    for key in ("Predictor", "decode_unit", "postprocess_batch", "SamPostprocessor", "IDLE"):
        if key in name:
            return key
    return name.split()[0][:40]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip")
    ap.add_argument("--model")
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--segment-frames", type=int, default=64)
    ap.add_argument("--object-store-mb", type=int, default=0,
                    help="cap Ray's object store (0 = Ray's default, 30%% of RAM): its pages, shared by every "
                         "worker, show in their RSS; with a cap they can never exceed it")
    args = ap.parse_args()

    import ray

    from bench_infer import default_clip, default_model, long_clip
    from playerseg.infer.pipeline import InferConfig, run_inference

    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-mem-"))
    try:
        clip = args.clip or default_clip(tmp)
        model = args.model or default_model(tmp)
        long = long_clip(clip, args.repeat, tmp)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 object_store_memory=args.object_store_mb * 2**20 if args.object_store_mb else None)
        ray.data.DataContext.get_current().enable_progress_bars = False
        sampler = Sampler()
        sampler.start()
        t0 = time.time()
        s = run_inference(InferConfig(model=model, inputs=[long], output=str(tmp / "out"),
                                      segment_frames=args.segment_frames), overwrite=True)
        t1 = time.time()
        sampler.stop.set()
        sampler.join()
        ray.shutdown()
        print(f"long clip: {clip} x {args.repeat} = {s['frames_written']} frames, {s['wall_seconds']} s "
              f"({s['frames_per_second']} frames/s), failures: {len(s['failures'])}")
        quarters = defaultdict(lambda: [0, 0, 0, 0])  # max private RSS per quarter of the run
        stats = defaultdict(lambda: {"hwm": 0, "shmem": 0})
        span = max(1e-6, t1 - t0)
        for t, name, _pid, rss, hwm, anon, shmem in sampler.samples:
            k = kind(name)
            st, q = stats[k], min(3, max(0, int(4 * (t - t0) / span)))
            st["hwm"], st["shmem"] = max(st["hwm"], hwm), max(st["shmem"], shmem)
            quarters[k][q] = max(quarters[k][q], anon)
        print("MiB per process kind. private = RssAnon, the process's own memory (max in each quarter of the run);")
        print("object store = RssShmem, pages of Ray's shared object store the process touched (bounded by its size);")
        print("peak RSS = VmHWM, private + object store + mapped libraries")
        print(f"{'worker':22s} {'peak RSS':>9s} {'private q1':>11s} {'q2':>6s} {'q3':>6s} {'q4':>6s} {'object store':>13s}")
        for k in sorted(stats):
            q = [v / 1024 for v in quarters[k]]
            print(f"{k:22s} {stats[k]['hwm'] / 1024:9.0f} {q[0]:11.0f} {q[1]:6.0f} {q[2]:6.0f} {q[3]:6.0f} "
                  f"{stats[k]['shmem'] / 1024:13.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
