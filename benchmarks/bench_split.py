"""Post-processing variants side by side on the validation frames of every source that labels
player instances (box sets: the detection set's held-out matches; mask sets: Acme's close shots):
people recall and precision at box IoU 0.5. The model runs once per frame; each variant
post-processes the same probabilities (source resolution, as `playerseg evaluate` does).

    .venv/bin/python benchmarks/bench_split.py [--model models/unet_effl0_broadcast_v2]
        [--data-from configs/unet_broadcast_v2.yaml] [--max-frames N]

    .venv/bin/python benchmarks/bench_split.py --split train   # the split the thresholds are chosen on

Variants: `none` (components only), `core` (split at valleys of P(player), `split_core`), `pitch`
(players must stand on the pitch, `on_pitch`), `core+pitch`, `core+pitch+size` (also blobs of several
players' size cut into that many, `split_size`), `+size1.6` / `+size2.0` (other size thresholds),
`+score0.75` (also players under a mean P(player) of 0.75 dropped, `min_player_score`), `+score0.7` /
`+score0.8`, `+specks0.4` (also specks under 0.4 of a player's size at their row dropped, `min_size`),
`+specks0.3` / `+specks0.5`; for a model with a centre channel (`ModelConfig.centre_head`):
`+centres P rR` (blobs cut between the peaks of P(centre) of at least P, `centre_peak`, R of the
frame height apart, `centre_radius`; the defaults are 0.2 and 0.008), `+centres 0.2 r0.008, no size
split`, `+centre_min M` (the defaults, and blobs whose P(centre) stays under M dropped, `centre_min`,
off by default).
`--only centres` measures the centre variants and the defaults without centres; `--every K` every K-th
frame. Figures: people recall, precision (box IoU 0.5) and COCO box AP50.
"""
import argparse
import contextlib
import dataclasses
import io
import time

import numpy as np

from playerseg.data.errors import Failures
from playerseg.data.reader import Subset
from playerseg.data.registry import build_reader, iter_samples
from playerseg.evaluate import data_section
from playerseg.infer.postprocess import PostprocessConfig, postprocess
from playerseg.metrics.instance import InstanceMeter
from playerseg.metrics.sources import match_boxes
from playerseg.models import DEFAULT_MODEL
from playerseg.models.segmenter import Segmenter

BASE = PostprocessConfig(instance_classes=["player"], split_core=0.0, on_pitch=0.0, split_size=0.0,
                         min_player_score=0.0, min_size=0.0)
DEFAULT = PostprocessConfig(instance_classes=["player"])
ALL_SCORES = dataclasses.replace(DEFAULT, min_player_score=0.0, min_size=0.0)
NO_CENTRES = dataclasses.replace(DEFAULT, centre_peak=0.0, centre_min=0.0)
NO_SPECKS = dataclasses.replace(NO_CENTRES, min_size=0.0)
VARIANTS = {
    "none": BASE,
    "core": dataclasses.replace(BASE, split_core=PostprocessConfig.split_core),
    "pitch": dataclasses.replace(BASE, on_pitch=PostprocessConfig.on_pitch),
    "core+pitch": dataclasses.replace(ALL_SCORES, split_size=0.0),
    "core+pitch+size": ALL_SCORES,
    "+size1.6": dataclasses.replace(ALL_SCORES, split_size=1.6),
    "+size2.0": dataclasses.replace(ALL_SCORES, split_size=2.0),
    "+score0.75": NO_SPECKS,
    "+score0.7": dataclasses.replace(NO_SPECKS, min_player_score=0.7),
    "+score0.8": dataclasses.replace(NO_SPECKS, min_player_score=0.8),
    "+specks0.4 (no centres)": NO_CENTRES,
    "+specks0.3": dataclasses.replace(NO_CENTRES, min_size=0.3),
    "+specks0.5": dataclasses.replace(NO_CENTRES, min_size=0.5),
}
CENTRES = {  # a model with a centre channel only
    **{f"+centres {peak} r{radius}": dataclasses.replace(NO_CENTRES, centre_peak=peak, centre_radius=radius)
       for peak in (0.15, 0.2, 0.3) for radius in (0.008, 0.012)},
    "+centres 0.2 r0.008, no size split": dataclasses.replace(NO_CENTRES, centre_peak=0.2, split_size=0.0),
    **{f"+centre_min {m}": dataclasses.replace(DEFAULT, centre_min=m) for m in (0.2, 0.25, 0.3)},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--data-from", default="configs/unet_broadcast_v2.yaml")
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--split", default="val", help="val (default) or train: the split to measure on")
    p.add_argument("--every", type=int, default=1, help="every K-th frame of each source")
    p.add_argument("--only", choices=["all", "centres"], default="all")
    args = p.parse_args()
    seg = Segmenter.load(args.model, device="cpu", runtime="auto")
    player = seg.classes.player
    centres = CENTRES if seg.meta.get("model", {}).get("centre_head") else {}
    variants = {**VARIANTS, **centres} if args.only == "all" else {"+specks0.4 (no centres)": NO_CENTRES, **centres}
    print(f"model {args.model}; people recall / precision at box IoU 0.5, box AP50, on the {args.split} split")
    for src in data_section(args.data_from).source_list():
        reader = build_reader(src, args.split)
        if args.max_frames or args.every > 1:
            keys = reader.keys()[:: args.every]
            reader = Subset(reader, keys[: args.max_frames or len(keys)], args.split)
        counts = {v: [0, 0, 0] for v in variants}  # tp, truth, detections
        meters = {v: InstanceMeter(seg.classes) for v in variants}
        frames, start = 0, time.perf_counter()
        for sample in iter_samples(reader, Failures()):
            truth = np.array([i.box for i in sample.instances if i.class_id == player], np.float64).reshape(-1, 4)
            if not len(truth):
                continue
            frames += 1
            proba = seg.predict_proba(sample.image[None])[0]
            for name, cfg in variants.items():
                found = [i for i in postprocess(proba, seg.classes, cfg, sample.image)[0] if i.class_id == player]
                boxes = np.array([i.box for i in found], np.float64).reshape(-1, 4)
                c = counts[name]
                c[0] += match_boxes(boxes, np.array([i.score for i in found]), truth)
                c[1] += len(truth)
                c[2] += len(boxes)
                meter = meters[name]
                image_id = meter.add_ground_truth(dataclasses.replace(
                    sample, instances=[i for i in sample.instances if i.class_id == player]))
                meter.add_detections([{"image_id": image_id, "category_id": player, "score": i.score,
                                       "bbox": [i.box[0], i.box[1], i.box[2] - i.box[0], i.box[3] - i.box[1]]}
                                      for i in found])
        if not frames:
            continue
        print(f"\n{src.name}: {frames} frames with players ({time.perf_counter() - start:.0f} s)")
        print("| variant | recall | precision | F1 | box AP50 |\n| --- | ---: | ---: | ---: | ---: |")
        for name, (tp, gt, det) in counts.items():
            r, pr = tp / gt, tp / max(1, det)
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' own tables
                ap50 = meters[name].compute("bbox")["AP50"]
            print(f"| {name} | {r:.3f} | {pr:.3f} | {2 * r * pr / max(1e-9, r + pr):.3f} | {ap50:.3f} |", flush=True)


if __name__ == "__main__":
    main()
