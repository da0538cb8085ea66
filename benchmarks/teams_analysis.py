"""Real-data measurement of the players-of-interest ideas on a labelled set (the Acme frames), the
measurement behind `bench_teams.py` (benchmark code, not part of the package):

1. team assignment: encoder embedding vs colour-histogram baseline, accuracy under the best team
   permutation, per frame and overall, on outfield players only and on everyone (OTHER included);
2. segmentation quality split by the LED-overlap flag: are players in front of boards worse?

    result = run(AnalysisConfig(root="../shared/data/acme-football-semseg"))
    print(format_tables(result))

Ground truth: person instances of the reader (`team_a` -> 0, `team_b` -> 1, goalkeepers and the
referee -> OTHER), at least `min_pixels` pixels (the Acme masks have no instance ids, so players
are connected components; slivers of a goalkeeper seen between two players are dropped here).
Two clusterings per method:
- `frame`: k-means on the players of one frame, best permutation chosen per frame;
- `global`: one k-means over all frames' players (what `playerseg cluster` does per video), ONE
  permutation for the whole set (per-frame rows of `global` use that same permutation).
Segmentation metrics need a trained model (`model`); without one that part is skipped.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from playerseg.classes import TaskClasses
from playerseg.players.embed import ColourConfig, EncoderConfig, EncoderEmbedder, colour_histograms, hellinger
from playerseg.players.flags import FlagsConfig, instance_flags
from playerseg.players.teams import (TeamConfig, TeamModel, accuracy, assign_teams, best_swap,
                                     permutation_counts, swap, true_teams)

log = logging.getLogger(__name__)

METHODS = ("colour", "encoder")


@dataclass
class AnalysisConfig:
    root: str = ""  # Acme-format folder; "" = <shared data>/acme-football-semseg
    min_pixels: int = 1500  # person instances with fewer mask pixels are left out
    model: str = ""  # trained Segmenter folder: its encoder embeds and it predicts; "" = ImageNet encoder
    split: str = ""  # "" = every frame; "val" / "train" = that split of `playerseg.data.registry`
    #                  (measure a model trained on the train split on "val" only)
    limit: int = 0  # first N frames only (0 = all)
    seg_metrics: bool = True  # with a model: also predict and split segmentation metrics by the LED flag
    sam_checkpoint: str = ""  # also measure masked SAM image-encoder embeddings (method `sam`)
    sam_type: str = "vit_b"
    colour: ColourConfig = field(default_factory=ColourConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    teams: TeamConfig = field(default_factory=TeamConfig)
    flags: FlagsConfig = field(default_factory=FlagsConfig)


@dataclass
class FrameRecord:
    key: str
    truth: np.ndarray  # 0 / 1 / OTHER per player
    features: dict  # method -> N x D
    flags: list  # instance_flags dicts
    boxes: list = field(default_factory=list)  # (x0, y0, x1, y1) per player
    seg: dict | None = None  # per-instance segmentation numbers (with a model)


def default_root() -> str:
    from playerseg.io import shared_data_dir

    return str(shared_data_dir() / "acme-football-semseg")


def players_of(sample, min_pixels: int, classes: TaskClasses = TaskClasses()) -> list:
    return [i for i in sample.instances if i.class_id == classes.player and i.mask is not None
            and int(np.count_nonzero(i.mask)) >= min_pixels]


def instance_seg_counts(pred: np.ndarray, target: np.ndarray, box, mask: np.ndarray, player: int) -> dict:
    """Player-class counts inside one instance's box: intersection / union of predicted vs true
    player pixels (box IoU), and how much of the instance's own mask is predicted player (recall)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    p, t = pred[y0:y1, x0:x1] == player, target[y0:y1, x0:x1] == player
    m = mask[y0:y1, x0:x1]
    return {"inter": int(np.count_nonzero(p & t)), "union": int(np.count_nonzero(p | t)),
            "hit": int(np.count_nonzero(p & m)), "pixels": int(np.count_nonzero(m))}


