"""`playerseg infer`: one streaming Ray Data dataset from match archives to prediction Parquet.

    units (video segments / frame runs / Parquet row groups; finished ones skipped)
      -> decode + resize to model resolution      tasks, `decode_cpus` each
      -> model                                    actor pool: `actors` x (`cpus_per_actor`,
                                                  `gpus_per_actor`), threads = its CPUs,
                                                  `batch_size` frames a call; `runtime` auto:
                                                  ONNX Runtime on CPU actors, torch + autocast
                                                  + channels_last beside a GPU
      -> post-processing (+ SAM refinement)       inside the model actor on CPU; tasks
                                                  (`postprocess_cpus`) beside GPU actors; an actor
                                                  pool when SAM refines (SAM loaded once)
      -> driver: part file per unit + done marker (`writer.UnitWriter`)

Frames are resized by the model's own `Preprocess` (scale, interpolation) in the decode task, so
full-size frames never travel; the model then runs at scale 1 on them, probabilities stay at model
resolution (float16 between model and post-processing, wherever that runs),
post-processing runs there and instance masks are mapped back to the source size for RLE.
Resources are parameters: the same job runs on a laptop (2 CPUs) and on a GPU cluster.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa

from playerseg.classes import TaskClasses
from playerseg.config import at_least
from playerseg.infer.postprocess import PostprocessConfig, class_fractions, instance_records, postprocess
from playerseg.ledger import Ledger
from playerseg.video.schema import INSTANCE_TYPE
from playerseg.video.frames import Unit, plan_units, read_unit
from playerseg.infer.writer import OUTPUTS, UnitWriter
from playerseg.models.preprocess import Preprocess
from playerseg.players.tracks import TrackConfig
from playerseg.progress import Progress

log = logging.getLogger(__name__)


# glibc malloc in the workers: keep freed memory for the next batch instead of returning it to the OS
# (blocks up to 32 MiB, glibc's ceiling, from the heap; the heap trimmed only past 1 GiB free; one arena,
# so the threads a Ray worker runs batches on share that heap). With glibc's defaults every model call
# maps and faults in its activations afresh: in a Ray Data model actor (Lite0 Unet, 1 thread, 424x239
# frames) 124 -> 101 ms of CPU per frame, job 15.5 -> 18.5 frames/s on 2 CPUs (`benchmarks/bench_infer.py
# --repeat 6`); private memory stays flat (`benchmarks/bench_infer_memory.py`).
HEAP_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_ARENA_MAX": "1"}


@dataclass
class ResourcesConfig:
    actors: int = at_least(0, 0)  # model replicas; 0 = fill the cluster: GPUs / gpus_per_actor, else one per spare CPU
    cpus_per_actor: float = at_least(0.0, 0.0)  # 0 = 1 beside a GPU, else the spare CPUs shared by the actors; fractions ok
    gpus_per_actor: float = -1.0  # -1 = 1 when the cluster has GPUs, else 0; fractional allowed
    torch_threads: int = at_least(0, 0)  # 0 = round(cpus_per_actor), at least 1 (never more threads than cores); ONNX Runtime's too
    runtime: str = "auto"  # auto (ONNX Runtime on CPU actors, torch + autocast on GPU) | torch | onnxruntime
    batch_size: int = at_least(1, 4)  # frames per model call
    decode_cpus: float = at_least(0.0, 0.25, above=True)
    decode_threads: int = at_least(1, 1)  # codec threads per decode task
    postprocess_cpus: float = at_least(0.0, 0.25)
    postprocess_in_actor: bool | None = None  # None = inside CPU actors, as tasks beside GPU actors
    worker_env: dict[str, str] = field(default_factory=lambda: dict(HEAP_ENV))  # env of every stage's workers


@dataclass
class SamRefineConfig:  # SAM refinement of inference instances (not `sam.train.SamConfig`)
    checkpoint: str = ""  # SAM weights (path or URI); "" = no SAM refinement
    model_type: str = "vit_b"
    classes: list[str] = field(default_factory=lambda: ["player"])  # instances refined by SAM
    num_gpus: float = 0.0
    cpus: float = 0.5


@dataclass
class InferConfig:
    model: str = ""  # model / checkpoint / run folder written by training (local path or URI)
    inputs: list[str] = field(default_factory=list)  # videos, folders, frame folders, Parquet files
    output: str = "outputs/infer"
    segment_seconds: float = at_least(0.0, 10.0, above=True)  # unit of work, resume and output part files
    segment_frames: int = at_least(0, 0)  # > 0 overrides segment_seconds
    every: int = at_least(1, 1)  # keep every Nth frame
    fps: float | None = at_least(0.0, None, above=True)  # keep at most this many frames per second
    start: float | None = at_least(0.0, None)  # videos: frames from this time on (seconds)
    end: float | None = None  # videos: frames before this time (seconds), e.g. a quick look at the first 5 s
    tta: bool = False  # test-time augmentation (flip + scales) inside the model
    target_height: int = at_least(-1, -1)  # model input height; -1 = the model's own policy (model.json), 0 = its scale
    image_id: str = "{video_id}/{frame_index}"  # COCO results image_id template
    device: str = ""  # "" = cuda when the actor has a GPU, else cpu
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sam: SamRefineConfig = field(default_factory=SamRefineConfig)
    tracking: TrackConfig = field(default_factory=TrackConfig)  # track_id / shot_id after the model pass


# ---- stages -------------------------------------------------------------------------------
def decode_unit(row: dict, preprocess: dict, threads: int = 1) -> Iterator[dict]:
    """A unit's frames resized by the model's `Preprocess` (its resolution policy, torch-free); a
    failure yields one error row naming the problem."""
    unit, pre = Unit.from_json(row["unit"]), Preprocess.from_dict(preprocess)
    base = {"unit": unit.key, "video_id": unit.group, "frame_index": -1, "pts_seconds": 0.0,
            "width": 0, "height": 0, "error": ""}
    try:
        for f in read_unit(unit, threads):
            if f.error:  # one bad frame: reported by the driver, the unit's other frames go on
                yield {**base, "video_id": f.video_id, "frame_index": f.frame_index, "pts_seconds": f.pts_seconds,
                       "image": np.zeros((1, 1, 3), np.uint8), "error": f.error}
                continue
            h, w = f.image.shape[:2]
            yield {**base, "video_id": f.video_id, "frame_index": f.frame_index, "pts_seconds": f.pts_seconds,
                   "width": w, "height": h, "image": pre.resize(f.image)}
    except Exception as e:  # a bad input is reported by the driver, never kills the job
        log.error("unit %s failed: %s", unit.key, e)
        yield {**base, "image": np.zeros((1, 1, 3), np.uint8), "error": f"{type(e).__name__}: {e}"}


def _rows(batch: dict) -> list[dict]:
    n = len(batch["unit"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def _columns(rows: list[dict]) -> dict:
    out = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    return {k: np.array(v) if k not in ("proba", "image") else v for k, v in out.items()}


META = ("unit", "video_id", "frame_index", "pts_seconds", "width", "height", "error")

# A post-processed frame as it streams to the driver: its instances a list of prediction records
# (`video.schema.INSTANCE_TYPE`), class fractions as JSON (their names are the model's).
RESULT_SCHEMA = pa.schema([
    pa.field("unit", pa.string()), pa.field("video_id", pa.string()), pa.field("frame_index", pa.int64()),
    pa.field("pts_seconds", pa.float64()), pa.field("width", pa.int32()), pa.field("height", pa.int32()),
    pa.field("error", pa.string()), pa.field("instances", pa.list_(INSTANCE_TYPE)),
    pa.field("num_instances", pa.int32()), pa.field("fractions", pa.string()),
])


def frame_result(row: dict, proba: np.ndarray, classes: TaskClasses, cfg: PostprocessConfig,
                 refiner=None) -> dict:
    """Post-process one frame's probabilities into its output row (`RESULT_SCHEMA`); the row's frame,
    where it travels with the row, lets post-processing check that players stand on the pitch."""
    image = np.asarray(row["image"]) if row.get("image") is not None else None
    instances, semantic = postprocess(proba.astype(np.float32), classes, cfg, image)
    if refiner is not None and image is not None:
        instances = refiner(image, instances)
    records = instance_records(instances, (int(row["height"]), int(row["width"])), classes)
    return {**{k: row[k] for k in META}, "instances": records, "num_instances": len(records),
            "fractions": json.dumps(class_fractions(semantic, classes))}


def _results(rows: list[dict], classes: TaskClasses, cfg: PostprocessConfig, refiner=None) -> pa.Table:
    """The output rows (`RESULT_SCHEMA`) of rows carrying their `proba`; a failed frame's row is empty."""
    return pa.Table.from_pylist([
        frame_result(r, np.asarray(r["proba"]), classes, cfg, refiner) if not r["error"]
        else {**{k: r[k] for k in META}, "instances": [], "num_instances": 0, "fractions": "{}"}
        for r in rows], schema=RESULT_SCHEMA)


