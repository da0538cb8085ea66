"""Hard shot cuts from the colour of consecutive frames, and what kind of shot each is.

    sig = frame_signature(image)                    # 16 x 4 x 4 HSV histogram of a 160 px wide copy
    d = frame_distance(prev_sig, sig)               # Bhattacharyya distance: 0 same, 1 disjoint
    starts = shot_starts(signatures, ShotConfig())  # a new shot starts at these frames
    kinds = shot_kinds(shot_ids, scales, ShotConfig())  # shot -> "wide" | "close" | "none"

A broadcast hard cut replaces the whole picture from one frame to the next, so its colour
histogram jumps (a close-up or a replay holds other colours than a wide shot); inside a shot the
camera pans and zooms over the same grass, boards and crowd and the histogram drifts. The
threshold sits between the two on what was measured (`benchmarks/bench_tracking.py --cuts`,
README): inside the shots of the three sample clips (pans, zooms, score graphics, one dissolve)
consecutive frames stay at or below 0.151, inside the synthetic clips' fast pans at or below 0.19;
the synthetic cut to a tighter camera on another match is 0.33. Not cuts here: gradual
transitions (dissolves, the wipes that open a replay) spread the change over several frames, and
a cut between two wide cameras of the same pitch keeps its colours (tracks then end because the
boxes no longer overlap, not because a cut was seen). Pixel-wise measures (PySceneDetect's
content distance) catch the latter but fire on fast pans (synthetic pans score above its cut).
Nor does a window help (the distance between frames k apart, k = 5-20): the Serie A dissolve reaches
0.30 and the LaLiga score graphic, inside live play, 0.33.

The kind of a shot comes from the model's players instead: a frame's scale is the median height of
its players as a share of the frame height, a shot's the median over its frames. Wide shots (the
live play a tracker follows) hold players of at most 0.081 of the frame height (median per frame,
all 242 frames of the detection set's 15 matches); the Acme close shots put 95% of their frames
above 0.108 (median 0.346). Close-ups and most replays (tight cameras, slow motion) are "close", a
shot without a player (crowd, graphics) is "none".
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BINS = (16, 4, 4)  # hue, saturation, value
WIDTH = 160  # signatures are computed on a copy this wide: cheap, and blind to compression noise


@dataclass
class ShotConfig:
    cut_threshold: float = 0.25  # Bhattacharyya distance between consecutive frames that starts a new shot
    wide_max_scale: float = 0.1  # a shot whose median player height is at most this share of the frame is wide


def frame_signature(image: np.ndarray) -> np.ndarray:
    """Normalised HSV histogram (float32, sums to 1) of an RGB uint8 frame."""
    h, w = image.shape[:2]
    if w > WIDTH:
        image = cv2.resize(image, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def frame_distance(a, b) -> float:
    """Bhattacharyya distance of two signatures."""
    return float(cv2.compareHist(np.asarray(a, np.float32), np.asarray(b, np.float32), cv2.HISTCMP_BHATTACHARYYA))


def is_cut(a, b, cfg: ShotConfig = ShotConfig()) -> bool:
    return frame_distance(a, b) > cfg.cut_threshold


def cut_distances(signatures) -> np.ndarray:
    """Distance of each frame to the one before (NaN for the first)."""
    out = np.full(len(signatures), np.nan, dtype=np.float64)
    for i in range(1, len(signatures)):
        out[i] = frame_distance(signatures[i - 1], signatures[i])
    return out


def shot_starts(signatures, cfg: ShotConfig = ShotConfig()) -> np.ndarray:
    """Boolean per frame: a new shot starts here (the first frame always does)."""
    return np.nan_to_num(cut_distances(signatures), nan=np.inf) > cfg.cut_threshold


def frame_scale(player_heights, frame_height: int) -> float | None:
    """Median player box height as a share of the frame height; None without players."""
    return float(np.median(player_heights)) / frame_height if len(player_heights) and frame_height > 0 else None


def shot_kinds(shots, scales, cfg: ShotConfig = ShotConfig()) -> dict[int, str]:
    """Kind of each shot from its frames' scales (`frame_scale`, None: no player): "wide" when the
    median is at most `cfg.wide_max_scale`, "close" above, "none" when no frame has a player."""
    by_shot: dict[int, list[float]] = {}
    for shot, scale in zip(shots, scales):
        by_shot.setdefault(int(shot), [])
        if scale is not None:
            by_shot[int(shot)].append(scale)
    return {shot: ("none" if not v else "wide" if float(np.median(v)) <= cfg.wide_max_scale else "close")
            for shot, v in by_shot.items()}
