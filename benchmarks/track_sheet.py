"""A picture to check tracks by eye: one row per track, one crop per checkpoint frame.

    .venv/bin/python benchmarks/track_sheet.py outputs/infer ../shared/data/videos/bundesliga_478p.mp4 \\
        --tracks 8 --every 10 --out sheet.png

Rows are the longest tracks of the video (or `--ids`), columns frames 0, every, 2*every, ...;
each crop is centred on the track's box in that frame (the box drawn, "-" when the track has no
instance there), so a row that changes player is an ID switch. The crops' centres are what
`--points` writes as a JSON list for `bench_tracking.py --id-switches` after the rows are checked.
"""
from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import pyarrow.parquet as pq

from playerseg.video.probe import video_id_for


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", help="a tracked `playerseg infer` output folder")
    p.add_argument("video")
    p.add_argument("--tracks", type=int, default=8)
    p.add_argument("--ids", help="comma-separated track ids instead of the longest")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--frames", type=int, default=100, help="checkpoints below this frame index")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--out", required=True)
    p.add_argument("--points", help="also write the checkpoints' box centres per track as JSON here")
    args = p.parse_args(argv)
    vid = video_id_for(args.video)
    t = pq.read_table(f"{args.output}/predictions", columns=["video_id", "frame_index", "class", "track_id", "bbox"])
    rows = [r for r in t.to_pylist() if r["video_id"] == vid and r["class"] == "player" and (r["track_id"] or -1) >= 0]
    checks = list(range(0, args.frames, args.every))
    if args.ids:
        ids = [int(v) for v in args.ids.split(",")]
    else:
        counts = np.bincount([r["track_id"] for r in rows if r["frame_index"] in checks])
        ids = [int(i) for i in np.argsort(-counts, kind="stable")[: args.tracks] if counts[i]]
    box = {(r["track_id"], r["frame_index"]): r["bbox"] for r in rows}
    frames = {}
    import av

    with av.open(args.video) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in checks:
                frames[i] = f.to_ndarray(format="rgb24")
            if i >= max(checks):
                break
    s = args.crop
    sheet = np.zeros((len(ids) * s, (len(checks) + 1) * s, 3), np.uint8)
    points = {}
    for r, tid in enumerate(ids):
        cv2.putText(sheet, f"#{tid}", (4, r * s + s // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        for c, f in enumerate(checks):
            b = box.get((tid, f))
            if b is None:
                continue
            x, y, w, h = b
            cx, cy = x + w / 2, y + h / 2
            points.setdefault(str(tid), []).append([f, round(cx, 1), round(cy, 1)])
            img = cv2.copyMakeBorder(frames[f], s, s, s, s, cv2.BORDER_CONSTANT)
            x0, y0 = int(cx) + s - s // 2, int(cy) + s - s // 2
            crop = img[y0:y0 + s, x0:x0 + s].copy()
            cv2.rectangle(crop, (int(x - cx + s // 2), int(y - cy + s // 2)), (int(x - cx + s // 2 + w), int(y - cy + s // 2 + h)),
                          (255, 255, 0), 1)
            sheet[r * s:(r + 1) * s, (c + 1) * s:(c + 2) * s] = crop
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: tracks {ids}, checkpoints {checks}")
    if args.points:
        with open(args.points, "w") as fh:
            json.dump({"video": vid, "players": points}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