class Predictor:
    """The model in an actor: probabilities of a batch of frames (grouped by size), optionally
    post-processed right here (`postprocess` set)."""

    def __init__(self, model: str, threads: int, tta: bool = False, device: str = "",
                 postprocess_cfg: dict | None = None, keep_image: bool = False, runtime: str = "auto"):
        import torch

        from playerseg.models.segmenter import Segmenter

        torch.set_num_threads(max(1, threads))
        self.segmenter = Segmenter.load(model, device or None, runtime=runtime, threads=max(1, threads),
                                        model_resolution=True)
        self.classes = self.segmenter.classes
        self.tta = tta
        self.keep_image = keep_image  # SAM refinement downstream needs the frame
        self.post = dataclasses.replace(PostprocessConfig(), **postprocess_cfg) if postprocess_cfg is not None else None

    def __call__(self, batch: dict) -> dict:
        rows = _rows(batch)
        by_shape: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            if not r["error"]:
                by_shape.setdefault(np.asarray(r["image"]).shape, []).append(i)
        for idx in by_shape.values():
            self.segmenter.batch_size = len(idx)
            out = self.segmenter.predict_proba(np.stack([rows[i]["image"] for i in idx]), tta=self.tta)
            for i, p in zip(idx, out):  # float16 here too when post-processed here: the same results
                rows[i]["proba"] = p.astype(np.float16)
        if self.post is not None:
            return _results(rows, self.classes, self.post)
        blank = np.zeros((len(self.classes), 1, 1), np.float16)
        return _columns([{**{k: r[k] for k in META}, "proba": r.get("proba", blank),
                          **({"image": r["image"]} if self.keep_image else {})} for r in rows])


