"""`playerseg evaluate`: a checkpoint on a dataset split -> metrics, a Markdown report and a gallery
of the worst frames.

Writes to `--out`:
    report.md          per-class IoU / Dice / boundary F, players-over-LED IoU, instance AP, worst frames
    metrics.json       the same numbers (NaN -> null), the config, per-image metrics, skipped inputs
    worst_frames.png   image | prediction | truth | error map for the `--worst` lowest-ranked frames
    detections.json    COCO results of the predicted instances (connected components per class)

Semantic metrics are those of `playerseg.metrics.semantic.SegmentationMeter`; instance AP comes
from the connected components of each predicted class (`semantic_to_detections`) against the
reader's instances (mask AP where every instance has a mask, box AP always), each component
scored by its mean class probability (`Segmenter.predict_proba`). Frames are ranked by
`rank_by` (default players-over-LED IoU, falling back to player IoU where a frame has no board),
lowest first: the frames where players merge with the boards. `--out` is an output folder of
`playerseg.ledger`: `_run.json` records the config and the checkpoint's weights by sha256, and
`metrics.json`, written last with the config, is the run's done marker. A re-run with the same
config and weights finds it and skips the work; another config or other weights into the same
folder are refused in one line naming what differs (exit status 2), `--overwrite` redoes it. Bad
samples are skipped and listed in the report.
"""
from __future__ import annotations

import dataclasses
import heapq
import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from playerseg import config as config_lib
from playerseg.classes import TaskClasses
from playerseg.data.errors import Failures
from playerseg.data.reader import Subset, join
from playerseg.data.registry import DataConfig
from playerseg.data.sample import Sample
from playerseg.infer.postprocess import PostprocessConfig
from playerseg.ledger import Ledger
from playerseg.metrics.instance import InstanceMeter, semantic_to_detections
from playerseg.metrics.semantic import SegmentationMeter

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "all")
OUTPUTS = ("report.md", "metrics.json", "detections.json", "worst_frames*.png")  # what --overwrite removes


@dataclass
class EvaluateConfig:
    checkpoint: str = ""  # path (or fsspec URI) that Segmenter.load reads
    data: DataConfig = field(default_factory=DataConfig)  # `classes` is taken from the checkpoint
    # a training config YAML whose `data` section (its sources and splits) replaces `data`: evaluate
    # on exactly the validation split the model was trained beside
    data_from: str = ""
    split: str = "val"  # train | val | all
    out: str = "runs/evaluate"
    tta: bool = False  # test-time augmentation in Segmenter.predict
    batch_size: int = 4
    device: str = ""  # "" = cuda if available, else cpu
    runtime: str = "auto"  # auto (ONNX Runtime on CPU, torch + autocast on CUDA) | torch | onnxruntime
    max_samples: int = 0  # 0 = the whole split
    worst: int = 8  # frames in the gallery
    rank_by: str = "players_over_led_iou"  # per-image metric key; lowest first
    led_radius: float = 15.0  # players-over-LED region radius, px at `reference_height`
    boundary_tol: float = 2.0  # boundary F tolerance, px at `reference_height`
    reference_height: int = 1080
    min_instance_area: int = 16  # px; smaller predicted components are not instances
    tile_width: int = 480  # px per gallery tile
    target_height: int = -1  # model input height; -1 = the model's own policy (model.json), 0 = its scale
    # how instances are cut from the probabilities for the box metrics: the same section as
    # `playerseg infer`'s, so a figure here is the figure of an infer run with these settings
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    overwrite: bool = False


