"""Tracking quality (MOTA, IDF1, ID switches by `motmetrics`) on synthetic clips with ground-truth
tracks, and the shot-cut signal on the real sample clips.

    .venv/bin/python benchmarks/bench_tracking.py                     # synthetic: 2 scenes x 150 frames, one hard cut
    .venv/bin/python benchmarks/bench_tracking.py --frames 100 --segment-frames 25 --out tracking.json
    .venv/bin/python benchmarks/bench_tracking.py --cuts ../shared/data/videos   # cut distances of real clips
    .venv/bin/python benchmarks/bench_tracking.py --flicker outputs/infer   # team changes along tracks, after
                                                                            # `playerseg infer` + `playerseg cluster`
    .venv/bin/python benchmarks/bench_tracking.py --id-switches tests/data/tracks_checked.json --flicker outputs/infer
                                                  # ID switches against hand-checked player positions
    .venv/bin/python benchmarks/bench_tracking.py --flicker outputs/acme --labelled-teams ../shared/data/acme-football-semseg
                                                  # team accuracy per frame / per track on the Acme frames

Synthetic (`playerseg.data.synthetic.render_objects`; tests and benchmarks only, never a stand-in
for real results): scene A (seed 0) then, after a hard cut, scene B (seed 1), people running,
crossing and hiding each other, then another match seen by a tighter camera. Detections are the visible ground-truth boxes made imperfect:
box jitter, missed detections, low-score duplicates and false positives (seeded). The job's own
code tracks them (`players.shots` signatures of the rendered frames, `players.tracks.track_segment`
per segment, `stitch` across segments), in variants side by side:
  whole      one segment, cuts detected
  segments   `--segment-frames` segments stitched (what `playerseg infer` does)
  no-stitch  the same segments, never joined (what stitching buys)
  no-cuts    one segment, cut detection off (what ending tracks at a cut buys)
  mask-swap  the job's segments with `tracking.mask_swap` 0.1 (what mask IoU buys; off by default)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from playerseg.players.shots import ShotConfig, cut_distances, frame_distance, frame_signature, shot_starts
from playerseg.players.tracks import TrackConfig, instance_tracks, stitch, track_segment


def synthetic_clip(frames: int, size, people: int, cut_at: int, seed: int = 0, zoom: float = 2.0):
    """[(signature, [(gt_track, xywh, visible mask RLE)])] per frame. Scene B (from `cut_at`) is another match seen by
    a tighter camera (the middle of a `zoom` times larger render); its track ids are offset by 1000."""
    from pycocotools import mask as mask_utils

    from playerseg.data.synthetic import render_objects

    w, h = size
    out = []
    for i in range(frames):
        scene = 0 if i < cut_at else 1
        if scene == 0:
            image, _, objects = render_objects(seed, i, size, people)
        else:
            big = (int(w * zoom) // 2 * 2, int(h * zoom) // 2 * 2)
            image, _, objects = render_objects(seed + 1, i - cut_at, big, people)
            y0, x0 = (big[1] - h) // 3, (big[0] - w) // 2
            image = image[y0:y0 + h, x0:x0 + w]
            objects = [(n, t, m[y0:y0 + h, x0:x0 + w]) for n, t, m in objects]
        gt = []
        for _, track, mask in objects:
            if not track or mask.sum() < 30:
                continue
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            gt.append((track + 1000 * scene, [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)],
                       mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))))
        out.append((frame_signature(image), gt))
    return out


def detections(clip, rng: np.random.Generator, miss: float, jitter: float, false_pos: float, size):
    """Per frame: [{instance_id, bbox, score, rle}] from the ground truth, made imperfect (the mask
    moved with its box's corner; false positives have no mask)."""
    from pycocotools import mask as mask_utils

    w, h = size
    out = []
    for _, gt in clip:
        dets = []
        for _, (x, y, bw, bh), rle in gt:
            if rng.random() < miss:
                continue
            j = rng.normal(0, jitter, 4) * [bw, bh, bw, bh]
            dx, dy = int(round(j[0])), int(round(j[1]))
            m = np.roll(mask_utils.decode(rle), (dy, dx), axis=(0, 1))
            dets.append({"bbox": [x + j[0], y + j[1], max(2.0, bw + j[2]), max(2.0, bh + j[3])],
                         "score": float(rng.uniform(0.5, 1.0) if rng.random() > 0.15 else rng.uniform(0.1, 0.25)),
                         "rle": mask_utils.encode(np.asfortranarray(m))})
        for _ in range(rng.poisson(false_pos)):
            bw, bh = rng.uniform(8, 30), rng.uniform(20, 60)
            dets.append({"bbox": [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh],
                         "score": float(rng.uniform(0.1, 0.6))})
        rng.shuffle(dets)
        out.append([{**d, "instance_id": k} for k, d in enumerate(dets)])
    return out


def run_variant(clip, dets, segment_frames: int, cfg: TrackConfig, join: bool, fps: float):
    """Hypothesis track id per (frame, instance_id), tracked like the job tracks."""
    n = len(clip)
    sigs = [s for s, _ in clip]
    segs = []
    for a in range(0, n, segment_frames):
        idx = list(range(a, min(n, a + segment_frames)))
        starts = shot_starts([sigs[i] for i in idx], cfg.shots)
        overlap = {i: dets[i] for i in range(max(0, a - cfg.overlap_frames), a)} if join else None
        segs.append(track_segment(idx, {i: dets[i] for i in idx}, starts, (sigs[idx[0]], sigs[idx[-1]]), fps, cfg,
                                  overlap))
    if join:
        stitched = stitch(segs, cfg)
    else:  # every segment on its own: ids made distinct per segment
        stitched = [({t: 100000 * k + t + 1 for t in set(s.instances.values())}, s.shot) for k, s in enumerate(segs)]
    hyp = {}
    for seg, (ids, _) in zip(segs, stitched):
        hyp.update(instance_tracks(seg, ids))
    return hyp


def mot_metrics(clip, dets, hyp, name: str):
    import motmetrics as mm
    from pycocotools import mask as mask_utils

    acc = mm.MOTAccumulator(auto_id=True)
    for i, (_, gt) in enumerate(clip):
        tracked = [d for d in dets[i] if (i, d["instance_id"]) in hyp]
        # motmetrics' own `distances.iou_matrix` calls np.asfarray, gone in NumPy 2: the same matrix
        # (1 - IoU, NaN = no pair below IoU 0.5) from pycocotools' box IoU
        a, b = [list(map(float, x)) for _, x, _ in gt], [list(map(float, d["bbox"])) for d in tracked]
        iou = np.asarray(mask_utils.iou(a, b, [0] * len(b)), np.float64) if a and b else np.zeros((len(a), len(b)))
        dist = 1.0 - iou.reshape(len(a), len(b))
        dist[dist > 0.5] = np.nan
        acc.update([t for t, _, _ in gt], [hyp[(i, d["instance_id"])] for d in tracked], dist)
    mh = mm.metrics.create()
    fields = ["mota", "idf1", "num_switches", "num_fragmentations", "recall", "precision", "num_unique_objects",
              "mostly_tracked"]
    row = mh.compute(acc, metrics=fields, name=name).iloc[0]
    return {k: (round(float(row[k]), 4) if k in ("mota", "idf1", "recall", "precision") else int(row[k])) for k in fields}


def cut_report(inputs: list[str], cfg: ShotConfig) -> list[dict]:
    """Per sample clip: distances between consecutive frames and the frames above the threshold."""
    from playerseg.video.frames import plan_units, read_unit

    units, failures = plan_units(inputs, 1e9, 0, 1, None)
    by_video: dict[str, list] = {}
    for u in units:
        by_video.setdefault(u.group, []).extend(frame_signature(f.image) for f in read_unit(u) if f.image is not None)
    out = []
    for vid, sigs in sorted(by_video.items()):
        d = cut_distances(sigs)[1:]
        top = int(np.argmax(d))
        out.append({"video": vid, "frames": len(sigs), "p50": round(float(np.median(d)), 3),
                    "p99": round(float(np.quantile(d, 0.99)), 3), "max": round(float(d[top]), 3), "max_at_frame": top + 1,
                    "cuts": [int(i) for i in np.flatnonzero(shot_starts(sigs, cfg))[1:]],
                    "window": {k: _window_max(sigs, k) for k in (5, 10, 20)}})
    return out


def _window_max(sigs, k: int) -> list:
    """[largest distance between frames k apart, the later frame]: does a window see gradual
    transitions (dissolves, replay wipes) that consecutive frames spread out?"""
    d = [frame_distance(sigs[i - k], sigs[i]) for i in range(k, len(sigs))]
    top = int(np.argmax(d)) if d else 0
    return [round(float(d[top]), 3), top + k] if d else [None, None]


def flicker_report(output: str) -> list[dict]:
    """Per video of an inference output (tracked, then clustered): team changes along tracks of
    the per-frame teams (`team_frame`) and of the per-track vote (`team`), tracks and their lengths."""
    import pyarrow.parquet as pq

    from playerseg.players.tracks import team_flicker

    cols = ["video_id", "frame_index", "class", "track_id", "team", "team_frame"]
    table = pq.read_table(f"{output.rstrip('/')}/predictions")
    if not set(cols) <= set(table.column_names):
        raise SystemExit(f"{output}: no {sorted(set(cols) - set(table.column_names))} columns; run `playerseg infer` "
                         "(it tracks) and then `playerseg cluster` on it first")
    table = table.select(cols).to_pydict()
    out = []
    for vid in sorted(set(table["video_id"])):
        sel = [i for i, (v, c) in enumerate(zip(table["video_id"], table["class"])) if v == vid and c == "player"]
        get = lambda k: np.array([-1 if table[k][i] is None else table[k][i] for i in sel])  # noqa: E731
        tracks, frames = get("track_id"), get("frame_index")
        lengths = np.bincount(tracks[tracks >= 0])
        lengths = lengths[lengths > 0]
        out.append({"video": vid, "frames": int(len(set(frames.tolist()))), "players": len(sel),
                    "tracked": round(float(np.mean(tracks >= 0)), 3), "tracks": int(len(lengths)),
                    "median_track_length": float(np.median(lengths)) if len(lengths) else 0.0,
                    "per_frame": team_flicker(tracks, frames, get("team_frame")),
                    "per_track": team_flicker(tracks, frames, get("team"))})
    return out


def id_switches(checked: str, output: str) -> list[dict]:
    """ID switches and team accuracy of a tracked (and clustered) output against a hand-checked
    list of players ({"videos": [{"video", "players": {name: {"kit", "points": [[frame, x, y],
    ...]}}}]}): at each checkpoint the player is the smallest tracked player box holding the point;
    a switch is a change of track id between consecutive checkpoints where it is found. Teams:
    the two kits that are not `other` are the teams (best permutation), `other` is OTHER."""
    import pyarrow.parquet as pq

    with open(checked) as f:
        videos = json.load(f)["videos"]
    cols = ["video_id", "frame_index", "class", "track_id", "bbox", "team", "team_frame"]
    t = pq.read_table(f"{output.rstrip('/')}/predictions")
    t = t.select([c for c in cols if c in t.column_names])
    return [_switches(spec, t.to_pylist()) for spec in videos]


def _switches(spec: dict, rows: list[dict]) -> dict:
    from playerseg.players.teams import OTHER, team_accuracy

    boxes: dict[int, list] = {}
    for r in rows:
        if r["video_id"] == spec["video"] and r["class"] == "player" and r["track_id"] is not None and r["track_id"] >= 0:
            boxes.setdefault(r["frame_index"], []).append(r)
    kits = sorted({p["kit"] for p in spec["players"].values()} - {"other"})
    switches = missed = points = 0
    per_player, truth, per_frame, per_track = {}, [], [], []
    for name, player in spec["players"].items():
        seq = []
        for f, x, y in player["points"]:
            inside = [(r["bbox"][2] * r["bbox"][3], i) for i, r in enumerate(boxes.get(f, []))
                      if r["bbox"][0] <= x <= r["bbox"][0] + r["bbox"][2] and r["bbox"][1] <= y <= r["bbox"][1] + r["bbox"][3]]
            r = boxes[f][min(inside)[1]] if inside else None
            seq.append(r["track_id"] if r else -1)
            if r is not None and r.get("team_frame") is not None:  # clustered after tracking
                truth.append(OTHER if player["kit"] == "other" else kits.index(player["kit"]))
                per_frame.append(r["team_frame"])
                per_track.append(r["team"])
        found = [s for s in seq if s >= 0]
        n = sum(a != b for a, b in zip(found, found[1:]))
        per_player[name] = {"tracks": seq, "switches": n}
        switches, missed, points = switches + n, missed + len(seq) - len(found), points + len(seq)
    teams = {"per_frame": team_accuracy(per_frame, truth), "per_track": team_accuracy(per_track, truth)} if truth else None
    return {"video": spec["video"], "players": len(spec["players"]), "checkpoints": points, "not_tracked": missed,
            "id_switches": switches, "teams": teams, "per_player": per_player}


def labelled_teams(output: str, root: str, min_share: float = 0.5) -> dict:
    """Team accuracy per frame (`team_frame`) and per track (`team`, the vote) of a tracked and
    clustered output of the Acme frames, against the set's own person labels: each predicted player
    takes the label (`team_a`, `team_b`; goalkeepers and the referee OTHER) of the labelled person
    holding most of its mask, if that person holds at least `min_share` of it. Also how long the
    tracks are there: a vote over one instance is that instance's own team."""
    import pyarrow.parquet as pq
    from pycocotools import mask as rle

    from playerseg.classes import TaskClasses
    from playerseg.data.errors import Failures
    from playerseg.data.registry import DataConfig, build_reader, iter_samples
    from playerseg.players.teams import team_accuracy, true_teams
    from playerseg.video.frames import frame_numbers

    cols = ["frame_index", "class", "track_id", "team", "team_frame", "mask_rle_size", "mask_rle_counts"]
    rows = [r for r in pq.read_table(f"{output.rstrip('/')}/predictions", columns=cols).to_pylist()
            if r["class"] == "player" and r["team_frame"] is not None]
    by_frame: dict[int, list] = {}
    for r in rows:
        by_frame.setdefault(r["frame_index"], []).append(r)
    truth, per_frame, per_track, tracks = [], [], [], {}
    for sample in iter_samples(build_reader(DataConfig(format="acme", root=root)), Failures()):
        people = [i for i in sample.instances if i.mask is not None and i.class_id == TaskClasses().player]
        for r in by_frame.get(frame_numbers([str(sample.path)])[0], []):
            m = rle.decode({"size": r["mask_rle_size"], "counts": r["mask_rle_counts"]}).astype(bool)
            hits = [int(np.count_nonzero(m & p.mask)) for p in people]
            if not hits or max(hits) < min_share * max(1, int(m.sum())):
                continue
            truth.append(int(true_teams([people[int(np.argmax(hits))].label])[0]))
            per_frame.append(r["team_frame"])
            per_track.append(r["team"])
            tracks[r["track_id"]] = tracks.get(r["track_id"], 0) + 1
    lengths = [n for t, n in tracks.items() if t is not None and t >= 0]
    return {"matched_players": len(truth), "per_frame": team_accuracy(per_frame, truth),
            "per_track": team_accuracy(per_track, truth), "tracks": len(lengths),
            "instances_in_tracks_of_2_or_more": int(sum(n for n in lengths if n >= 2)),
            "median_track_length": float(np.median(lengths)) if lengths else 0.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300, help="synthetic frames in all (the cut is in the middle)")
    p.add_argument("--size", default="640x360")
    p.add_argument("--people", type=int, default=22)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--segment-frames", type=int, default=50, help="segment length of the sharded variants")
    p.add_argument("--miss", type=float, default=0.1, help="share of people not detected in a frame")
    p.add_argument("--jitter", type=float, default=0.05, help="box noise, fraction of the box size")
    p.add_argument("--false-pos", type=float, default=1.0, help="false detections per frame (mean)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cuts", nargs="*", help="real videos / folders: report their cut distances instead")
    p.add_argument("--flicker", help="an inference output folder (tracked and clustered): report team flicker instead")
    p.add_argument("--id-switches", help="with --flicker: also count ID switches against this hand-checked list")
    p.add_argument("--labelled-teams", metavar="ACME_ROOT",
                   help="with --flicker (an output of the Acme frames): team accuracy per frame and per track "
                        "against the set's person labels")
    p.add_argument("--out", help="also write the result as JSON here")
    args = p.parse_args(argv)
    cfg = TrackConfig()
    start = time.time()
    if args.flicker:
        result = {"videos": flicker_report(args.flicker)}
        if args.id_switches:
            result["id_switches"] = id_switches(args.id_switches, args.flicker)
            for r in result["id_switches"]:
                print(f"{r['video']}: {r['players']} hand-checked players, {r['checkpoints']} checkpoints: "
                      f"{r['id_switches']} ID switches, {r['not_tracked']} checkpoints without a track; team accuracy "
                      f"there (outfield / all) {r['teams']}; "
                      + "; ".join(f"{k}: {v['tracks']}" for k, v in r["per_player"].items()))
        if args.labelled_teams:
            result["labelled_teams"] = labelled_teams(args.flicker, args.labelled_teams)
            print(f"team accuracy against {args.labelled_teams}'s labels: {result['labelled_teams']}")
        print("| video | frames | player instances | tracked | tracks | median track length | team changes per 100 "
              "tracked instances, per-frame teams | ... per-track teams |")
        print("| --- |" + " ---: |" * 7)
        for r in result["videos"]:
            print(f"| {r['video']} | {r['frames']} | {r['players']} | {r['tracked']} | {r['tracks']} | "
                  f"{r['median_track_length']} | {r['per_frame']['per_100']} ({r['per_frame']['changes']}) | "
                  f"{r['per_track']['per_100']} ({r['per_track']['changes']}) |")
    elif args.cuts is not None:
        result = {"config": dataclasses.asdict(cfg.shots),
                  "videos": cut_report(args.cuts or ["../shared/data/videos"], cfg.shots)}
        print(f"thresholds: {result['config']}")
        for r in result["videos"]:
            print(f"{r['video']}: {r['frames']} frames; distance to the frame before p50 {r['p50']}, p99 {r['p99']}, "
                  f"max {r['max']} (frame {r['max_at_frame']}); cuts at frames {r['cuts']}; frames k apart, "
                  "largest [distance, frame]: " + ", ".join(f"k={k} {v}" for k, v in r["window"].items()))
    else:
        size = tuple(int(v) for v in args.size.split("x"))
        clip = synthetic_clip(args.frames, size, args.people, args.frames // 2, args.seed)
        dets = detections(clip, np.random.default_rng(args.seed), args.miss, args.jitter, args.false_pos, size)
        sigs = [s for s, _ in clip]
        found = np.flatnonzero(shot_starts(sigs, cfg.shots))
        d = cut_distances(sigs)
        in_shot = np.delete(d[1:], args.frames // 2 - 1)
        variants = {"whole": (args.frames, cfg, True), "segments": (args.segment_frames, cfg, True),
                    "no-stitch": (args.segment_frames, cfg, False),
                    "no-cuts": (args.frames, dataclasses.replace(cfg, shots=ShotConfig(cut_threshold=2.0)), True),
                    "mask-swap": (args.segment_frames, dataclasses.replace(cfg, mask_swap=0.1), True)}
        result = {"frames": args.frames, "true_cut": args.frames // 2, "cuts_found": [int(i) for i in found[1:]],
                  "distance_at_cut": round(float(d[args.frames // 2]), 3), "max_in_shot": round(float(in_shot.max()), 3),
                  "detections": int(sum(len(d) for d in dets)), "gt_boxes": int(sum(len(g) for _, g in clip)),
                  "variants": {}}
        for name, (seg, c, join) in variants.items():
            hyp = run_variant(clip, dets, seg, c, join, args.fps)
            result["variants"][name] = mot_metrics(clip, dets, hyp, name)
        print(f"{args.frames} synthetic frames {args.size}, {args.people} people per scene, hard cut at frame "
              f"{args.frames // 2} (found: {result['cuts_found']}; distance there {result['distance_at_cut']}, in shots at most {result['max_in_shot']}); detections: miss {args.miss}, jitter {args.jitter}, "
              f"false positives {args.false_pos}/frame; segments of {args.segment_frames}")
        keys = list(next(iter(result["variants"].values())))
        print("| variant | " + " | ".join(keys) + " |")
        print("| --- |" + " ---: |" * len(keys))
        for name, m in result["variants"].items():
            print(f"| {name} | " + " | ".join(str(m[k]) for k in keys) + " |")
    print(f"{time.time() - start:.1f} s")
    if args.out:
        from playerseg.io import write_json_atomic

        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