def collect(cfg: AnalysisConfig) -> tuple[list[FrameRecord], str, "SegmentationMeter | None"]:
    """Per-frame player embeddings, flags and (with a model) per-instance segmentation counts;
    also names the encoder and returns the whole-frame SegmentationMeter (None without a model)."""
    from playerseg.metrics.semantic import SegmentationMeter
    from playerseg.data.registry import DataConfig, build_reader

    reader = build_reader(DataConfig(format="acme", root=cfg.root or default_root()), cfg.split or None)
    classes = TaskClasses()
    segmenter = meter = None
    if cfg.model:
        from playerseg.models.segmenter import Segmenter

        segmenter = Segmenter.load(cfg.model)
        embedder = EncoderEmbedder.from_segmenter(segmenter, cfg.encoder)
        encoder_name = f"trained segmenter {cfg.model} ({segmenter.meta.get('model', {}).get('encoder', '?')})"
        meter = SegmentationMeter(classes, reference_height=1080) if cfg.seg_metrics else None
    else:
        embedder = EncoderEmbedder.imagenet(cfg.encoder)
        encoder_name = "ImageNet EfficientNet-Lite0 (model registry default init, not trained for segmentation)"
    sam = None
    if cfg.sam_checkpoint:
        from playerseg.players.embed import SamEmbedder
        from playerseg.sam.build import build_sam

        sam = SamEmbedder(build_sam(cfg.sam_type, cfg.sam_checkpoint))
    keys = reader.keys()[: cfg.limit or None]
    records = []
    for key in tqdm(keys, desc="frames"):
        sample = reader.load(key)
        people = players_of(sample, cfg.min_pixels, classes)
        masks, boxes = [i.mask for i in people], [i.box for i in people]
        led = sample.semantic == classes.led_board
        rec = FrameRecord(
            key=key,
            truth=true_teams([i.label for i in people]),
            features={"colour": hellinger(colour_histograms(sample.image, masks, boxes, cfg.colour)),
                      "encoder": embedder(sample.image, masks, boxes)},
            flags=instance_flags(boxes, masks, led, cfg.flags),
            boxes=[tuple(float(v) for v in b) for b in boxes],
        )
        if sam is not None:
            rec.features["sam"] = sam(sample.image, masks)
        if meter is not None:
            pred = segmenter.predict(sample.image[None])[0]
            meter.update(pred, sample.semantic, [key])
            rec.seg = {"instances": [instance_seg_counts(pred, sample.semantic, b, m, classes.player)
                                     for b, m in zip(boxes, masks)]}
        records.append(rec)
    return records, encoder_name, meter


def team_results(records: list[FrameRecord], cfg: TeamConfig) -> dict:
    """{method: {"frames": [per-frame row], "overall": {...}}} (see the module docstring)."""
    out = {}
    for method in (list(records[0].features) if records else METHODS):
        feats = [r.features[method] for r in records]
        all_x = np.concatenate(feats) if feats else np.zeros((0, 1))
        all_t = np.concatenate([r.truth for r in records]) if records else np.zeros(0, np.int64)
        global_pred = TeamModel(cfg).fit(all_x).predict(all_x) if len(all_x) else np.zeros(0, np.int64)
        swapped = best_swap(global_pred, all_t)
        rows, preds, sums = [], [], {k: [0, 0] for k in ("frame/outfield", "frame/all", "global/outfield", "global/all")}
        start = 0
        for r, x in zip(records, feats):
            n = len(x)
            per_frame = permutation_counts(assign_teams(x, cfg), r.truth)
            per_global = permutation_counts(global_pred[start:start + n], r.truth, swapped)
            preds.append(swap(global_pred[start:start + n]) if swapped else global_pred[start:start + n])
            start += n
            row = {"key": r.key, "n_team": int(np.count_nonzero(r.truth != 2)), "n_other": int(np.count_nonzero(r.truth == 2))}
            for scope, counts in (("frame", per_frame), ("global", per_global)):
                for part in ("outfield", "all"):
                    row[f"{scope}/{part}"] = accuracy(counts[part])
                    sums[f"{scope}/{part}"][0] += counts[part][0]
                    sums[f"{scope}/{part}"][1] += counts[part][1]
            rows.append(row)
        overall = {k: accuracy(tuple(v)) for k, v in sums.items()}
        overall.update({f"{k}/n": v[1] for k, v in sums.items()})
        per_frame_mean = {k: _nanmean([row[k] for row in rows]) for k in sums}
        out[method] = {"frames": rows, "overall": overall, "frame_mean": per_frame_mean,
                       "global_pred": [p.tolist() for p in preds]}  # permuted to match the truth best
    return out