class Evaluation:
    """Streams (sample, prediction) pairs into the metrics; keeps only the worst frames' pictures."""

    def __init__(self, classes: TaskClasses, cfg: EvaluateConfig | None = None):
        self.classes = classes
        self.cfg = cfg = cfg or EvaluateConfig()
        self.semantic = SegmentationMeter(classes, cfg.led_radius, cfg.boundary_tol, cfg.reference_height)
        self.instances = InstanceMeter(classes)
        self.detections: list[dict] = []
        self.num_images = 0
        self._worst: list[tuple] = []  # heap of (-value, -order, id, row, panel): the highest value on top
        if cfg.rank_by not in self.semantic.keys():
            raise ValueError(f"rank_by {cfg.rank_by!r} is not a per-image metric; use one of {self.semantic.keys()}")

    def add(self, sample: Sample, pred: np.ndarray, proba: np.ndarray | None = None) -> None:
        """One frame: `pred` HxW class ids; `proba` (C x H x W) scores the instances when given."""
        sample.check_prediction(pred)
        row = self.semantic.update(pred, sample.semantic, ids=[sample.id])[0] if sample.semantic is not None else None
        self.num_images += 1  # counted once its labels were accepted
        if row is not None:
            self._rank(sample, pred, row)
        self.instances.add_ground_truth(sample)
        for cid in range(1, len(self.classes)):
            dets = semantic_to_detections(pred, cid, sample.id, self.cfg.min_instance_area,
                                          score_map=None if proba is None else proba[cid])
            self.instances.add_detections(dets)
            self.detections += dets

    def _rank(self, sample: Sample, pred: np.ndarray, row: dict) -> None:
        value = row[self.cfg.rank_by]
        if math.isnan(value):
            value = row.get("iou/player", math.nan)
        if math.isnan(value) or self.cfg.worst <= 0:
            return
        if len(self._worst) >= self.cfg.worst and -self._worst[0][0] <= value:
            return  # not worse than any kept frame: draw nothing
        from playerseg.viz import panel

        title = f"{sample.id}  {self.cfg.rank_by}={value:.3f}"
        picture = panel(sample.image, pred, sample.semantic, self.classes, title, self.cfg.tile_width)
        heapq.heappush(self._worst, (-value, -self.num_images, sample.id, row, picture))
        if len(self._worst) > self.cfg.worst:
            heapq.heappop(self._worst)

    def worst(self) -> list[tuple[str, float, dict, np.ndarray]]:
        """(id, rank value, per-image metrics, panel) of the worst frames, worst first."""
        return [(i, -v, row, pic) for v, _, i, row, pic in sorted(self._worst, key=lambda t: (-t[0], -t[1]))]

    def results(self, failures: Failures | None = None) -> dict:
        instance = {"bbox": self.instances.compute("bbox", per_class=True)}
        if self.instances.all_masks:
            instance = {"segm": self.instances.compute("segm", per_class=True), **instance}
        return {
            "classes": list(self.classes.names),
            "num_images": self.num_images,
            "num_semantic": len(self.semantic),
            "semantic": self.semantic.compute(),
            "semantic_image_mean": self.semantic.compute_image_mean(),
            "instance": instance,
            "worst": [{"id": i, "value": v, "metrics": row} for i, v, row, _ in self.worst()],
            "per_image": [dict(row, id=i) for i, row in zip(self.semantic.image_ids, self.semantic.per_image())],
            "failures": failures.as_json() if failures else [],
        }


def evaluate_pairs(pairs: Iterable[tuple], classes: TaskClasses, cfg: EvaluateConfig | None = None,
                   failures: Failures | None = None) -> tuple[dict, Evaluation]:
    """Metrics of (sample, HxW class-id prediction[, CxHxW probabilities]) tuples:
    (results dict, the Evaluation, which holds the worst frames' pictures and the detections)."""
    ev = Evaluation(classes, cfg)
    for sample, pred, *proba in pairs:
        ev.add(sample, np.asarray(pred), proba[0] if proba else None)
    return ev.results(failures), ev


# --------------------------------------------------------------------------- outputs


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


PARTIAL_METRICS = {  # what each per-source metric means, for the report
    "iou/": "IoU of the class where the source labels it per pixel",
    "recall/": "share of labelled boxes matched by a predicted instance (box IoU >= 0.5)",
    "precision/": "share of predicted instances that match a labelled box (box IoU >= 0.5)",
    "count_ratio/": "predicted instances per labelled box",
    "box_AP50": "COCO box AP at IoU 0.5 of the predicted instances (scored by mean probability)",
    "box_AP": "COCO box AP, IoU .50:.95",
    "player_over_board": "share of the board area hidden by someone in front of it that is predicted player",
}


def render_report(results: dict, classes: TaskClasses, cfg: EvaluateConfig, gallery: str | None) -> str:
    """report.md: one section per source (a single source: the sections at top level)."""
    head = [f"# Evaluation of `{cfg.checkpoint or '(predictions)'}`", ""]
    if "sources" not in results:
        return "\n".join(head + _full_section(results, classes, cfg, cfg.data, gallery, "##")) + "\n"
    head += [f"Split `{cfg.split}` of {len(results['sources'])} sources, each scored only on what it labels "
             f"(a class it does not label gets no number). Test-time augmentation: {'on' if cfg.tta else 'off'}.", ""]
    for src in cfg.data.source_list():
        res = results["sources"][src.name]
        head += [f"## Source `{src.name}`", ""]
        if "semantic" in res:
            head += _full_section(res, classes, cfg, src, res.get("gallery"), "###")
        else:
            head += _partial_section(res, src, cfg)
    return "\n".join(head) + "\n"


