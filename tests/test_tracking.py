"""Players through time: ByteTrack per segment, stitching across segments, shot cuts, per-track
teams, the synthetic ground-truth tracks, drawing, and the tracking pass of `playerseg infer`
(resumable, idempotent) on an inference output made from the synthetic ground truth."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from playerseg.players.shots import ShotConfig, cut_distances, frame_signature, shot_starts
from playerseg.players.tracks import TrackConfig, instance_tracks, stitch, team_flicker, track_segment, vote_teams

FLAT = np.full(256, 1 / 256, np.float32)  # the colour signature of a frame that never changes


def crossing(frames: int):
    """Two players running towards each other and crossing (boxes overlap mid-way), one standing."""
    out = {}
    for f in range(frames):
        out[f] = [{"instance_id": 0, "bbox": [10 + 4 * f, 50, 12, 30], "score": 0.9},
                  {"instance_id": 1, "bbox": [170 - 4 * f, 54, 12, 30], "score": 0.8},
                  {"instance_id": 2, "bbox": [300, 20, 10, 25], "score": 0.7}]
    return out


def tracked(segs, stitched):
    out = {}
    for seg, (ids, _) in zip(segs, stitched):
        out.update(instance_tracks(seg, ids))
    return out


def split_run(dets, frames, size, cfg, starts=None, sigs=None):
    segs = []
    for a in range(0, frames, size):
        idx = list(range(a, min(frames, a + size)))
        st = [True] + [False] * (len(idx) - 1) if starts is None else [starts[i] for i in idx]
        sg = (FLAT, FLAT) if sigs is None else (sigs[idx[0]], sigs[idx[-1]])
        overlap = {i: dets[i] for i in range(max(0, a - cfg.overlap_frames), a)}
        segs.append(track_segment(idx, {i: dets[i] for i in idx}, st, sg, 25, cfg, overlap))
    return tracked(segs, stitch(segs, cfg)), segs


def test_sharding_keeps_identities():
    cfg = TrackConfig()
    dets = crossing(40)
    whole, _ = split_run(dets, 40, 40, cfg)
    for size in (7, 10, 13):
        assert split_run(dets, 40, size, cfg)[0] == whole, size
    # each player one track through the crossing, three tracks in all
    assert len(set(whole.values())) == 3
    for iid in range(3):
        assert len({t for (f, i), t in whole.items() if i == iid}) == 1


def test_a_cut_ends_every_track_and_numbers_shots():
    cfg = TrackConfig()
    dets = crossing(30)
    other = np.zeros(256, np.float32)
    other[0] = 1.0  # another shot: all its colour in one bin
    sigs = [FLAT] * 15 + [other] * 15
    starts = shot_starts(sigs, cfg.shots)
    assert list(np.flatnonzero(starts)) == [0, 15]
    ids, segs = split_run(dets, 30, 10, cfg, starts, sigs)  # the cut falls inside the second segment
    before = {t for (f, _), t in ids.items() if f < 15}
    after = {t for (f, _), t in ids.items() if f >= 15}
    assert before and after and not before & after
    shots = [s for _, sh in stitch(segs, cfg) for s in sh]
    assert shots == [0] * 15 + [1] * 15
    ids2, segs2 = split_run(dets, 30, 15, cfg, starts, sigs)  # ... or on a segment boundary
    assert [s for _, sh in stitch(segs2, cfg) for s in sh] == shots
    assert not {t for (f, _), t in ids2.items() if f < 15} & {t for (f, _), t in ids2.items() if f >= 15}


def test_a_missing_segment_breaks_no_rule():
    """A segment tracked without the one before (it failed) starts new tracks and a new shot."""
    cfg = TrackConfig()
    dets = crossing(20)
    a = track_segment(list(range(10)), {i: dets[i] for i in range(10)}, [True] + [False] * 9, (FLAT, FLAT), 25, cfg,
                      {})
    b = track_segment(list(range(15, 20)), {i: dets[i] for i in range(15, 20)}, [True] + [False] * 4, (FLAT, FLAT), 25,
                      cfg, None)
    (ids_a, shots_a), (ids_b, shots_b) = stitch([a, b], cfg)
    assert not set(ids_a.values()) & set(ids_b.values())
    assert shots_b[0] == shots_a[-1] + 1


def test_synthetic_cut_detected_and_pans_are_not_cuts():
    from playerseg.data.synthetic import render_objects

    frames = [render_objects(0, i, (320, 180), 8)[0] for i in range(6)]
    big = render_objects(1, 0, (640, 360), 8)[0]
    frames.append(big[120:300, 160:480])  # a tighter camera on another match
    starts = shot_starts([frame_signature(f) for f in frames], ShotConfig())
    assert list(np.flatnonzero(starts)) == [0, 6]
    assert np.isnan(cut_distances([frame_signature(frames[0])])[0])


def _person(x0: int, x1: int, iid: int) -> dict:
    """A detection whose mask fills columns x0..x1 of rows 10..40, its box wider than the mask."""
    from pycocotools import mask as mask_utils

    m = np.zeros((60, 80), np.uint8)
    m[10:40, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"instance_id": iid, "bbox": [x0 - 4, 10, x1 - x0 + 8, 30], "score": 0.9,
            "rle": {"size": rle["size"], "counts": rle["counts"].decode()}}


def test_mask_iou_keeps_touching_players_apart():
    """Boxes that overlap fit either track; when the box tracker hands each player the other's
    track, the masks (each track's last one) give the labels back, and they stay given back."""
    from playerseg.players.tracks import MaskSwap

    left, right = _person(10, 16, 0), _person(22, 28, 1)
    frames = [[(0, 1), (1, 2)], [(0, 2), (1, 1)], [(0, 2), (1, 1)]]  # ByteTrack swaps at the second frame
    on = TrackConfig(mask_swap=0.1)
    swap = MaskSwap(on)
    assert [swap(pairs, [left, right]) for pairs in frames] == [[(0, 1), (1, 2)]] * 3
    off = MaskSwap(TrackConfig())  # off (the default): ByteTrack's ids as they come
    assert [off(pairs, [left, right]) for pairs in frames] == frames
    bare = [{k: v for k, v in d.items() if k != "rle"} for d in (left, right)]  # no masks: nothing to go by
    assert [MaskSwap(on)(pairs, bare) for pairs in frames] == frames
    apart = [_person(10, 16, 0), _person(60, 66, 1)]  # boxes apart: ByteTrack's call stands
    assert [MaskSwap(on)(pairs, apart) for pairs in frames] == frames


def test_shot_kinds_from_player_scale():
    from playerseg.players.shots import frame_scale, shot_kinds

    assert frame_scale([40, 50, 60], 1080) == pytest.approx(50 / 1080)
    assert frame_scale([], 1080) is None
    # shot 0: wide-shot players (~5% of the frame); 1: close-up (~40%), one frame without players;
    # 2: nobody (crowd, graphics); the median decides, one odd frame does not
    shots = [0, 0, 0, 1, 1, 1, 2, 2]
    scales = [0.05, 0.04, 0.3, 0.4, None, 0.35, None, None]
    assert shot_kinds(shots, scales) == {0: "wide", 1: "close", 2: "none"}
    assert shot_kinds(shots, scales, ShotConfig(wide_max_scale=0.5))[1] == "wide"


def test_vote_and_flicker():
    tracks = np.array([1, 1, 1, 2, 2, -1, 3])
    teams = np.array([0, 1, 0, 1, 1, 0, -1])
    assert vote_teams(tracks, teams) == {1: 0, 2: 1}  # unknown teams and untracked instances do not vote
    frames = np.array([0, 1, 2, 0, 1, 0, 0])
    assert team_flicker(tracks, frames, teams) == {"changes": 2, "tracked_instances": 5, "tracks": 2, "per_100": 40.0}


def test_synthetic_annotations_carry_track_ids(synth_dir):
    coco = json.loads((synth_dir / "annotations.json").read_text())
    people = {c["id"] for c in coco["categories"] if c["name"] in ("team_a", "team_b", "referee")}
    anns = coco["annotations"]
    assert all(("track_id" in a) == (a["category_id"] in people) for a in anns)
    by_track = {}
    for a in anns:
        if "track_id" in a:
            by_track.setdefault(a["track_id"], set()).add(a["category_id"])
    assert len(by_track) > 5 and all(len(c) == 1 for c in by_track.values())  # a track keeps its kit


def test_draw_keeps_a_track_colour():
    from playerseg.metrics import rle
    from playerseg.viz import draw_instances

    img = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[20:35, 10:20] = True
    enc = rle.encode(mask)
    inst = {"class": "player", "mask_rle_size": enc["size"], "mask_rle_counts": enc["counts"], "team": -1}
    a = draw_instances(img, [{**inst, "instance_id": 0, "track_id": 7}], "instance", track_ids=False)
    b = draw_instances(img, [{**inst, "instance_id": 3, "track_id": 7}], "instance", track_ids=False)
    assert np.array_equal(a, b)  # the colour follows the track, not the frame's instance id
    c = draw_instances(img, [{**inst, "instance_id": 0, "track_id": 7}], "instance", track_ids=True)
    assert (c[:20] != a[:20]).any()  # "#7" written above the player


# ---- the tracking pass of `playerseg infer` -----------------------------------------------------
def _inference_output(synth_dir, out, segment_frames: int):
    """An inference output written by the job's own writer from the synthetic ground truth
    (people as players, the board as led_board), units planned on the clip like `infer` plans them."""
    from playerseg.infer.writer import OUTPUTS, UnitWriter
    from playerseg.ledger import Ledger
    from playerseg.video.frames import plan_units
    from playerseg.players.parts import unit_frames

    coco = json.loads((synth_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    frame_of = {im["id"]: im["frame_index"] for im in coco["images"]}
    per_frame, truth = {}, {}
    for a in sorted(coco["annotations"], key=lambda a: a["id"]):
        name = names[a["category_id"]]
        if name == "ball":
            continue
        f = frame_of[a["image_id"]]
        recs = per_frame.setdefault(f, [])
        recs.append({"instance_id": len(recs), "class": "led_board" if name == "advertisement" else "player",
                     "score": 0.9, "bbox": a["bbox"], "area": a["area"], "mask_rle_size": a["segmentation"]["size"],
                     "mask_rle_counts": a["segmentation"]["counts"]})
        truth[(f, len(recs) - 1)] = a.get("track_id", 0)
    units, failures = plan_units([str(synth_dir / "video.mp4")], 10.0, segment_frames)
    assert not failures
    with Ledger(str(out), {"test": "tracking"}, outputs=OUTPUTS) as ledger:
        writer = UnitWriter(ledger, {u.key: u for u in units}, ("background", "player", "led_board"))
        for u in units:
            for f in sorted(unit_frames(u)):
                writer.add({"unit": u.key, "video_id": "video", "frame_index": f, "pts_seconds": f / 25, "width": 160,
                            "height": 96, "error": "", "instances": per_frame.get(f, []),
                            "num_instances": len(per_frame.get(f, [])),
                            "fractions": json.dumps({"background": 1.0, "player": 0.0, "led_board": 0.0})})
        writer.finish()
    assert len(writer.written) == len(units)
    return ledger, units, truth


def test_tracking_pass_across_units_resumable(synth_dir, tmp_path, ray_local):
    from playerseg.players.track_job import track_outputs

    cfg = TrackConfig(activation_threshold=0.5)
    results = {}
    for size in (12, 4):  # one unit, then three: the same tracks
        out = tmp_path / f"seg{size}"
        ledger, units, truth = _inference_output(synth_dir, out, size)
        summary = track_outputs(ledger, units, cfg)
        assert not summary["failures"] and summary["parts_written"] == len(units), summary
        preds = pq.read_table(out / "predictions").to_pylist()
        frames = pq.read_table(out / "frames").to_pylist()
        assert all(r["shot_id"] == 0 for r in frames)
        kinds = {r["shot_kind"] for r in frames}  # one shot, one kind, counted in the summary
        assert len(kinds) == 1 and summary["videos"]["video"]["shot_kinds"] == {kinds.pop(): 1}
        assert all(r["track_id"] == -1 for r in preds if r["class"] == "led_board")
        results[size] = {(r["frame_index"], r["instance_id"]): r["track_id"] for r in preds}
        if size == 4:
            mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
            again = track_outputs(ledger, units, cfg)  # nothing changed: nothing tracked or written
            assert again["segments_tracked"] == 0 and again["parts_written"] == 0
            assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert results[4] == results[12]
    # players visible in most frames keep one track: their ground-truth id maps to one track id
    by_truth = {}
    for key, t in results[4].items():
        if truth[key] and t >= 0:
            by_truth.setdefault(truth[key], set()).add(t)
    assert sum(len(v) == 1 for v in by_truth.values()) >= 0.7 * len(by_truth), by_truth


def test_cluster_votes_one_team_per_track(synth_dir, tmp_path, ray_local):
    from playerseg.players.cluster_cmd import ClusterConfig, cluster

    _, units, truth = _inference_output(synth_dir, tmp_path, 6)
    for part in (tmp_path / "predictions").rglob("*.parquet"):  # ground-truth tracks in the track_id column
        table = pq.read_table(part)
        ids = [truth[(f, i)] or -1 for f, i in zip(table.column("frame_index").to_pylist(),
                                                    table.column("instance_id").to_pylist())]
        table = table.set_column(table.column_names.index("track_id"), "track_id", pa.array(ids, pa.int32()))
        pq.write_table(table, part)
    cfg = ClusterConfig(inputs=[str(synth_dir / "video.mp4")], predictions=str(tmp_path), segment_frames=6)
    summary = cluster(cfg)
    assert summary["failed"] == 0 and summary["written"] == 2, summary
    rows = [r for r in pq.read_table(tmp_path / "predictions").to_pylist() if r["class"] == "player"]
    per_track = {}
    for r in rows:
        if r["track_id"] >= 0 and r["team"] >= 0:
            per_track.setdefault(r["track_id"], set()).add(r["team"])
    assert per_track and all(len(v) == 1 for v in per_track.values())
    assert "team_frame" in rows[0]
    assert team_flicker([r["track_id"] for r in rows], [r["frame_index"] for r in rows],
                        [r["team"] for r in rows])["changes"] == 0
    again = cluster(cfg)
    assert again["written"] == 0 and again["already_written"] == 2, again
