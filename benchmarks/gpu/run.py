"""The prepared GPU run: inference speed and a fixed-time training of the committed config, on one
CUDA GPU, without Ray, network or the packages a bare CUDA PyTorch machine lacks.

    python benchmarks/gpu/bundle.py --out dist/gpu_bundle          # here: code + wheels + models + pack
    cd dist/gpu_bundle && python run.py --out /some/out             # there: <= 8 minutes, JSON figures in --out
    python benchmarks/gpu/run.py --tiny --device cpu --pack P --out O   # the CPU dry run of the tests

The run is cut into phases with a time plan (printed first). Each phase runs in its own process
under the plan's deadline (a hang or crash in one, e.g. torch.compile, is recorded and the next
phase runs) and writes its JSON after every measurement, so a run stopped at any point leaves what
it measured:

  setup   wheels of the bundle that are not importable are unpacked into <bundle>/_site
          (segmentation_models_pytorch, pycocotools, ...; nothing is downloaded)
  infer   <out>/infer.json: the committed model (models/unet_effl0_broadcast_v2) on a 1080p frame
          brought to each input height (720 = its resolution policy, 1080 = full HD): frames/s over
          batch sizes for fp32, autocast fp16 / bf16, fp16 / bf16 weights, channels_last or not,
          torch.compile of the best eager setting, and uint8 1080p frames -> class map end to end;
          the GPU busy share of each (CUDA event time of the model calls / wall time, and
          nvidia-smi's utilisation when it is there), peak memory
  train   <out>/train.json and <out>/train/model/: configs/unet_broadcast_v2.yaml (Unet +
          EfficientNet-Lite0, three sources with partial-label and box losses, from
          models/unet_effl0_broadcast) trained for the phase's time from the bundle's pack with the
          project's own model builder, loss, class-set targets, crop sampler, training step and
          validation (`playerseg.train.unet`); the model folder loads with `Segmenter.load`
  summary <out>/summary.json: the plan, the environment, every phase's figures, status and errors

Differences from the Ray training run (also written to train.json): one process, no DDP; crop
augmentation by `augment.SimpleAugment` (zoom, crop, flip, colour shift; no rotation, HSV, blur);
epochs sized so that `run.epochs` fit the time (the cosine schedule runs its whole course); the
encoder's ImageNet initialisation is skipped (`model.encoder_weights: ""`) because `run.init_weights`
(models/unet_effl0_broadcast) replaces every weight anyway; validation of box-labelled sources (the
detection set) needs scipy (`infer.postprocess`) and is skipped where scipy is absent (then
`playerseg evaluate --checkpoint <out>/train/model --data-from configs/unet_broadcast_v2.yaml` gives
it on any machine).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IN_BUNDLE = (HERE / "lib" / "playerseg").is_dir()
ROOT = HERE if IN_BUNDLE else HERE.parents[1]  # where lib/, configs/, models/ are
SITE = HERE / "_site"  # wheels unpacked here (the bundle's own folder)
for _p in (SITE, ROOT / "lib"):
    if _p.is_dir() and str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# imported from a wheel, not on a bare CUDA PyTorch machine: wheel name prefix -> module
WHEEL_MODULES = {"segmentation_models_pytorch": "segmentation_models_pytorch", "pycocotools": "pycocotools",
                 "pyyaml": "yaml", "fsspec": "fsspec", "scipy": "scipy"}
# never needed by this script (a bare machine has none of them): recorded if anything imports them
ABSENT_THERE = ("ray", "albumentations", "segment_anything", "av", "wandb")

# seconds per phase: GPU run (<= 480 s in all, with each phase's kill grace) and the tiny CPU dry run
PLANS = {"gpu": {"setup": 15, "infer": 160, "train": 245, "grace": 15},
         "tiny": {"setup": 5, "infer": 15, "train": 40, "grace": 15}}


# ---- shared helpers ------------------------------------------------------------------------------
class Record(dict):
    """A phase's figures, written (atomically) to its JSON file on every `save()`."""

    def __init__(self, path: Path, **items):
        super().__init__(**items)
        self.path = Path(path)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self, indent=1, default=_plain) + "\n")
        os.replace(tmp, self.path)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def _clean(d: dict) -> dict:
    """NaN -> None (JSON null) in a flat dict of figures."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def env_info(torch, device) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "device": str(device),
            "cpus": os.cpu_count(), "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
    return info


def importable(module: str) -> bool:
    """`module` can be imported here (a broken or refused install counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def absent_there_imported() -> list[str]:
    return [m for m in ABSENT_THERE if m in sys.modules]


class GpuSampler:
    """nvidia-smi's utilisation.gpu every 100 ms in the background (when nvidia-smi is there);
    `mean(t0, t1)` is the mean over a time window (time.monotonic)."""

    def __init__(self):
        import shutil

        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            try:
                self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                              "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                threading.Thread(target=self._read, daemon=True).start()
            except OSError:
                self.proc = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.strip().split(",")[0])))
            except ValueError:
                pass

    def mean(self, t0: float, t1: float) -> float | None:
        vals = [v for t, v in self.samples if t0 <= t <= t1]
        return round(sum(vals) / len(vals) / 100.0, 3) if vals else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()