def led_split(records: list[FrameRecord], meter=None) -> dict | None:
    """Segmentation of players split by the LED-overlap flag: box IoU of the player class (pooled
    over instances), mean per-instance recall of the instance mask, and counts; plus the whole-frame
    SegmentationMeter numbers (`meter`) for reference. None without model predictions."""
    if not records or records[0].seg is None:
        return None
    groups = {True: [], False: []}
    for r in records:
        for flags, counts in zip(r.flags, r.seg["instances"]):
            groups[bool(flags["led"])].append(counts)
    out = {"frame_metrics": meter.compute() if meter is not None else {}}
    for led, items in groups.items():
        inter, union = sum(c["inter"] for c in items), sum(c["union"] for c in items)
        recalls = [c["hit"] / c["pixels"] for c in items if c["pixels"]]
        out["led" if led else "no_led"] = {
            "instances": len(items),
            "box_iou/player": inter / union if union else math.nan,
            "recall/mean": _nanmean(recalls),
            "missed (recall < 0.5)": sum(1 for v in recalls if v < 0.5),
        }
    return out


def gallery(result: dict, records: list[FrameRecord], cfg: AnalysisConfig, path: str, count: int = 6,
            tile_width: int = 640) -> str:
    """PNG of the `count` frames where the colour baseline does worst (global clustering): per row
    the colour and the encoder assignment. Box colour = predicted team (red 0, blue 1, yellow
    other); a thin box is a wrong prediction, a thick one a right one; a magenta corner marks the
    LED-overlap flag."""
    import cv2

    from playerseg.data.acme import AcmeReader
    from playerseg.viz import TEAM_COLOURS, grid, label, resize_width, save_png

    reader = AcmeReader(cfg.root or default_root())
    teams = result["teams"]
    order = sorted(range(len(records)), key=lambda i: (_nan_last(teams["colour"]["frames"][i]["global/all"]), i))
    rows = []
    for i in order[:count]:
        rec = records[i]
        image = reader.load(rec.key).image
        scale = tile_width / image.shape[1]
        tiles = []
        for method in teams:
            tile = resize_width(image, tile_width).copy()
            for box, pred, truth, fl in zip(rec.boxes, teams[method]["global_pred"][i], rec.truth, rec.flags):
                x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
                cv2.rectangle(tile, (x0, y0), (x1 - 1, y1 - 1), TEAM_COLOURS[int(pred)], 3 if pred == truth else 1)
                if fl["led"]:
                    cv2.rectangle(tile, (x0, y0), (x0 + 7, y0 + 7), (255, 0, 255), -1)
            row = teams[method]["frames"][i]
            tiles.append(label(tile, f"{rec.key} {method}: all {_fmt(row['global/all'])}, outfield {_fmt(row['global/outfield'])}"))
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        raise ValueError("no frames to draw")
    save_png(path, grid(rows))
    return path


def _nan_last(v: float) -> float:
    return math.inf if isinstance(v, float) and math.isnan(v) else v