def postprocess_batch(batch: dict, class_names: list[str], cfg: dict) -> pa.Table:
    """Post-processing stage as a task: probabilities -> output rows."""
    return _results(_rows(batch), TaskClasses(tuple(class_names)), dataclasses.replace(PostprocessConfig(), **cfg))


class SamPostprocessor:
    """Post-processing with SAM refinement, as an actor (the SAM model is loaded once)."""

    def __init__(self, class_names: list[str], cfg: dict, sam: dict):
        from playerseg.infer.refine import SamInstanceRefiner

        self.classes = TaskClasses(tuple(class_names))
        self.post = dataclasses.replace(PostprocessConfig(), **cfg)
        self.refiner = SamInstanceRefiner(SamRefineConfig(**sam), self.classes)

    def __call__(self, batch: dict) -> pa.Table:  # frame_result takes each frame from its row
        return _results(_rows(batch), self.classes, self.post, self.refiner)


# ---- the model on the driver -------------------------------------------------------------
def model_info(model: str, target_height: int = -1) -> tuple[TaskClasses, dict]:
    """(classes, preprocessing as a dict) of a model, read on the driver (CPU); `target_height` >= 0
    replaces the model's resolution policy (0: its `scale` factor). Loaded once per content of the
    weights (`infer_cmd` checks the model before Ray starts; the job asks again)."""
    from playerseg.models.segmenter import weights_sha256

    classes, pre = _model_info(model, target_height, weights_sha256(model))
    return classes, dict(pre)


@functools.lru_cache(maxsize=4)
def _model_info(model: str, target_height: int, sha256: str) -> tuple[TaskClasses, dict]:
    from playerseg.models.segmenter import Segmenter

    seg = Segmenter.load(model, "cpu")
    pre = seg.preprocess if target_height < 0 else dataclasses.replace(seg.preprocess, target_height=target_height)
    return seg.classes, dataclasses.asdict(pre)