def pick_device(torch, name: str):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# ---- phase: infer --------------------------------------------------------------------------------
PRECISIONS = {  # name -> (autocast dtype, weights/input dtype)
    "fp32": (None, "float32"), "amp_bf16": ("bfloat16", "float32"), "amp_fp16": ("float16", "float32"),
    "bf16": (None, "bfloat16"), "fp16": (None, "float16")}


def input_hw(height: int, pad: int = 32, source=(1080, 1920)) -> tuple[int, int]:
    """The model input of a 1920x1080 frame brought to `height` (aspect kept), padded to `pad`."""
    w = round(source[1] * height / source[0])
    return -(-height // pad) * pad, -(-w // pad) * pad


def converted(torch, base, dtype: str, channels_last: bool):
    """A copy of `base` in `dtype` (and channels_last memory format)."""
    import copy

    m = copy.deepcopy(base).to(dtype=getattr(torch, dtype))
    return m.to(memory_format=torch.channels_last) if channels_last else m


def kernel_share(torch, fn, x, device, calls: int = 3) -> dict | None:
    """Share of the wall time of `calls` calls during which CUDA kernels ran (torch.profiler's kernel
    times; the CUDA-event share counts the GPU's gaps between kernels as busy); None on CPU."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    from torch.autograd import DeviceType

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]  # one stream: no overlap
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
    return {"kernel_busy_share": round(busy / wall, 3), "kernels_per_call": len(kernels) // calls,
            "profiled_ms_per_call": round(1000 * wall / calls, 3)}


def time_calls(torch, fn, x, device, deadline: float, min_iters: int, min_seconds: float, warmup: int = 3) -> dict:
    """Wall and CUDA-event time of repeated `fn(x)` after `warmup` calls."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        fn(x)
    sync()
    events = []
    n = 0
    t0 = time.perf_counter()
    while n < 2000:
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn(x)
            e.record()
            events.append((s, e))
        else:
            fn(x)
        n += 1
        if n >= min_iters and (time.perf_counter() - t0 >= min_seconds or time.monotonic() > deadline):
            break
    sync()
    wall = time.perf_counter() - t0
    out = {"iters": n, "ms_per_call": round(1000 * wall / n, 3)}
    if cuda:
        gpu_ms = sum(s.elapsed_time(e) for s, e in events)
        out.update(gpu_ms_per_call=round(gpu_ms / n, 3), gpu_busy_share=round(gpu_ms / (1000 * wall), 3))
    return out


def phase_infer(args, rec: Record, deadline: float) -> None:
    import torch

    from playerseg.models.segmenter import Segmenter

    device = pick_device(torch, args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    rec["env"] = env_info(torch, device)
    rec["settings"] = {"cudnn_benchmark": torch.backends.cudnn.benchmark,
                       "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    seg = Segmenter.load(args.model, device="cpu", runtime="torch")
    rec["model"] = {"path": str(args.model), "classes": list(seg.classes.names),
                    "target_height": seg.preprocess.target_height,
                    "params": sum(p.numel() for p in seg.model.parameters())}
    base = seg.model.float().eval().to(device)
    sampler = GpuSampler()
    rec["nvidia_smi"] = sampler.proc is not None
    rec["cells"], rec["compile"], rec["end_to_end"], rec["errors"] = [], [], [], []
    precisions = [p for p in args.precisions if p in PRECISIONS]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions = [p for p in precisions if "bf16" not in p]
    auto = "amp_bf16" if "amp_bf16" in precisions else precisions[0]
    models = {}

    def model_for(precision: str, channels_last: bool):
        key = (PRECISIONS[precision][1], channels_last)
        if key not in models:
            models[key] = converted(torch, base, key[0], channels_last)
        return models[key]

    def forward_fn(model, precision: str):
        amp, _ = PRECISIONS[precision]

        @torch.inference_mode()
        def fn(x):
            with torch.autocast(device.type, dtype=getattr(torch, amp) if amp else None, enabled=amp is not None):
                return model(x)
        return fn

    def cell(height: int, precision: str, channels_last: bool, batch: int, model=None, extra=None) -> dict | None:
        if time.monotonic() > deadline:
            return None
        hw = input_hw(height)
        row = {"height": height, "input_hw": list(hw), "precision": precision, "channels_last": channels_last,
               "batch": batch, **(extra or {})}
        try:
            m = model if model is not None else model_for(precision, channels_last)
            x = torch.randn(batch, 3, *hw, device=device).to(getattr(torch, PRECISIONS[precision][1]))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.monotonic()
            row.update(time_calls(torch, forward_fn(m, precision), x, device, deadline, args.min_iters, args.min_seconds))
            row["frames_per_s"] = round(batch * 1000 / row["ms_per_call"], 2)
            row["nvidia_smi_util"] = sampler.mean(t0, time.monotonic())
            if device.type == "cuda":
                row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        except Exception as e:  # noqa: BLE001 (OOM, an unsupported dtype: recorded, the next cell runs)
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return row

    # in this order, every height at each step: 1) what runtime "auto" runs on CUDA (autocast +
    # channels_last) over every batch, 2) plain fp32, 3) the other settings at two mid batch sizes
    groups = [[(auto, True, b) for b in args.batches], [("fp32", False, b) for b in args.batches]]
    mid = [b for b in args.batches if b >= 4][:2] or args.batches[:1]
    groups.append([(p, cl, b) for p in precisions for cl in (True, False) for b in mid
                   if (p, cl, b) not in groups[0] + groups[1]])
    steps = [(h, p, cl, b) for g in groups for h in args.heights for p, cl, b in g if p in precisions]
    for height, precision, cl, batch in steps:
        row = cell(height, precision, cl, batch)
        if row is None:
            rec["stopped"] = "phase time used up"
            break
        rec["cells"].append(row)
        rec.save()
    models.clear()
    ok = [r for r in rec["cells"] if "frames_per_s" in r]
    best = {h: max((r for r in ok if r["height"] == h), key=lambda r: r["frames_per_s"], default=None)
            for h in args.heights}
    rec["best_eager"] = {str(h): r for h, r in best.items()}
    rec.save()
    for height, b in best.items():  # the kernels' own share of the best setting's wall time
        if b is not None and time.monotonic() < deadline:
            try:
                m = model_for(b["precision"], b["channels_last"])
                x = torch.randn(b["batch"], 3, *input_hw(height), device=device).to(getattr(torch, PRECISIONS[b["precision"]][1]))
                if b["channels_last"]:
                    x = x.contiguous(memory_format=torch.channels_last)
                b["profiled"] = kernel_share(torch, forward_fn(m, b["precision"]), x, device)
            except Exception as e:  # noqa: BLE001
                b["profiled_error"] = f"{type(e).__name__}: {e}"[:300]
            rec.save()
    # 4) end to end: uint8 1080p frames on the host -> resize, normalise, model, argmax -> class maps on the host
    for height, b in best.items():
        if b is None or time.monotonic() > deadline:
            continue
        rec["end_to_end"].append(end_to_end(torch, base, seg.preprocess, device, height, b, args, deadline, sampler))
        rec.save()
    # 5) torch.compile of the best eager setting per height (the slowest step, and one that can hang: last)
    if args.compile:
        for height, b in best.items():
            if b is None or time.monotonic() > deadline:
                continue
            row = {"height": height, "precision": b["precision"], "channels_last": b["channels_last"], "batch": b["batch"]}
            try:
                m = model_for(b["precision"], b["channels_last"])
                compiled = torch.compile(m, mode=args.compile_mode, dynamic=False)
                x = torch.randn(b["batch"], 3, *input_hw(height), device=device).to(getattr(torch, PRECISIONS[b["precision"]][1]))
                if b["channels_last"]:
                    x = x.contiguous(memory_format=torch.channels_last)
                t0 = time.perf_counter()
                forward_fn(compiled, b["precision"])(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["compile_seconds"] = round(time.perf_counter() - t0, 1)
                r = cell(height, b["precision"], b["channels_last"], b["batch"], model=compiled)
                if r is not None:
                    row.update({k: v for k, v in r.items() if k not in row})
                    if "frames_per_s" in r:
                        row["speedup_vs_eager"] = round(r["frames_per_s"] / b["frames_per_s"], 3)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            rec["compile"].append(row)
            rec.save()
            models.clear()
    sampler.stop()


def end_to_end(torch, base, preprocess, device, height: int, best: dict, args, deadline: float, sampler) -> dict:
    import torch.nn.functional as F

    row = {"height": height, "precision": best["precision"], "channels_last": best["channels_last"], "batch": best["batch"],
           "source_hw": [1080, 1920] if not args.tiny else [height * 2, height * 4]}
    try:
        src = row["source_hw"]
        frames = torch.randint(0, 256, (best["batch"], *src, 3), dtype=torch.uint8)
        if device.type == "cuda":
            frames = frames.pin_memory()
        amp, dtype = PRECISIONS[best["precision"]]
        model = converted(torch, base, dtype, best["channels_last"])
        h = height
        w = round(src[1] * height / src[0])
        mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255

        @torch.inference_mode()
        def fn(batch):
            x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            x = preprocess.pad((x - mean) / std).to(getattr(torch, dtype))
            if best["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=getattr(torch, amp) if amp else None, enabled=amp is not None):
                logits = model(x)
            return logits[..., :h, :w].argmax(1).to(torch.uint8).cpu()

        t0 = time.monotonic()
        row.update(time_calls(torch, fn, frames, device, deadline, args.min_iters, args.min_seconds))
        row["frames_per_s"] = round(best["batch"] * 1000 / row["ms_per_call"], 2)
        row["nvidia_smi_util"] = sampler.mean(t0, time.monotonic())
        row["profiled"] = kernel_share(torch, fn, frames, device)
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    return row


# ---- phase: train --------------------------------------------------------------------------------
class TimedLoader:
    """A DataLoader whose time spent waiting for the next batch is summed in `wait`."""

    def __init__(self, loader):
        self.loader = loader
        self.wait = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            yield batch


class EpochSeeded:
    """`CropDataset` behind persistent DataLoader workers. A worker keeps the copy of the dataset it
    started with, so an epoch seed set in the main process (`set_epoch_seed`) would never reach it:
    here every index carries the seed (`SeededSampler` yields (seed, index) pairs)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.seed = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        seed, index = item
        if self.dataset.seed != seed:
            self.dataset.set_epoch_seed(seed)
        return self.dataset[index]


class SeededSampler:
    """A random order of the dataset's indices for the current epoch seed, as (seed, index) pairs."""

    def __init__(self, seeded: EpochSeeded):
        self.seeded = seeded

    def __len__(self) -> int:
        return len(self.seeded)

    def __iter__(self):
        import torch

        g = torch.Generator().manual_seed(self.seeded.seed)
        return iter([(self.seeded.seed, int(i)) for i in torch.randperm(len(self.seeded), generator=g)])


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # one OpenCV thread per DataLoader worker (no oversubscription)


class _Fixed:
    """A schedule that never changes the lr (the throughput probe's)."""

    lr = 0.0

    def step(self) -> None:
        pass


def phase_train(args, rec: Record, deadline: float) -> None:
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(HERE))
    from augment import SimpleAugment
    from pack import Pack

    from playerseg.config import load
    from playerseg.data.sample import BOX
    from playerseg.models.registry import normalisation
    from playerseg.models.segmenter import Segmenter, model_meta
    from playerseg.optim import build_optimizer, build_scheduler
    from playerseg.train.config import TrainConfig
    from playerseg.train.export import export_model
    from playerseg.train.loop import seed_everything
    from playerseg.train.unet import build_training, preprocess_of, train_one_epoch, validate, write_model_dir

    device = pick_device(torch, args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    rec["env"] = env_info(torch, device)
    t_start = time.monotonic()
    pack = Pack(args.pack)
    crop = [int(v) for v in args.crop.lower().split("x")]
    # encoder_weights '' skips the ImageNet initialisation that run.init_weights overwrites; the input
    # normalisation those weights imply (model.mean / std) is kept explicitly
    mean, std = normalisation(load(TrainConfig, args.config, args.overrides).model)
    overrides = [f"run.init_weights={args.init}", "model.encoder_weights=''", f"model.mean={list(mean)}",
                 f"model.std={list(std)}", f"input.crop={crop}", f"run.batch_size={args.batch_size}",
                 f"input.target_height={pack.index['preprocess']['target_height']}", *args.overrides]
    cfg = load(TrainConfig, args.config, overrides)
    if json.loads(json.dumps(dataclasses.asdict(preprocess_of(cfg)))) != pack.index["preprocess"]:
        raise ValueError(f"the pack was made with preprocessing {pack.index['preprocess']}, this config "
                         f"has {dataclasses.asdict(preprocess_of(cfg))}: rebuild the pack (pack.py) for it")
    box_sources = sorted({e["source"] for e in pack.entries if BOX in e["labels"].values()})
    have_scipy = importable("scipy")
    dropped = [] if have_scipy else box_sources
    if dropped:
        cfg.val.score_keys = [k for k in cfg.val.score_keys if k.split("/")[0] not in dropped]
    augment = SimpleAugment(cfg.augment, tuple(crop))
    rec["config"] = {"file": str(args.config), "overrides": overrides, "crop": crop, "batch_size": cfg.run.batch_size,
                     "epochs_planned": cfg.run.epochs, "amp": cfg.run.amp and device.type == "cuda",
                     "pack": {k: pack.index[k] for k in ("counts", "quality", "preprocess", "max_per_split")}}
    rec["differences_from_ray_training"] = {
        "augment_not_applied": augment.skipped(),
        "augment": "benchmarks/gpu/augment.py SimpleAugment: zoom (resize), pad + random crop, hflip, rgb shift, "
                   "brightness/contrast; frames come from the pack at model resolution (JPEG q%d)" % pack.index["quality"],
        "encoder_weights": "'' (run.init_weights replaces every weight; the Lite0 ImageNet wheel is not carried)",
        "epochs": "samples per epoch sized so that run.epochs fit the phase's time (cosine schedule over them)",
        "validation_skipped_sources": dropped,
        "validation_skipped_why": "" if not dropped else "scipy (infer.postprocess) is not importable here; "
                                  "`playerseg evaluate --checkpoint <out>/train/model --data-from configs/unet_broadcast_v2.yaml` gives them",
        "process": "one process, no Ray / DDP; DataLoader workers %d" % args.loader_workers}
    rec.save()

    seed_everything(cfg.run.seed)
    classes, preprocess, model, loss_fn, train_set, val_store, failures = build_training(
        cfg, device, read=pack.read, transform=augment)
    for name in dropped:
        val_store.keys = [k for k in val_store.keys if k[0] != name]
        val_store.readers.pop(name, None)
    amp = cfg.run.amp and device.type == "cuda"
    rec["load_seconds"] = round(time.monotonic() - t_start, 1)
    rec["frames"] = {"train": len(train_set.store), "val": len(val_store), "failures": len(failures)}
    rec.save()

    batch = cfg.run.batch_size
    seeded = EpochSeeded(train_set)
    loader = DataLoader(seeded, batch_size=batch, sampler=SeededSampler(seeded), drop_last=True,
                        num_workers=args.loader_workers, persistent_workers=args.loader_workers > 0,
                        worker_init_fn=_worker_init, pin_memory=device.type == "cuda")
    timed = TimedLoader(loader)
    # throughput probe (lr 0: the weights stay; BatchNorm statistics move a little), the second one timed
    train_set.length = batch * args.probe_steps
    probe_opt = torch.optim.SGD(model.parameters(), lr=0.0)
    probe_scaler = torch.amp.GradScaler(device.type, enabled=amp)
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        train_one_epoch(model, loader, loss_fn, probe_opt, _Fixed(), probe_scaler, preprocess, device, 1, amp)
        rates.append(batch * args.probe_steps / (time.perf_counter() - t0))
    seconds = max(0.0, min(deadline - args.reserve_s - time.monotonic(), args.train_s or math.inf))
    train_until = time.monotonic() + seconds
    epochs = cfg.run.epochs
    per_epoch = max(batch, int(rates[-1] * seconds / epochs) // batch * batch)
    train_set.length = per_epoch
    steps = per_epoch // batch
    rec["plan"] = {"probe_images_per_s": [round(r, 2) for r in rates], "train_seconds": round(seconds, 1),
                   "epochs": epochs, "samples_per_epoch": per_epoch, "steps_per_epoch": steps}
    rec["epochs"] = []
    rec.save()

    optimizer = build_optimizer(cfg.optim, model.parameters())
    sched = build_scheduler(cfg.sched, optimizer, steps, epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    sampler = GpuSampler() if device.type == "cuda" else None
    t_train = time.monotonic()
    epoch = -1
    for epoch in range(epochs):
        seeded.seed = cfg.run.seed * 1_000_003 + epoch * 1009
        seed_everything(seeded.seed)
        timed.wait = 0.0
        t0 = time.monotonic()
        m = train_one_epoch(model, timed, loss_fn, optimizer, sched, scaler, preprocess, device, 1, amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.monotonic()
        row = {"epoch": epoch, "lr": sched.lr, **{k.removeprefix("train/"): v for k, v in m.items()},
               "images_per_s": round(m["train/images"] / max(1e-9, t1 - t0), 2),
               "data_wait_share": round(timed.wait / max(1e-9, t1 - t0), 3)}
        if sampler is not None:
            row["nvidia_smi_util"] = sampler.mean(t0, t1)
        rec["epochs"].append(_clean(row))
        rec.save()
        if t1 + (t1 - t0) > train_until:  # the next epoch would pass the plan
            break
    rec["trained"] = {"epochs": epoch + 1, "of": epochs, "seconds": round(time.monotonic() - t_train, 1),
                      "images": sum(e["images"] for e in rec["epochs"])}
    if device.type == "cuda":
        rec["trained"]["peak_mem_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    if sampler is not None:
        sampler.stop()
    rec.save()

    t0 = time.monotonic()
    val, _ = validate(model, val_store, classes, cfg, preprocess, device, overlays=0)
    rec["val"] = _clean(val)
    rec["val_score_keys"] = cfg.val.score_keys
    rec["val_seconds"] = round(time.monotonic() - t0, 1)
    rec.save()

    out = Path(args.out) / "train"
    meta = model_meta(cfg.model, classes, preprocess, cfg.val.tta_scales, epoch=epoch,
                      metrics={f"val/{k}": v for k, v in rec["val"].items()},
                      data={"pack": rec["config"]["pack"], "sources": [dataclasses.asdict(s) for s in cfg.data.sources]},
                      trained_by="benchmarks/gpu/run.py", gpu=rec["env"].get("gpu", str(device)),
                      differences_from_ray_training=rec["differences_from_ray_training"])
    write_model_dir(out / "checkpoint", model.state_dict(), meta)
    files = export_model(str(out / "checkpoint"), str(out / "model"), formats=("safetensors",), half=True)
    import shutil

    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    # the folder loads with the one loader and predicts what the trained model predicts
    loaded = Segmenter.load(str(out / "model"), device="cpu", runtime="torch")  # fp32, no autocast
    sample = val_store.get(val_store.keys[0]) if len(val_store) else train_set.store.get(train_set.store.keys[0])
    import copy

    rounded = copy.deepcopy(model).eval()  # the trained weights as the folder stores them (fp16)
    with torch.no_grad():
        for v in rounded.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    model.eval()
    want = {}
    with torch.inference_mode():
        x = torch.from_numpy(sample.image.copy()).permute(2, 0, 1)[None].to(device)
        x = preprocess.pad(preprocess.normalize(x))  # as Segmenter: normalise, then pad with 0
        for name, m in (("fp32", model), ("fp16", rounded)):
            want[name] = m(x).float().softmax(1)[0, :, : sample.height, : sample.width].cpu().numpy()
    got = loaded.predict_proba(sample.image[None])[0]
    rec["model_folder"] = {"path": str(out / "model"), "files": files, "classes": list(loaded.classes.names),
                           "loaded_with": "Segmenter.load(device='cpu', runtime='torch')",
                           "max_proba_diff_vs_trained_fp16_weights": round(float(abs(got - want["fp16"]).max()), 6),
                           "max_proba_diff_vs_trained_fp32_weights": round(float(abs(got - want["fp32"]).max()), 6)}
    rec.save()


# ---- the parent: setup, phases, summary ------------------------------------------------------------
def setup(rec: dict) -> None:
    """Unpack each wheel of <bundle>/wheels whose module is not importable into <bundle>/_site."""
    wheels = sorted((HERE / "wheels").glob("*.whl")) if (HERE / "wheels").is_dir() else []
    rec["wheels"] = {}
    for wheel in wheels:
        prefix = wheel.name.split("-")[0].lower()
        module = WHEEL_MODULES.get(prefix, prefix)
        if importable(module):
            rec["wheels"][wheel.name] = "already importable"
            continue
        SITE.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(SITE)
        rec["wheels"][wheel.name] = "unpacked into _site"
    if SITE.is_dir() and str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
    importlib.invalidate_caches()
    need = ["torch", "timm", "cv2", "numpy", "safetensors", "segmentation_models_pytorch", "pycocotools", "yaml", "fsspec"]
    rec["missing"] = [m for m in need if not importable(m)]
    rec["optional_missing"] = [m for m in ("scipy",) if not importable(m)]


def run_phase(name: str, args, budget: float, grace: float, summary: Record) -> None:
    out_json = Path(args.out) / f"{name}.json"
    deadline_wall = time.time() + budget
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--deadline", f"{deadline_wall:.3f}",
           *args.passthrough]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")]))
    print(f"[{time.strftime('%H:%M:%S')}] {name}: up to {budget:.0f} s (+{grace:.0f} s grace)", flush=True)
    t0 = time.monotonic()
    status = {"budget_s": budget}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # its own process group
    try:
        status["exit"] = proc.wait(timeout=budget + grace)
        status["status"] = "ok" if status["exit"] == 0 else "failed"
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)  # with its DataLoader workers and nvidia-smi sampler
        proc.wait()
        status["status"] = "killed at the phase's time limit"
    status["seconds"] = round(time.monotonic() - t0, 1)
    figures = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if figures.get("error"):
        status["error"] = figures["error"]
    summary["phases"][name] = status
    summary[name] = figures
    summary.save()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {status['status']} in {status['seconds']} s"
          + (f" ({status['error'].splitlines()[-1]})" if status.get("error") else ""), flush=True)


def child(args) -> int:
    """One phase in this process: its figures and any error go to <out>/<phase>.json."""
    deadline = time.monotonic() + (args.deadline - time.time())
    rec = Record(Path(args.out) / f"{args.phase}.json", phase=args.phase)
    try:
        {"infer": phase_infer, "train": phase_train}[args.phase](args, rec, deadline)
        return 0
    except Exception:  # noqa: BLE001 (whatever it is, what was measured so far stays, with the traceback)
        rec["error"] = traceback.format_exc(limit=8)
        print(rec["error"], file=sys.stderr)
        return 1
    finally:
        rec["absent_there_but_imported"] = absent_there_imported()
        rec["finished_s_before_deadline"] = round(deadline - time.monotonic(), 1)
        rec.save()


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the JSON figures and the trained model ($OUT on the device)")
    p.add_argument("--phases", default="infer,train", help="comma-separated: infer, train")
    p.add_argument("--tiny", action="store_true", help="the CPU dry run: tiny inputs, batches and budgets")
    p.add_argument("--device", default="auto", help="auto (cuda when there), cuda or cpu")
    p.add_argument("--threads", type=int, default=-1, help="torch CPU threads (default: torch's; tiny 1)")
    p.add_argument("--budget-s", type=float, default=0, help="total seconds (default: 480; tiny 90); phases scaled to it")
    p.add_argument("--model", default=str(ROOT / "models" / "unet_effl0_broadcast_v2"), help="model of the infer phase")
    p.add_argument("--init", default=str(ROOT / "models" / "unet_effl0_broadcast"), help="run.init_weights of the train phase")
    p.add_argument("--config", default=str(ROOT / "configs" / "unet_broadcast_v2.yaml"), help="training config")
    p.add_argument("--pack", default=str(HERE / "pack.zip"), help="training pack (pack.py)")
    p.add_argument("--heights", default="", help="input heights of the infer phase (default 720,1080; tiny 64)")
    p.add_argument("--batches", default="", help="batch sizes (default 1,4,8,16,32; tiny 1,2)")
    p.add_argument("--precisions", default="fp32,amp_bf16,amp_fp16,bf16,fp16", help=f"of {list(PRECISIONS)}")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="torch.compile (auto: on CUDA)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode")
    p.add_argument("--min-iters", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=-1)
    p.add_argument("--crop", default="", help="training crop HxW (default 704x1280: a whole 720p frame; tiny 64x64)")
    p.add_argument("--batch-size", type=int, default=0, help="training batch (default 16; tiny 2)")
    p.add_argument("--loader-workers", type=int, default=-1, help="DataLoader workers (default: CPUs - 2, at most 12; tiny 0)")
    p.add_argument("--probe-steps", type=int, default=0, help="steps of each throughput probe (default 4; tiny 1)")
    p.add_argument("--train-s", type=float, default=-1, help="training seconds (default: what the plan leaves; tiny 3)")
    p.add_argument("--reserve-s", type=float, default=-1, help="seconds of the train phase kept for validation and export")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    tiny = args.tiny
    args.heights = [int(v) for v in (args.heights or ("64" if tiny else "720,1080")).split(",")]
    args.batches = [int(v) for v in (args.batches or ("1,2" if tiny else "1,4,8,16,32")).split(",")]
    args.precisions = [v for v in args.precisions.split(",") if v]
    if tiny and args.precisions == ["fp32", "amp_bf16", "amp_fp16", "bf16", "fp16"]:
        args.precisions = ["fp32", "amp_bf16"]
    args.min_iters = args.min_iters or (2 if tiny else 5)
    args.min_seconds = args.min_seconds if args.min_seconds >= 0 else (0.0 if tiny else 0.4)
    args.crop = args.crop or ("64x64" if tiny else "704x1280")
    args.batch_size = args.batch_size or (2 if tiny else 16)
    args.loader_workers = args.loader_workers if args.loader_workers >= 0 else (0 if tiny else max(0, min(12, (os.cpu_count() or 2) - 2)))
    args.probe_steps = args.probe_steps or (1 if tiny else 4)
    args.train_s = args.train_s if args.train_s >= 0 else (3 if tiny else 0)
    args.reserve_s = args.reserve_s if args.reserve_s >= 0 else (8 if tiny else 60)
    args.budget_s = args.budget_s or (90 if tiny else 480)
    args.threads = args.threads if args.threads >= 0 else (1 if tiny else 0)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.phase:
        import torch

        if args.threads:  # a busy 2-core machine: 2 threads that wait for each other are ~10x slower than 1
            torch.set_num_threads(args.threads)
        args.compile = args.compile == "on" or (args.compile == "auto" and pick_device(torch, args.device).type == "cuda")
        return child(args)
    t0 = time.monotonic()
    plan = dict(PLANS["tiny" if args.tiny else "gpu"])
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - {"infer", "train"})
    if unknown:
        raise SystemExit(f"unknown phase(s) {unknown}; phases are infer, train")
    whole = plan["setup"] + sum(plan[p] + plan["grace"] for p in phases)
    plan = {k: round(v * args.budget_s / whole, 1) for k, v in plan.items()}  # the plan fills --budget-s
    summary = Record(Path(args.out) / "summary.json", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     command=" ".join([Path(sys.executable).name, *sys.argv]), plan_s=plan, phases={},
                     bundle=str(HERE), in_bundle=IN_BUNDLE)
    print("time plan (s): " + ", ".join(f"{k} {v:g}" for k, v in plan.items())
          + f"; at most {sum(plan[p] + plan['grace'] for p in phases) + plan['setup']:g} s in all", flush=True)
    setup_rec: dict = {}
    try:
        setup(setup_rec)
    except Exception:  # noqa: BLE001
        setup_rec["error"] = traceback.format_exc(limit=4)
    summary["setup"] = setup_rec
    summary.save()
    print(f"setup: {setup_rec}", flush=True)
    for name in phases:
        run_phase(name, args, plan[name], plan["grace"], summary)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary.save()
    print(f"done in {summary['seconds']} s; figures in {Path(args.out).resolve()}/summary.json", flush=True)
    return 0 if all(s.get("status") == "ok" for s in summary["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