def run(cfg: AnalysisConfig, gallery_path: str = "") -> dict:
    """Collect, measure, and (with `gallery_path`) draw the worst frames; returns the numbers."""
    records, encoder_name, meter = collect(cfg)
    result = measure(records, encoder_name, cfg, meter)
    if gallery_path and records:
        result["gallery"] = gallery(result, records, cfg, gallery_path)
    return result


def measure(records: list[FrameRecord], encoder_name: str, cfg: AnalysisConfig, meter=None) -> dict:
    flags = [f for r in records for f in r.flags]
    return {
        "encoder": encoder_name,
        "frames": len(records),
        "players": int(sum(len(r.truth) for r in records)),
        "flag_counts": {k: int(sum(bool(f[k]) for f in flags)) for k in ("led", "truncated", "merged")},
        "split": cfg.split or "all",
        "teams": team_results(records, cfg.teams),
        "led_split": led_split(records, meter),
    }


def _nanmean(values) -> float:
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else math.nan


def _fmt(v) -> str:
    return "  -  " if isinstance(v, float) and math.isnan(v) else f"{v:.3f}" if isinstance(v, float) else str(v)


def format_tables(result: dict, per_frame: bool = True) -> str:
    """The result as plain-text tables (per frame, overall, LED split)."""
    lines = [f"encoder embedding: {result['encoder']}",
             f"frames {result['frames']} ({result.get('split', 'all')}), players {result['players']}, "
             f"flags {result['flag_counts']}", ""]
    teams = result["teams"]
    methods = list(teams)
    cols = ("frame/outfield", "frame/all", "global/outfield", "global/all")
    if per_frame:
        short = {"frame/outfield": "f/out", "frame/all": "f/all", "global/outfield": "g/out", "global/all": "g/all"}
        lines.append("per frame: f = per-frame k-means and permutation, g = global k-means and permutation; "
                     "out = outfield players, all = with OTHER")
        lines.append(f"{'frame':<12}{'team':>5}{'other':>6} |" + " |".join(
            "".join(f"{m[:3] + ':' + short[c]:>10}" for c in cols) for m in methods))
        for i, row in enumerate(teams[methods[0]]["frames"]):
            lines.append(f"{row['key']:<12}{row['n_team']:>5}{row['n_other']:>6} |" + " |".join(
                "".join(f"{_fmt(teams[m]['frames'][i][c]):>10}" for c in cols) for m in methods))
        lines.append("")
    lines.append("team accuracy (best permutation; frame = per-frame k-means + per-frame permutation, "
                 "global = one k-means + one permutation over all frames)")
    lines.append(f"{'method':<10}" + "".join(f"{c:>18}" for c in cols) + f"{'(frame mean)':>16}")
    for m in methods:
        o = teams[m]["overall"]
        lines.append(f"{m:<10}" + "".join(f"{_fmt(o[c]) + ' /' + str(o[c + '/n']):>18}" for c in cols)
                     + f"{_fmt(teams[m]['frame_mean']['frame/outfield']):>16}")
    split = result.get("led_split")
    lines.append("")
    if split is None:
        lines.append("segmentation split by LED overlap: skipped (needs a trained model: --set model=PATH, "
                     "and seg_metrics=true)")
    else:
        lines.append("segmentation of players split by the LED-overlap flag")
        lines.append(f"{'group':<8}{'instances':>10}{'box IoU':>10}{'recall':>10}{'missed':>8}")
        for g in ("led", "no_led"):
            s = split[g]
            lines.append(f"{g:<8}{s['instances']:>10}{_fmt(s['box_iou/player']):>10}{_fmt(s['recall/mean']):>10}"
                         f"{s['missed (recall < 0.5)']:>8}")
        fm = split["frame_metrics"]
        if fm:
                lines.append(f"whole frames: iou/player {_fmt(fm.get('iou/player', math.nan))}, iou/led_board "
                         f"{_fmt(fm.get('iou/led_board', math.nan))}, players_over_led_iou "
                         f"{_fmt(fm['players_over_led_iou'])}")
    return "\n".join(lines)
