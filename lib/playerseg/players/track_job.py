"""The tracking pass of `playerseg infer`: `track_id` per instance, `shot_id` and `shot_kind` per frame.

Runs after the model pass, on the units (video segments) it has written, in two Ray Data passes
and one driver step:
1. per unit (tasks, in parallel): the unit's frames are read again (`video.frames.read_unit`, the
   reader the model pass used; bad frames, left out of the parts, are skipped) for their colour signatures and hard cuts (`players.shots`), and
   its instances' boxes and scores go through ByteTrack, one tracker per shot, started on the
   last `overlap_frames` frames before the unit (boxes from the parts of the units before it, as
   many as that takes; `tracks.track_segment`);
   cached as `<output>/_tracks/<fp>/<group>/<unit>.json`;
2. per video (driver): the cached segments in frame order are stitched (`tracks.stitch`) into
   global track and shot ids;
3. per unit (tasks): the prediction part gets the column `track_id` (-1: not tracked) and the
   frame part `shot_id` and `shot_kind` (wide / close / none: `shots.shot_kinds`, from the players'
   sizes over the whole shot), rewritten atomically with `playerseg.tracks=<stamp>` in their Parquet
   metadata, the stamp a hash of the options, the run (`_run.json`, `playerseg.ledger`) and the part's ids.
A re-run skips cached segments and parts that already carry their stamp, so it writes nothing
when nothing changed; a video that gained segments is stitched again and only parts whose ids
changed are rewritten. `<fp>` covers the tracking options and `_run.json`, so outputs of another
model or options (`--overwrite`) never reuse old tracks.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter

import numpy as np

from playerseg import config as cfgmod
from playerseg.data.errors import DataError, Failures
from playerseg.io import short_hash
from playerseg.ledger import RUN_FILE, Ledger
from playerseg.players.shots import shot_kinds
from playerseg.players.tracks import NO_TRACK, SegmentTracks, TrackConfig, instance_tracks, stitch, track_segment
from playerseg.video.frames import Unit, read_unit

log = logging.getLogger(__name__)
META_KEY = b"playerseg.tracks"
TRACKS_DIR = "_tracks"  # the per-unit cache, under the output folder


def fingerprint(ledger: Ledger, cfg: TrackConfig) -> str:
    from playerseg.io import exists, read_json

    path = ledger.path(RUN_FILE)
    run = read_json(path) if exists(path) else {}
    keys = json.dumps({"tracking": dataclasses.asdict(cfg), "run": run}, sort_keys=True, default=str)
    return short_hash(keys)


def cache_path(ledger: Ledger, fp: str, unit: Unit) -> str:
    return ledger.path(TRACKS_DIR, fp, unit.group, f"{unit.name}.json")


def _fps(pts: list[float]) -> float:
    span = (pts[-1] - pts[0]) if len(pts) > 1 else 0.0
    return (len(pts) - 1) / span if span > 0 else 25.0


def _part_frames(ledger: Ledger, unit: Unit) -> tuple[list[int], list[float], list[int]]:
    """(frame indices, pts, frame heights) of a written unit, in order."""
    from playerseg.infer.writer import part_paths
    from playerseg.players.parts import read_part

    frames = read_part(part_paths(ledger, unit)["frames"]).select(["frame_index", "pts_seconds", "height"]).to_pydict()
    order = np.argsort(frames["frame_index"])
    return ([int(frames["frame_index"][i]) for i in order], [float(frames["pts_seconds"][i] or 0.0) for i in order],
            [int(frames["height"][i] or 0) for i in order])


def _detections(ledger: Ledger, unit: Unit, cfg: TrackConfig, frames: set[int]) -> dict[int, list[dict]]:
    """Tracked-class instances of a written unit in `frames`: {frame: [{instance_id, bbox, score}]},
    with each mask (`rle`) where `cfg.mask_swap` uses them."""
    from playerseg.infer.writer import part_paths
    from playerseg.players.parts import read_part
    from playerseg.video.schema import prediction_rle

    columns = ["frame_index", "instance_id", "class", "score", "bbox"]
    masks = cfg.mask_swap > 0
    preds = read_part(part_paths(ledger, unit)["predictions"]).select(
        columns + (["mask_rle_size", "mask_rle_counts"] if masks else []))
    out: dict[int, list[dict]] = {}
    for r in preds.to_pylist():
        if r["class"] in cfg.classes and r["bbox"] is not None and int(r["frame_index"]) in frames:
            det = {"instance_id": r["instance_id"], "bbox": r["bbox"], "score": 1.0 if r["score"] is None else r["score"]}
            if masks and r["mask_rle_counts"]:
                det["rle"] = prediction_rle(r)
            out.setdefault(int(r["frame_index"]), []).append(det)
    return out


def track_unit(unit: Unit, ledger: Ledger, cfg: TrackConfig, prev: list | None = None) -> SegmentTracks:
    """Shots and ByteTrack tracks of one written unit. `prev`: the written units right before it
    (in order, [] when the one before is not written), whose last frames start its tracker."""
    from playerseg.players.shots import frame_scale, frame_signature, shot_starts

    indices, pts, heights = _part_frames(ledger, unit)
    detections = _detections(ledger, unit, cfg, set(indices))
    overlap = None
    if prev:
        overlap = {}
        for p in prev:
            before = _part_frames(ledger, p)[0]
            overlap |= {f: [] for f in before} | _detections(ledger, p, cfg, set(before))
        overlap = {f: overlap[f] for f in sorted(overlap)[-cfg.overlap_frames:]} if cfg.overlap_frames > 0 else {}
    wanted = set(indices)
    signatures = {f.frame_index: frame_signature(f.image) for f in read_unit(unit)
                  if f.image is not None and f.frame_index in wanted}  # a bad frame is not in the part
    if len(signatures) != len(wanted):
        missing = sorted(wanted - set(signatures))
        raise DataError(unit.key, f"{len(missing)} frames of the part not found in the input (first {missing[:5]})")
    sigs = [signatures[i] for i in indices]
    starts = shot_starts(sigs, cfg.shots)
    seg = track_segment(indices, detections, starts, (sigs[0], sigs[-1]), _fps(pts), cfg, overlap)
    height = dict(zip(indices, heights))
    seg.scale = [frame_scale([d["bbox"][3] for d in detections.get(f, [])], height[f]) for f in seg.frames]
    return seg


def _track_task(item: dict, ledger: Ledger, cfg_json: str, fp: str) -> None:
    from playerseg.io import write_json_atomic

    unit = Unit.from_json(item["unit"])
    prev = [Unit.from_json(u) for u in json.loads(item["prev"])]
    seg = track_unit(unit, ledger, cfgmod.from_dict(TrackConfig, json.loads(cfg_json)), prev)
    write_json_atomic(cache_path(ledger, fp, unit), {"prev": [u.name for u in prev], "tracks": seg.to_dict()})


def _write_task(item: dict, ledger: Ledger) -> None:
    """Rewrite one unit's parts with its ids (frames first: the predictions part's stamp marks it done)."""
    import pyarrow as pa

    from playerseg.infer.writer import part_paths
    from playerseg.io import write_table_atomic
    from playerseg.players.parts import read_part

    unit = Unit.from_json(item["unit"])
    ids = json.loads(item["ids"])
    paths = part_paths(ledger, unit)
    meta = {META_KEY: item["stamp"].encode()}
    shots = {int(f): s for f, s in ids["shots"]}
    kinds = {int(s): k for s, k in ids["kinds"]}
    frames = read_part(paths["frames"])
    index = [shots.get(int(f), -1) for f in frames.column("frame_index").to_pylist()]
    frames = _with_column(frames, "shot_id", pa.array(index, pa.int32()))
    frames = _with_column(frames, "shot_kind", pa.array([kinds.get(s, "") for s in index], pa.string()))
    write_table_atomic(paths["frames"], frames, meta)
    tracks = {(int(f), int(i)): t for f, i, t in ids["tracks"]}
    preds = read_part(paths["predictions"])
    keys = zip(preds.column("frame_index").to_pylist(), preds.column("instance_id").to_pylist())
    col = pa.array([tracks.get((int(f), int(i)), NO_TRACK) for f, i in keys], pa.int32())
    write_table_atomic(paths["predictions"], _with_column(preds, "track_id", col), meta)


def _with_column(table, name: str, col):
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def _stamp_of(part: str) -> str | None:
    from playerseg.players.parts import part_stamp

    return part_stamp(part, META_KEY)


def _run(items: list[dict], fn, fn_kwargs: dict, what: str, doing: str, failures: Failures) -> set[str]:
    """`fn` over `items` as Ray tasks; returns the units whose task failed (named in `failures`). Any
    error of one unit is reported, the others go on."""
    from playerseg.ray_cluster import map_items

    done, failed = map_items(items, fn, what=what, unit="segment", num_cpus=1, fn_kwargs=fn_kwargs, errors=(Exception,),
                             name=lambda i: f"{doing} {Unit.from_json(i['unit']).key}")
    failures.items += failed.items
    return {i["unit"] for i in items} - {i["unit"] for i, _ in done}


def track_outputs(ledger: Ledger, units: list[Unit], cfg: TrackConfig) -> dict:
    """Track the written units (done markers of `ledger`) of an inference output (resumable);
    returns a summary."""
    from playerseg.infer.writer import part_paths
    from playerseg.io import exists, read_json

    failures = Failures()
    groups: dict[str, list] = {}  # written units per video, in frame order (unit names sort so)
    before: dict[str, list] = {}  # unit key -> the written units right before it, overlap_frames in all
    done = {u.key for u in units if ledger.is_done(u)}
    run: list = []  # the current run of written units of one video, without a gap
    for u in sorted(units, key=lambda u: (u.group, u.name)):
        if run and (run[-1].group != u.group or u.key not in done):
            run = []
        if u.key in done:
            groups.setdefault(u.group, []).append(u)
            prev, frames = [], 0
            for p in reversed(run):
                if frames >= cfg.overlap_frames:
                    break
                prev.insert(0, p)
                frames += p.num_frames
            before[u.key] = prev
            run.append(u)
    fp = fingerprint(ledger, cfg)
    cfg_json = json.dumps(cfgmod.to_dict(cfg))
    todo = []
    for us in groups.values():
        for u in us:
            prev = before[u.key]
            path = cache_path(ledger, fp, u)
            if not exists(path) or read_json(path).get("prev") != [p.name for p in prev]:
                todo.append({"unit": u.to_json(), "prev": json.dumps([p.to_json() for p in prev])})
    bad = _run(todo, _track_task, {"ledger": ledger, "cfg_json": cfg_json, "fp": fp}, "track", "tracking", failures)
    writes, videos = [], {}
    for g, us in sorted(groups.items()):
        if any(u.to_json() in bad for u in us):
            log.error("video %s: a segment failed tracking; its tracks are not stitched", g)
            continue
        segs = [SegmentTracks.from_dict(read_json(cache_path(ledger, fp, u))["tracks"]) for u in us]
        pairs = list(zip(segs, us))
        stitched = stitch(segs, cfg)
        kinds = shot_kinds([s for _, shot in stitched for s in shot], [v for seg in segs for v in seg.scale], cfg.shots)
        tracks, shots = set(), set()
        for (seg, u), (ids, shot) in zip(pairs, stitched):
            assigned = instance_tracks(seg, ids)
            body = {"tracks": sorted([f, i, t] for (f, i), t in assigned.items()),
                    "shots": [[f, s] for f, s in zip(seg.frames, shot)],
                    "kinds": sorted([s, kinds[s]] for s in set(shot))}
            text = json.dumps(body, sort_keys=True)
            stamp = f"{fp}-{short_hash(text, 10)}"
            tracks |= set(assigned.values())
            shots |= set(shot)
            if _stamp_of(part_paths(ledger, u)["predictions"]) != stamp:
                writes.append({"unit": u.to_json(), "ids": text, "stamp": stamp})
        videos[g] = {"tracks": len(tracks), "shots": len(shots), "segments": len(us),
                     "shot_kinds": dict(sorted(Counter(kinds.values()).items()))}
    bad_writes = _run(writes, _write_task, {"ledger": ledger}, "track: write", "writing tracks of", failures)
    return {"fingerprint": fp, "segments_tracked": len(todo) - len(bad), "parts_written": len(writes) - len(bad_writes),
            "videos": videos, "failures": failures.items}