def _partial_section(res: dict, src, cfg: EvaluateConfig) -> list[str]:
    labels = ", ".join(f"`{n}` by {k}" for n, k in res["labels"].items() if n != "background") or "nothing"
    lines = [f"Split `{cfg.split}` of `{src.root}` (format `{src.format}`): {res['num_images']} frames, "
             f"{len(res['failures'])} skipped. It labels {labels}.", "", "| metric | value | meaning |",
             "| --- | ---: | --- |"]
    for key, value in res["metrics"].items():
        if key == "images":
            continue
        meaning = next((m for prefix, m in PARTIAL_METRICS.items() if key.startswith(prefix)), "")
        lines.append(f"| {key} | {_fmt(value)} | {meaning} |")
    if res.get("gallery"):
        lines += ["", f"![lowest-scoring frames]({res['gallery']})", "",
                  f"Lowest `{res['rank_by']}` first. Columns: image with the labelled boxes (white) | "
                  "prediction | what the source labels (unlabelled pixels shown bare).", ""]
    lines += ["", "Skipped inputs:", ""] + ([f"- {f['what']}: {f['error']}" for f in res["failures"]] or ["None."])
    return lines + [""]


def _full_section(results: dict, classes: TaskClasses, cfg: EvaluateConfig, src, gallery, h: str) -> list[str]:
    sem, mean = results["semantic"], results["semantic_image_mean"]
    lines = [
        f"Split `{cfg.split}` of `{src.root}` (format `{src.format}`): {results['num_images']} frames "
        f"evaluated ({results['num_semantic']} with semantic labels), {len(results['failures'])} skipped. "
        f"Test-time augmentation: {'on' if cfg.tta else 'off'}.",
        "",
        f"{h} Semantic segmentation",
        "",
        "Dataset-level values come from the confusion matrix summed over all frames; *per-frame mean* "
        "averages frames where the class appears in truth or prediction. Boundary F: tolerance "
        f"{cfg.boundary_tol:g} px at {cfg.reference_height}p.",
        "",
        "| class | IoU | Dice | boundary F | IoU (per-frame mean) | Dice (per-frame mean) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, n in enumerate(classes.names):
        bf = sem.get(f"boundary_f/{n}")
        lines.append(f"| {n} | {_fmt(sem[f'iou/{n}'])} | {_fmt(sem[f'dice/{n}'])} | {_fmt(bf) if i else ''} | "
                     f"{_fmt(mean[f'iou/{n}'])} | {_fmt(mean[f'dice/{n}'])} |")
    lines += [
        "",
        f"**mIoU** (non-background classes): {_fmt(sem['miou'])}  ",
        f"**Players over LED boards IoU** (player IoU within {cfg.led_radius:g} px at {cfg.reference_height}p "
        f"of a true board): {_fmt(sem['players_over_led_iou'])} (per-frame mean "
        f"{_fmt(mean['players_over_led_iou'])})",
        "",
        f"{h} Instances",
        "",
        f"Predicted instances are the connected components (8-connected, at least {cfg.min_instance_area} px) "
        "of each predicted class; COCO AP at IoU .50:.95, all areas.",
        "",
        "| | AP | AP50 | AP75 | " + " | ".join(f"AP {n}" for n in classes.names[1:]) + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in classes.names[1:]) + " |",
    ]
    for kind, ap in results["instance"].items():
        per = " | ".join(_fmt(ap.get(f"AP/{n}")) for n in classes.names[1:])
        lines.append(f"| {'mask' if kind == 'segm' else 'box'} | {_fmt(ap['AP'])} | {_fmt(ap['AP50'])} | "
                     f"{_fmt(ap['AP75'])} | {per} |")
    lines += ["", f"{h} Worst frames (lowest `{cfg.rank_by}`)", ""]
    if results["worst"]:
        if gallery:
            lines += [f"![worst frames]({gallery})", "",
                      "Columns: image | prediction | truth | error map (green correct, red false positive, "
                      "blue missed, yellow wrong class e.g. player taken for board, grey unlabelled).", ""]
        lines += ["| rank | frame | value | players over LED | player IoU | LED IoU | player boundary F |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for k, w in enumerate(results["worst"], 1):
            m = w["metrics"]
            lines.append(f"| {k} | {w['id']} | {_fmt(w['value'])} | {_fmt(m.get('players_over_led_iou'))} | "
                         f"{_fmt(m.get('iou/player'))} | {_fmt(m.get('iou/led_board'))} | "
                         f"{_fmt(m.get('boundary_f/player'))} |")
    else:
        lines.append("No frame could be ranked.")
    lines += ["", f"{h} Skipped inputs", ""]
    lines += [f"- {f['what']}: {f['error']}" for f in results["failures"]] or ["None."]
    return lines + [""]


def _json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_outputs(results: dict, ev: Evaluation, cfg: EvaluateConfig, out: str, config: dict | None = None,
                  parts: list[tuple[str, dict, Evaluation, list]] | None = None) -> None:
    """report.md, the galleries, detections.json, then metrics.json (the done marker) with `config`
    (default: `cfg` as it is) recorded. `parts`: (source name, its results, its Evaluation, its
    partial-label panels) of a several-source run, `results` then holds them under `sources`."""
    from playerseg.io import write_bytes_atomic, write_json_atomic
    from playerseg.metrics.instance import write_coco_results
    from playerseg.viz import grid, save_png

    detections = []
    for name, res, part_ev, panels in parts or [("", results, ev, [])]:
        pictures = [pic for *_, pic in part_ev.worst()] or [pic for _, pic in sorted(panels, key=lambda t: t[0])]
        detections += part_ev.detections
        if pictures:
            path = f"worst_frames_{name}.png" if name else "worst_frames.png"
            save_png(join(out, path), grid(pictures))
            res["gallery"] = path
    gallery = results.pop("gallery", None)
    write_coco_results(join(out, "detections.json"), detections)
    write_bytes_atomic(join(out, "report.md"), render_report(results, ev.classes, cfg, gallery).encode())
    write_json_atomic(join(out, "metrics.json"), _json_safe({**results, "config": config or config_lib.to_dict(cfg)}))


# --------------------------------------------------------------------------- the job


def _batches(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """Consecutive samples in lists of at most `size`, all of one frame size (so they stack)."""
    batch: list[Sample] = []
    for s in samples:
        if batch and (len(batch) >= size or s.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the checkpoint over the split of each source and write the outputs; the results dict."""
    from playerseg.io import exists, read_json

    if not cfg.checkpoint:
        raise SystemExit("evaluate needs a checkpoint (--checkpoint)")
    if cfg.split not in SPLITS:
        raise SystemExit(f"unknown split {cfg.split!r}; use one of {SPLITS}")
    if cfg.batch_size < 1:
        raise SystemExit(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.data_from:
        cfg.data = data_section(cfg.data_from)
    requested = _json_safe(config_lib.to_dict(cfg))  # as asked, before classes come from the model
    with Ledger(cfg.out, signature(cfg), cfg.overwrite, OUTPUTS):
        done = join(cfg.out, "metrics.json")
        if exists(done):
            previous = read_json(done)
            if _asked(previous.get("config") or {}) == _asked(requested):
                log.info("%s exists with this config: nothing to do (--overwrite redoes it)", done)
                return previous
        results, parts = _evaluate_sources(cfg)
        write_outputs(results, parts[0][2], cfg, cfg.out, requested, parts if cfg.data.sources else None)
    for name, res, _, _ in parts:
        shown = res.get("semantic") or res.get("metrics") or {}
        log.info("%s: %s", name or cfg.data.root, {k: round(v, 4) for k, v in shown.items() if isinstance(v, float)})
    log.info("report: %s", join(cfg.out, "report.md"))
    return _json_safe({**results, "config": requested})


def _asked(config: dict) -> dict:
    """A config as a run's signature holds it: `overwrite` says what to do, not what to make."""
    return {k: v for k, v in config.items() if k != "overwrite"}


def signature(cfg: EvaluateConfig) -> dict:
    """What the outputs depend on: the config, and the checkpoint's weights by content."""
    from playerseg.models.segmenter import weights_sha256

    return {**_asked(_json_safe(config_lib.to_dict(cfg))), "checkpoint_sha256": weights_sha256(cfg.checkpoint)}


def _evaluate_sources(cfg: EvaluateConfig) -> tuple[dict, list]:
    """(results, per-source parts) of the checkpoint over the split of each source."""
    from playerseg.models.segmenter import Segmenter

    model = Segmenter.load(cfg.checkpoint, device=cfg.device or None, runtime=cfg.runtime)
    if cfg.target_height >= 0 and hasattr(model, "preprocess"):
        model.preprocess = dataclasses.replace(model.preprocess, target_height=cfg.target_height)
    classes = model.classes
    cfg.data.classes = list(classes.names)  # the reader maps sources onto the model's label space
    parts = [(src.name if cfg.data.sources else "", *_evaluate_source(model, src, cfg, classes))
             for src in cfg.data.source_list()]
    if cfg.data.sources:
        results = {"classes": list(classes.names), "num_images": sum(r["num_images"] for _, r, _, _ in parts),
                   "sources": {name: r for name, r, _, _ in parts}}
    else:
        results = parts[0][1]
    return results, parts


def data_section(path: str) -> DataConfig:
    """The `data` section of a training config file, as a DataConfig."""
    tree = config_lib.read_file(path)
    if not isinstance(tree.get("data"), dict):
        raise config_lib.ConfigError(f"{path}: has no `data` section (data_from)")
    return config_lib.from_dict(DataConfig, tree["data"], f"{path}:data")


def _evaluate_source(model, src: DataConfig, cfg: EvaluateConfig, classes: TaskClasses):
    """(results, Evaluation, partial-label panels) of one source. Frames whose every class is
    labelled per pixel go through `Evaluation` (the full report); every frame goes through a
    `SourceMeter` (only what the source labels)."""
    from playerseg.data.registry import build_reader, iter_samples
    from playerseg.data.sample import PIXEL
    from playerseg.metrics.sources import SourceMeter
    from playerseg.progress import Progress

    reader = build_reader(src, None if cfg.split == "all" else cfg.split)
    if cfg.max_samples:
        reader = Subset(reader, reader.keys()[: cfg.max_samples], cfg.split)
    log.info("evaluating %s on %s (tta=%s)", cfg.checkpoint, reader, cfg.tta)
    failures = Failures()
    ev = Evaluation(classes, cfg)
    meter = SourceMeter(src.name, classes, cfg.led_radius, cfg.boundary_tol, cfg.reference_height,
                        postprocess_cfg=cfg.postprocess)
    panels: list[tuple[float, np.ndarray]] = []
    rank_by = ""
    with Progress(f"evaluate {src.name}".strip(), total=len(reader), unit="frame") as bar:
        for batch in _batches(iter_samples(reader, failures), cfg.batch_size):
            images = np.stack([s.image for s in batch])
            if hasattr(model, "predict_proba"):  # probabilities score the instances for AP
                probas = model.predict_proba(images, tta=cfg.tta)
                preds = probas[:, : len(classes)].argmax(1).astype(np.uint8)
            else:
                probas, preds = [None] * len(batch), model.predict(images, tta=cfg.tta)
            for s, p, pr in zip(batch, preds, probas):
                full = s.semantic is not None and all(s.label_kind(n) == PIXEL for n in classes.names)
                try:
                    if full:
                        ev.add(s, p, pr)
                    row = meter.update(s, p, pr)
                except ValueError as e:  # a label map that does not fit the model's classes
                    failures.add(s.id, e)
                    continue
                if not full and cfg.worst > 0:
                    rank_by = rank_by or next(iter(row), "")
                    _keep_panel(panels, s, p, row.get(rank_by, math.nan), classes, cfg)
            bar.update(len(batch))
        bar.update(len(reader) - bar.done)  # skipped frames
    if ev.num_images:
        res = ev.results(failures)
        res["source_metrics"] = meter.compute()
    else:
        res = {"classes": list(classes.names), "num_images": meter.num_images, "labels": dict(meter.kinds),
               "metrics": meter.compute(), "rank_by": rank_by, "failures": failures.as_json()}
    return res, ev, panels


def _keep_panel(panels: list, sample: Sample, pred: np.ndarray, value: float, classes: TaskClasses,
                cfg: EvaluateConfig) -> None:
    """Keep the `cfg.worst` lowest-`value` frames of a partially labelled source as pictures:
    image with its labelled boxes | prediction | what the source labels per pixel."""
    import cv2

    from playerseg.viz import draw_boxes, label, overlay, resize_width

    if math.isnan(value) or (len(panels) >= cfg.worst and value >= max(v for v, _ in panels)):
        return
    image = draw_boxes(sample.image, [inst.box for inst in sample.instances
                                      if sample.label_kind(classes.names[inst.class_id]) != "pixel"])
    truth = np.zeros_like(pred) if sample.semantic is None else sample.semantic
    tiles = [resize_width(image, cfg.tile_width)]
    size = (tiles[0].shape[1], tiles[0].shape[0])
    for m in (pred, truth):
        tiles.append(overlay(tiles[0], cv2.resize(np.asarray(m, np.uint8), size, interpolation=cv2.INTER_NEAREST),
                             classes))
    tiles[0] = label(tiles[0], f"{sample.id}  {value:.3f}")
    panels.append((value, np.concatenate(tiles, axis=1)))
    panels.sort(key=lambda t: t[0])
    del panels[cfg.worst:]
