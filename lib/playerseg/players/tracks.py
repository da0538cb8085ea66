"""Players through time: tracks inside a segment (supervision's ByteTrack), stitched across
segments, and a team per track by vote.

    seg = track_segment(frames, detections, starts, signatures, fps, cfg, overlap)  # one segment, in a worker
    ids, shots = stitch([seg0, seg1, ...], cfg)[k]                                   # per video, on the driver
    team_of_track = vote_teams(track_ids, teams)                                     # after `playerseg cluster`

`track_segment` runs `sv.ByteTrack` on the instances' boxes and scores, a fresh tracker at each
hard cut (`shots.shot_starts`) so that no track crosses one. An instance ByteTrack leaves
unmatched (a low score, or the first frame of a track not yet confirmed) has no track (-1). Local
track ids are numbered by first appearance, so they are the same on every run.

Segments overlap: before its own frames, a segment's tracker runs over the last `overlap_frames`
frames of the segment before (their instances, read from that segment's part), so tracks are
established and moving when the segment starts, and the instances of those frames carry both
segments' local ids. `stitch` joins consecutive segments through them: a track of the later
segment continues the earlier segment's track that holds most of its overlap instances (in the
earlier segment's last shot, one to one), unless a cut separates the two segments (the colour
signatures of the last and first frame). Global track ids (1, 2, ... per video, in order of first
appearance) and shot ids (0, 1, ... per video) depend only on the segments, never on which worker
ran what.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from playerseg.players.shots import ShotConfig, is_cut
from playerseg.video.schema import prediction_xyxy

NO_TRACK = -1


@dataclass
class TrackConfig:
    enabled: bool = True  # track after inference (`playerseg infer`)
    classes: list[str] = field(default_factory=lambda: ["player"])  # instances that get tracks
    activation_threshold: float = 0.25  # ByteTrack: score that starts a track (lower: second-stage matches)
    lost_buffer: int = 30  # ByteTrack: frames (at 30 fps) a lost track waits for its player to reappear
    matching_threshold: float = 0.8  # ByteTrack: 1 - IoU above which a detection cannot match a track
    min_consecutive: int = 1  # ByteTrack: frames a track must be seen before it gets an id
    # MaskSwap: swap two touching tracks when their masks fit the other's moved last mask better by
    # this much mask IoU; 0 = off (the default: measured, it gained nothing; README)
    mask_swap: float = 0.0
    mask_memory: int = 3  # frames a track's last mask is kept for that comparison
    overlap_frames: int = 30  # frames of the previous segment a segment's tracker starts on (= lost_buffer at 30 fps)
    shots: ShotConfig = field(default_factory=ShotConfig)


@dataclass
class SegmentTracks:
    """Tracks of one segment, with what `stitch` needs of it (JSON-safe)."""

    frames: list[int]  # the segment's own frame indices, ascending
    shot: list[int]  # local shot of each frame (0, 1, ...)
    first_signature: list[float]  # colour signatures of the first and last frame
    last_signature: list[float]
    instances: dict[str, int]  # "frame_index/instance_id" -> local track id (tracked instances only)
    overlap: dict[str, int] = field(default_factory=dict)  # the same for the previous segment's overlap frames
    follows: bool = False  # tracked right after the segment before it (its overlap frames were read)
    scale: list = field(default_factory=list)  # each frame's player scale (`shots.frame_scale`; None: no player)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentTracks":
        return cls(**d)


def _byte_track(cfg: TrackConfig, fps: float):
    """A fresh `sv.ByteTrack`. supervision marks it deprecated from 0.28 (its successor, the
    `trackers` package, needs `opencv-python`, which clashes with the pinned headless OpenCV), so
    the warning is silenced here and `constraints.txt` pins supervision 0.30.9, the last release
    that has it."""
    import warnings

    import supervision as sv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return sv.ByteTrack(track_activation_threshold=cfg.activation_threshold, lost_track_buffer=cfg.lost_buffer,
                            minimum_matching_threshold=cfg.matching_threshold, frame_rate=max(1.0, float(fps)),
                            minimum_consecutive_frames=cfg.min_consecutive)


def _update(tracker, dets: list[dict]) -> list[tuple[int, int]]:
    """(instance_id, ByteTrack id) of the tracked detections of one frame."""
    import supervision as sv

    dets = sorted(dets, key=lambda d: int(d["instance_id"]))
    if dets:
        found = sv.Detections(xyxy=np.array([prediction_xyxy(d) for d in dets], dtype=np.float32),
                              confidence=np.array([float(d["score"]) for d in dets], np.float32),
                              class_id=np.zeros(len(dets), int),
                              data={"instance_id": np.array([int(d["instance_id"]) for d in dets])})
    else:
        found = sv.Detections.empty()
        found.confidence = np.zeros(0, np.float32)
    out = tracker.update_with_detections(found)
    return [(int(i), int(t)) for i, t in zip(out.data.get("instance_id", []), out.tracker_id)]


class MaskSwap:
    """Mask IoU where box IoU cannot tell: ByteTrack matches on boxes, and two players who touch or
    run side by side have boxes that fit either track, so it can hand one player's track to the
    other. After ByteTrack's matching, each pair of tracked instances whose boxes overlap is
    compared with the two tracks' last masks, each moved by its own track's last motion (a runner
    is where his neighbour was a frame ago): when the crossed assignment explains the masks better
    (sum of mask IoUs higher by `cfg.mask_swap`), the two ByteTrack tracks swap labels from then on
    (ByteTrack's own state follows the boxes it matched; the label follows the player). Instances
    without a mask (`rle` absent) are left as ByteTrack gave them."""

    def __init__(self, cfg: TrackConfig):
        self.cfg = cfg
        self.label: dict[int, int] = {}  # ByteTrack id -> track label
        self.last: dict[int, tuple] = {}  # track label -> (frame number, mask RLE, box centre, motion per frame)
        self.frame = 0

    def __call__(self, pairs: list[tuple[int, int]], dets: list[dict]) -> list[tuple[int, int]]:
        """(instance_id, ByteTrack id) of one frame -> (instance_id, track label)."""
        from pycocotools import mask as mask_utils

        from playerseg.metrics.rle import compressed

        if self.cfg.mask_swap <= 0:  # off: nothing to keep
            return pairs
        self.frame += 1
        by_id = {int(d["instance_id"]): d for d in dets}
        labels = {iid: self.label.setdefault(tid, tid) for iid, tid in pairs}
        tid_of = {iid: tid for iid, tid in pairs}
        masked = [iid for iid, _ in pairs if by_id[iid].get("rle") is not None]
        if len(masked) > 1:
            boxes = [list(by_id[i]["bbox"]) for i in masked]
            touching = np.asarray(mask_utils.iou(boxes, boxes, [0] * len(boxes))).reshape(len(boxes), len(boxes))
            for a, b in zip(*np.nonzero(np.triu(touching, 1) > 0)):
                ia, ib = masked[a], masked[b]
                la, lb = labels[ia], labels[ib]
                old_a, old_b = self._predicted(la), self._predicted(lb)
                if old_a is None or old_b is None:
                    continue
                now = [compressed(by_id[ia]["rle"]), compressed(by_id[ib]["rle"])]
                iou = np.asarray(mask_utils.iou(now, [old_a, old_b], [0, 0])).reshape(2, 2)
                if iou[0, 1] + iou[1, 0] > iou[0, 0] + iou[1, 1] + self.cfg.mask_swap:
                    labels[ia], labels[ib] = lb, la
                    self.label[tid_of[ia]], self.label[tid_of[ib]] = lb, la
        for iid, lab in labels.items():
            d = by_id[iid]
            if d.get("rle") is not None:
                x, y, w, h = (float(v) for v in d["bbox"])
                centre, motion = np.array([x + w / 2, y + h / 2]), np.zeros(2)
                if lab in self.last:
                    f0, _, c0, _ = self.last[lab]
                    motion = (centre - c0) / max(1, self.frame - f0)
                self.last[lab] = (self.frame, compressed(d["rle"]), centre, motion)
        return [(iid, labels[iid]) for iid, _ in pairs]

    def _predicted(self, label: int) -> dict | None:
        """The track's last mask moved to where its motion puts it now; None when the track was
        not seen within `mask_memory` frames."""
        from playerseg.metrics.rle import compressed, decode, encode

        seen = self.last.get(label)
        if seen is None or self.frame - seen[0] > self.cfg.mask_memory:
            return None
        frame, rle, _, motion = seen
        dx, dy = (int(round(v)) for v in motion * (self.frame - frame))
        if dx == 0 and dy == 0:
            return rle
        m = decode(rle)
        moved = np.zeros_like(m)
        h, w = m.shape
        moved[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = m[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        return compressed(encode(moved))


def track_segment(frames: list[int], detections: dict[int, list[dict]], starts, signatures: tuple,
                  fps: float, cfg: TrackConfig = TrackConfig(),
                  overlap: dict[int, list[dict]] | None = None) -> SegmentTracks:
    """ByteTrack over one segment. `detections[frame]`: dicts with instance_id, bbox (COCO xywh),
    score; `starts[i]`: a shot starts at frames[i] (the first frame's flag is ignored: whether the
    segment starts a shot is `stitch`'s call); `signatures`: (first, last) frame signatures;
    `overlap`: detections of the previous segment's last frames. A detection's `rle` (its mask,
    COCO RLE), where given, lets `MaskSwap` correct ByteTrack between touching players."""
    order = np.argsort(frames)
    frames = [int(frames[i]) for i in order]
    starts = [bool(starts[i]) for i in order]
    tracker, swap, shot, raw, shots = _byte_track(cfg, fps), MaskSwap(cfg), 0, {}, []
    before = {}
    for f in sorted(overlap or {}):
        for iid, tid in swap(_update(tracker, overlap[f]), overlap[f]):
            before[(f, iid)] = tid
    for i, f in enumerate(frames):
        if i > 0 and starts[i]:
            shot += 1
            tracker, swap = _byte_track(cfg, fps), MaskSwap(cfg)
        shots.append(shot)
        dets = detections.get(f, [])
        for iid, tid in swap(_update(tracker, dets), dets):
            raw[(f, iid)] = (shot, tid)
    local: dict[tuple[int, int], int] = {}  # (shot, ByteTrack id) -> local id, by first appearance
    instances = {f"{f}/{iid}": local.setdefault(key, len(local)) for (f, iid), key in sorted(raw.items())}
    overlap_ids = {f"{f}/{iid}": local[(0, tid)] for (f, iid), tid in sorted(before.items()) if (0, tid) in local}
    first, last = signatures
    return SegmentTracks(frames=frames, shot=shots, first_signature=[float(v) for v in first],
                         last_signature=[float(v) for v in last], instances=instances, overlap=overlap_ids,
                         follows=overlap is not None)


def _joins(prev: SegmentTracks, seg: SegmentTracks) -> dict[int, int]:
    """Local track of `seg` -> the local track of `prev` it continues (through shared overlap instances)."""
    if not prev.shot or not seg.overlap:
        return {}
    last_shot = prev.shot[-1]
    in_last = {f for f, s in zip(prev.frames, prev.shot) if s == last_shot}
    votes: dict[tuple[int, int], int] = {}
    for key, t in seg.overlap.items():
        p = prev.instances.get(key)
        if p is not None and int(key.split("/")[0]) in in_last:
            votes[(t, p)] = votes.get((t, p), 0) + 1
    joins, taken = {}, set()
    for (t, p), _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):  # strongest pairs first, one to one
        if t not in joins and p not in taken:
            joins[t] = p
            taken.add(p)
    return joins


def _continues(prev: SegmentTracks, seg: SegmentTracks, cfg: TrackConfig) -> bool:
    """The segment goes on with the previous one's last shot: it follows it (no segment missing
    between them) and no cut separates their facing frames."""
    return (seg.follows and bool(prev.frames and seg.frames)
            and not is_cut(prev.last_signature, seg.first_signature, cfg.shots))


def stitch(segments: list[SegmentTracks], cfg: TrackConfig = TrackConfig()) -> list[tuple[dict[int, int], list[int]]]:
    """Per segment (in frame order): (local track -> global track id, global shot id per frame)."""
    out: list[tuple[dict[int, int], list[int]]] = []
    next_track, last_shot = 1, -1
    for k, seg in enumerate(segments):
        go_on = k > 0 and _continues(segments[k - 1], seg, cfg)
        base = last_shot if go_on else last_shot + 1
        shots = [base + s for s in seg.shot]
        joins = _joins(segments[k - 1], seg) if go_on else {}
        ids: dict[int, int] = {}
        for t in sorted(set(seg.instances.values())):
            if t in joins:
                ids[t] = out[k - 1][0][joins[t]]
            else:
                ids[t], next_track = next_track, next_track + 1
        out.append((ids, shots))
        if shots:
            last_shot = shots[-1]
    return out


def instance_tracks(seg: SegmentTracks, ids: dict[int, int]) -> dict[tuple[int, int], int]:
    """(frame_index, instance_id) -> global track id of one stitched segment."""
    out = {}
    for key, t in seg.instances.items():
        f, i = key.split("/")
        out[(int(f), int(i))] = ids[int(t)]
    return out


def vote_teams(track_ids, teams) -> dict[int, int]:
    """Team of each track: the most frequent per-frame team (0, 1, 2 = other) of its instances;
    unknown teams (< 0) do not vote, ties go to the lower id. Untracked instances (< 0) are left out."""
    track_ids, teams = np.asarray(track_ids, np.int64), np.asarray(teams, np.int64)
    keep = (track_ids >= 0) & (teams >= 0)
    out = {}
    for t in np.unique(track_ids[keep]):
        out[int(t)] = int(np.bincount(teams[keep & (track_ids == t)]).argmax())
    return out


def team_flicker(track_ids, frames, teams) -> dict:
    """Changes of team along tracks: {"changes", "tracked_instances", "tracks", "per_100"} (per 100
    tracked instances), team changes counted between consecutive instances of each track."""
    track_ids, frames, teams = (np.asarray(x, np.int64) for x in (track_ids, frames, teams))
    keep = (track_ids >= 0) & (teams >= 0)
    changes = 0
    for t in np.unique(track_ids[keep]):
        sel = np.flatnonzero(keep & (track_ids == t))
        seq = teams[sel[np.argsort(frames[sel], kind="stable")]]
        changes += int(np.count_nonzero(seq[1:] != seq[:-1]))
    n = int(keep.sum())
    return {"changes": changes, "tracked_instances": n, "tracks": int(len(np.unique(track_ids[keep]))),
            "per_100": round(100.0 * changes / n, 3) if n else 0.0}
