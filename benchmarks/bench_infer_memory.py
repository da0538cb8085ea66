"""Peak memory per worker of `playerseg infer` on a long clip: it must stay bounded (flat in the
clip's length), because every stage streams frames and each unit is written when it completes.

    .venv/bin/python benchmarks/bench_infer_memory.py --repeat 8      # the sample clip 8 times over

The long clip is the sample clip joined to itself `--repeat` times by remuxing (no re-encode,
`video.encode.concat`). Every process of the local Ray (descendants of this driver) is sampled
from /proc twice a second: peak RSS (VmHWM) per process, by Ray worker name, plus the RSS of each
kind over the first and the last third of the run (growth would show there).
"""
from __future__ import annotations

import argparse
import os
import resource
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


def proc_info(pid: int) -> tuple[str, int, int] | None:
    """(name, rss kB, peak rss kB) of a process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            name = f.read().split(b"\0")[0].decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return name, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


class Sampler(threading.Thread):
    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.samples: list[tuple[float, str, int, int, int]] = []  # t, name, pid, rss, hwm

    def run(self):
        me = os.getpid()
        while not self.stop.is_set():
            t = time.time()
            for pid in descendants(me):
                info = proc_info(pid)
                if info and info[0].startswith("ray::"):
                    self.samples.append((t, info[0], pid, info[1], info[2]))
            self.stop.wait(self.every)


def kind(name: str) -> str:
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
    args = ap.parse_args()

    import ray

    from bench_infer import default_clip, default_model
    from playerseg.infer.pipeline import InferConfig, run_inference
    from playerseg.video.encode import concat

    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-mem-"))
    try:
        clip = args.clip or default_clip(tmp)
        model = args.model or default_model(tmp)
        long_clip = str(tmp / "long.mp4")
        concat([clip] * args.repeat, long_clip)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        sampler = Sampler()
        sampler.start()
        t0 = time.time()
        s = run_inference(InferConfig(model=model, inputs=[long_clip], output=str(tmp / "out"),
                                      segment_frames=args.segment_frames), overwrite=True)
        t1 = time.time()
        sampler.stop.set()
        sampler.join()
        ray.shutdown()
        print(f"long clip: {clip} x {args.repeat} = {s['frames_written']} frames, {s['wall_seconds']} s "
              f"({s['frames_per_second']} frames/s), failures: {len(s['failures'])}")
        peak = defaultdict(int)
        thirds = defaultdict(lambda: [0, 0])
        span = t1 - t0
        for t, name, _pid, rss, hwm in sampler.samples:
            k = kind(name)
            peak[k] = max(peak[k], hwm)
            if t < t0 + span / 3:
                thirds[k][0] = max(thirds[k][0], rss)
            elif t > t1 - span / 3:
                thirds[k][1] = max(thirds[k][1], rss)
        print(f"{'worker':22s} {'peak RSS MiB':>12s} {'max RSS 1st third':>18s} {'max RSS last third':>19s}")
        for k in sorted(peak):
            print(f"{k:22s} {peak[k] / 1024:12.0f} {thirds[k][0] / 1024:18.0f} {thirds[k][1] / 1024:19.0f}")
        print(f"{'driver':22s} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:12.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