# ---- the job ----------------------------------------------------------------------------------
def actor_resources(r: ResourcesConfig, cluster: dict, post_cpus: float) -> dict:
    """How many model actors, and what each takes: explicit values win, else fill the cluster.

    On CPUs the default is one single-threaded actor per spare CPU (the CPUs left after one decode
    task and one post-processing task): intra-op threads cost more CPU per frame than separate
    replicas, and threads beyond an actor's CPUs oversubscribe the cores (the first version's 0.42x).
    A plan that leaves no CPU for decoding would stall the stream, so it is refused here.
    """
    gpus = r.gpus_per_actor if r.gpus_per_actor >= 0 else (1.0 if cluster.get("GPU", 0) else 0.0)
    cpus = cluster.get("CPU", 1)
    spare = cpus - r.decode_cpus - post_cpus
    if r.actors > 0:
        n = r.actors
    elif gpus > 0:
        n = max(1, int(cluster.get("GPU", 0) / gpus))
    elif r.cpus_per_actor > 0:
        n = max(1, int(spare // r.cpus_per_actor))
    else:  # one single-threaded actor per spare CPU
        n = max(1, round(spare))
    per_actor = r.cpus_per_actor or (1.0 if gpus > 0 else max(0.05, math.floor(spare / n * 1000) / 1000))
    need = n * per_actor + r.decode_cpus + post_cpus
    if need > cpus + 1e-6:
        raise ValueError(f"{n} model actor(s) x {per_actor} CPU + decode {r.decode_cpus} + post-processing "
                         f"{post_cpus} = {need} CPUs, more than the cluster's {cpus}: lower resources.actors "
                         "or resources.cpus_per_actor (fractions are fine)")
    threads = r.torch_threads or max(1, int(round(per_actor)))
    return {"actors": n, "num_cpus": per_actor, "num_gpus": gpus, "threads": threads}


def post_in_actor(r: ResourcesConfig, cluster: dict) -> bool:
    """Post-process inside the model actor? Default: yes on CPU (no probability maps to ship to
    another process), no beside a GPU (the GPU would wait for CPU work)."""
    if r.postprocess_in_actor is not None:
        return r.postprocess_in_actor
    return not (r.gpus_per_actor > 0 or (r.gpus_per_actor < 0 and cluster.get("GPU", 0)))


def build_dataset(units: list[Unit], cfg: InferConfig, classes: TaskClasses, preprocess: dict, cluster: dict):
    """The streaming dataset of output rows (one per frame) for `units`."""
    import ray

    r = cfg.resources
    post_cfg = dataclasses.asdict(cfg.postprocess)
    sam = bool(cfg.sam.checkpoint)
    in_actor = post_in_actor(r, cluster) and not sam
    res = actor_resources(r, cluster, 0.0 if in_actor else cfg.sam.cpus if sam else r.postprocess_cpus)
    env = {"runtime_env": {"env_vars": dict(r.worker_env)}} if r.worker_env else {}
    ds = ray.data.from_items([{"unit": u.to_json()} for u in units], override_num_blocks=max(1, len(units)))
    ds = ds.flat_map(decode_unit, fn_kwargs={"preprocess": preprocess, "threads": r.decode_threads}, num_cpus=r.decode_cpus,
                     **env)
    ds = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={"model": cfg.model, "threads": res["threads"], "tta": cfg.tta,
                               "device": cfg.device, "postprocess_cfg": post_cfg if in_actor else None,
                               # the frame travels on to a separate post-processing stage when it is
                               # needed there (SAM refinement, the on-pitch test)
                               "keep_image": sam or cfg.postprocess.on_pitch > 0, "runtime": r.runtime},
        batch_size=r.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=res["actors"]),
        num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], **env,
    )
    if in_actor:
        return ds, res
    if sam:
        return ds.map_batches(
            SamPostprocessor, fn_constructor_kwargs={"class_names": list(classes.names), "cfg": post_cfg,
                                                     "sam": dataclasses.asdict(cfg.sam)},
            batch_size=r.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=cfg.sam.cpus, num_gpus=cfg.sam.num_gpus, **env), res
    ds = ds.map_batches(postprocess_batch, fn_kwargs={"class_names": list(classes.names), "cfg": post_cfg},
                        batch_size=r.batch_size, batch_format="numpy", num_cpus=r.postprocess_cpus, **env)
    return ds, res


def run_signature(cfg: InferConfig) -> dict:
    """What the outputs depend on (a re-run with other values must not mix into them): the options,
    and the model's and SAM's weights by content (`models.segmenter.weights_sha256`), so weights
    replaced in place are a different run."""
    from playerseg.models.segmenter import weights_sha256

    window = {"start": cfg.start, "end": cfg.end} if cfg.start is not None or cfg.end is not None else {}
    sam = dataclasses.asdict(cfg.sam) if cfg.sam.checkpoint else None
    if sam and cfg.sam.checkpoint != "untrained":
        sam["sha256"] = weights_sha256(cfg.sam.checkpoint)
    return json.loads(json.dumps({"model": cfg.model, "model_sha256": weights_sha256(cfg.model), "tta": cfg.tta,
                                  "every": cfg.every, "fps": cfg.fps, "target_height": cfg.target_height,
                                  **window, "postprocess": dataclasses.asdict(cfg.postprocess), "sam": sam}))


def run_inference(cfg: InferConfig, overwrite: bool = False) -> dict:
    """Run the job on the connected Ray cluster; returns the summary (also `<output>/summary.json`)."""
    import ray

    if not cfg.inputs:
        raise ValueError("no inputs: give videos, folders, frame folders or Parquet files")
    start = time.time()
    classes, preprocess = model_info(cfg.model, cfg.target_height)
    with Ledger(cfg.output, run_signature(cfg), overwrite, OUTPUTS) as ledger:
        units, failures = plan_units(cfg.inputs, cfg.segment_seconds, cfg.segment_frames, cfg.every, cfg.fps,
                                     probe_cache=ledger.path("_probe"), start_seconds=cfg.start, end_seconds=cfg.end)
        todo = ledger.pending(units)
        log.info("%d units planned, %d already done, %d to run", len(units), len(units) - len(todo), len(todo))
        writer = UnitWriter(ledger, {u.key: u for u in todo}, classes.names, failures)
        res = None
        if todo:
            ds, res = build_dataset(todo, cfg, classes, preprocess, ray.cluster_resources())
            log.info("model actors: %s", res)
            try:
                with Progress("infer", total=sum(u.num_frames for u in todo), unit="frame") as bar:
                    for row in ds.iter_rows():
                        writer.add(row)
                        bar.update(1)
            except Exception as e:  # the dataset died (e.g. the cluster went away): finished units stay
                failures.add("dataset", e)
            writer.finish()
        tracking = None
        if cfg.tracking.enabled:  # its own resumable pass over every written unit (players.track_job)
            from playerseg.players.track_job import track_outputs

            tracking = track_outputs(ledger, units, cfg.tracking)
            for what, error in tracking["failures"]:
                failures.items.append((what, error))
        return _finish(cfg, classes, units, todo, writer, failures, res, start, tracking)


def _finish(cfg: InferConfig, classes: TaskClasses, units: list[Unit], todo: list[Unit], writer: UnitWriter,
            failures, res, start: float, tracking: dict | None = None) -> dict:
    """COCO results and the summary of a run (`<output>/summary.json`)."""
    from playerseg.infer.coco_export import export_coco
    from playerseg.io import exists, write_json_atomic

    wall = time.time() - start
    out = cfg.output
    predictions = f"{out}/predictions"
    n_results = export_coco(predictions, f"{out}/coco_results.json", classes, cfg.image_id) \
        if exists(predictions) else 0
    summary = {
        "output": out, "predictions": predictions, "frames": f"{out}/frames",
        "coco_results": f"{out}/coco_results.json" if n_results else None,
        "units": len(units), "units_skipped": len(units) - len(todo), "units_written": len(writer.written),
        "units_failed": sorted(writer.failed), "frames_written": writer.frames,
        "instances_written": writer.instances, "coco_detections": n_results,
        "wall_seconds": round(wall, 2), "frames_per_second": round(writer.frames / wall, 3) if wall else None,
        "resources": res, "tracking": tracking, "failures": failures.as_json(),
    }
    write_json_atomic(f"{out}/summary.json", summary)
    return summary
