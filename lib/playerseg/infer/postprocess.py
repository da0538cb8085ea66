"""Post-processing: a model's class probabilities -> cleaned player / LED-board instances.

    instances, semantic = postprocess(proba, classes, PostprocessConfig())   # model resolution
    records = instance_records(instances, (1080, 1920), classes)          # RLE at source size

Steps, per instance class (player and led_board by default), all at model resolution:
  1. argmax -> binary mask of the class; contour cleanup by a morphological opening + closing;
  2. connected components (8-connected); blobs under `min_area_px` pixels or `min_area_frac` of
     the frame are dropped;
  3. merged players are split where the LED board separates them: pixels the model gives to the
     player but where P(led_board) >= `split_led_threshold` are cut lines; each remaining core of
     at least that area becomes one instance and the cut pixels go to the nearest core;
     touching players are split at the valleys of P(player) (`split_core`): the pixels of a blob under
     that probability separate its cores, each core of at least `split_core_share` of the blob
     becomes one player and the valley pixels go to the nearest core; in a wide shot, blobs of
     several players' size (the size one player has at that row, fitted on the frame's blobs) are cut
     into that many players by k-means on their pixels (`split_size`), and specks far smaller than
     a player at their row (the ball, bits of a graphic) are dropped (`min_size`); with a model's
     centre channel (`ModelConfig.centre_head`), a blob holding several centre peaks is cut between
     them first (`centre_peak`);
  4. optional hole filling and convex hull of each instance;
  5. with the frame given, players must stand on the pitch (`on_pitch`): where the frame shows a pitch
     (`playerseg.pitch.pitch_mask`), a wide-shot-sized player with less than that share of grass
     around it (in the crowd, on a scoreboard or a score graphic, among the staff behind the boards)
     is dropped.
Score of an instance = mean probability of its class over its mask before hole filling (1.0 for a
label map input); the parts of a size split keep their blob's score.

Masks leave at source resolution: `instance_records` maps each instance mask back to the source
frame (bilinear on the instance crop, pixel centres aligned) and run-length encodes it (COCO RLE
of the full frame, built from the crop only), so overlays and COCO evaluation work at source size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from scipy import ndimage

from playerseg.classes import TaskClasses
from playerseg.data.sample import Instance
from playerseg.metrics.rle import encode_crop
from playerseg.metrics.instance import semantic_to_instances
from playerseg.pitch import grass_around, pitch_mask


@dataclass
class PostprocessConfig:
    instance_classes: list[str] = field(default_factory=lambda: ["player", "led_board"])
    min_area_frac: float = 1e-4  # blobs under max(min_area_px, this fraction of the frame) are removed
    min_area_px: int = 8  # (pixels at model resolution)
    open_px: int = 1  # contour cleanup: radius of the opening (removes spurs), 0 = off
    close_px: int = 1  # radius of the closing (closes cracks), 0 = off
    fill_holes: bool = True
    convex_hull: bool = False
    split_on_led: bool = True  # split players merged across LED-board pixels
    split_led_threshold: float = 0.25
    # split player blobs that hold several players by their size: in a frame with at least
    # `size_fit_min_players` player blobs, the area one player has at each height of the frame is
    # fitted from its blobs (perspective: sqrt(area) linear in the blob's foot row); where there are
    # at least `split_size_min_players` (a wide shot: a close shot's few players at mixed depths fit
    # no perspective), a blob of at least this many times that area is cut into round(area /
    # expected) players by k-means on its pixels' (x * `split_size_xweight`, y): players that touch
    # stand mostly side by side. 0 = off. Chosen on the detection and Acme train splits
    # (benchmarks/bench_split.py --split train): see the README
    split_size: float = 1.8
    split_size_xweight: float = 3.0
    size_fit_min_players: int = 4
    split_size_min_players: int = 8
    split_size_max_height: float = 0.25  # only blobs shorter than this share of the frame (not close-ups)
    # ... and players under this share of that area are dropped (the ball, specks of a graphic or of
    # the crowd: far smaller than a player standing at that row), unless they touch the frame's edge
    # (a player the frame cuts; those stay out of the fit too). Chosen on the detection set's train
    # split (benchmarks/bench_split.py --split train): see the README; 0 = off
    min_size: float = 0.4
    # split player blobs where P(player) drops under this inside the blob (two touching players meet
    # in a valley of lower probability); 0 = off. First set to 0.9 on the detection set's held-out
    # matches (first broadcast model: recall 0.68 -> 0.73, precision 0.71 -> 0.73), then chosen again
    # on the detection and Acme train splits with every later step (0.93; README, "Post-processing")
    split_core: float = 0.93
    split_core_share: float = 0.15  # a core must hold this share of its blob to stand alone
    max_instances: int = 200  # per class and frame, largest first
    # players whose score (mean P(player) over the blob) is under this are dropped: the sunlit grass,
    # painted logos and crowd specks the model half believes. Chosen on the detection set's train split
    # (`benchmarks/bench_split.py --split train`): see the README; 0 = keep all
    min_player_score: float = 0.75
    # least share of grass in a player's surroundings (its box grown by half its height) where the
    # frame shows a pitch; 0 = off. Measured on the detection set's held-out matches
    # (benchmarks/bench_split.py): 0.2 raised people precision 0.73 -> 0.76 at the same recall
    on_pitch: float = 0.2
    # ... tested on players shorter than this share of the frame height: wide-shot players; a close-up
    # player fills the frame, with little grass around it
    on_pitch_max_height: float = 0.2
    # with a centre channel (the model's last output channel after the classes): a player blob of a
    # wide shot (not taller than `split_size_max_height` of the frame) that holds several local maxima
    # of P(centre) of at least this, `centre_radius` of the frame height apart, is cut between them
    # (each pixel to its nearest peak, x distances times `centre_xweight`); 0 = off. Chosen on the
    # detection set's train split (`benchmarks/bench_split.py --split train --only centres`): README
    centre_peak: float = 0.2
    centre_radius: float = 0.008
    centre_xweight: float = 2.0
    # ... and a wide-shot player blob whose highest P(centre) is under this is dropped: no person's
    # centre in it (sunlit grass, letters; the staff that the box labels leave out). 0 = off, the
    # default: at 0.25 players of leagues the centre head never saw were dropped too (README)
    centre_min: float = 0.0


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean_mask(mask: np.ndarray, open_px: int = 1, close_px: int = 1) -> np.ndarray:
    """Contour cleanup of an HxW bool mask: opening (spurs, specks) then closing (cracks)."""
    m = mask.astype(np.uint8)
    if open_px > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _disk(open_px))
    if close_px > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _disk(close_px))
    return m.astype(bool)


def components(mask: np.ndarray, min_area: int = 1) -> list[np.ndarray]:
    """8-connected components of a bool mask with at least `min_area` pixels, largest first
    (the simple conversion of `metrics.instance.semantic_to_instances`, reused)."""
    found = semantic_to_instances(mask.view(np.uint8), 1, min_area=min_area)
    return sorted((i.mask for i in found), key=lambda m: -int(m.sum()))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every hole of a mask (regions not connected to the outside)."""
    return ndimage.binary_fill_holes(mask)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a mask's pixels, as a mask."""
    pts = cv2.findNonZero(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.uint8)
    if pts is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool) | mask


def split_on_separator(mask: np.ndarray, separator: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Split one component where `separator` pixels cut it into cores of >= `min_area` pixels.

    Each core becomes a part; the separator pixels (and cores too small to stand alone) join the
    nearest core. Returns `[mask]` when fewer than two cores remain. Work on the component's crop.
    """
    cores = components(mask & ~separator, min_area)
    if len(cores) < 2:
        return [mask]
    seeds = np.zeros(mask.shape, np.int32)
    for i, core in enumerate(cores, 1):
        seeds[core] = i
    # Every pixel of the component takes the label of its nearest core pixel.
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    nearest = seeds[iy, ix]
    return [mask & (nearest == i) for i in range(1, len(cores) + 1)]


def split_on_centres(mask: np.ndarray, centre: np.ndarray, cfg: "PostprocessConfig", min_area: int,
                     radius: int) -> list[np.ndarray]:
    """Cut one component (a crop) between the peaks of the centre map inside it: local maxima of at
    least `cfg.centre_peak` over a window of `radius` pixels, on the map smoothed by a Gaussian of
    half that (a head's patchy response over one body counts once; so does a plateau);
    each pixel goes to its nearest peak, x distances weighted by `cfg.centre_xweight`. Peaks whose
    part would hold under `min_area` pixels are dropped. Returns `[mask]` when fewer than two remain."""
    c = np.where(mask, ndimage.gaussian_filter(centre.astype(np.float32), radius / 2), 0.0)
    size = 2 * radius + 1
    peak = (c >= cfg.centre_peak) & (c >= ndimage.maximum_filter(c, size=size))
    labels, n = ndimage.label(peak, np.ones((3, 3)))
    if n < 2:
        return [mask]
    peaks = np.array(ndimage.center_of_mass(peak, labels, range(1, n + 1)))  # (y, x)
    ys, xs = np.nonzero(mask)
    while len(peaks) >= 2:
        d = ((xs[:, None] - peaks[None, :, 1]) * cfg.centre_xweight) ** 2 + (ys[:, None] - peaks[None, :, 0]) ** 2
        nearest = d.argmin(1)
        counts = np.bincount(nearest, minlength=len(peaks))
        if counts.min() >= min_area:
            break
        peaks = np.delete(peaks, counts.argmin(), 0)
    if len(peaks) < 2:
        return [mask]
    parts = []
    for i in range(len(peaks)):
        part = np.zeros_like(mask)
        part[ys[nearest == i], xs[nearest == i]] = True
        parts.append(part)
    return parts


def expected_area(areas: np.ndarray, feet: np.ndarray) -> "Callable[[float], float]":
    """One player's area as a function of its foot row, fitted on a frame's player blobs: sqrt(area)
    linear in the foot row (perspective), least squares over the blobs under 1.5x the median area
    (the single players); the median area where fewer than 6 blobs or a non-increasing fit."""
    median = float(np.median(areas))
    single = areas < 1.5 * median
    if single.sum() >= 6 and np.ptp(feet[single]) > 0:
        b, a = np.polyfit(feet[single], np.sqrt(areas[single]), 1)
        if b >= 0:
            return lambda foot: max(median / 4, (a + b * foot) ** 2)
    return lambda foot: median


def split_by_size(found: list, frame_hw: tuple[int, int], cfg: "PostprocessConfig") -> list:
    """Cut player blobs (tight crop, x0, y0, score) of a wide shot that are several players' size into
    that many players (see `PostprocessConfig.split_size`); each part keeps its blob's score (the
    evidence that players stand there is the blob's). Deterministic (k-means from a fixed seed).
    Specks under `min_size` of their row's size go first, and the size is fitted again without them."""
    if (cfg.split_size <= 0 and cfg.min_size <= 0) or len(found) < cfg.size_fit_min_players:
        return found
    frame_h, frame_w = frame_hw
    areas = np.array([f[0].sum() for f in found], np.float64)
    feet = np.array([f[2] + f[0].shape[0] for f in found], np.float64)
    # players the frame cuts are smaller than their row's size: kept, and left out of the fit
    edge = np.array([x0 == 0 or y0 == 0 or x0 + c.shape[1] >= frame_w for c, x0, y0, _ in found]) | (feet >= frame_h)
    fit = ~edge if (~edge).sum() >= cfg.size_fit_min_players else np.ones(len(found), bool)
    expected = expected_area(areas[fit], feet[fit])
    if cfg.min_size > 0:  # specks out, then the fit again without them
        keep = edge | (areas >= cfg.min_size * np.array([expected(f) for f in feet]))
        found, areas, feet, fit = [v for v, k in zip(found, keep) if k], areas[keep], feet[keep], fit[keep]
        if fit.sum() >= cfg.size_fit_min_players:
            expected = expected_area(areas[fit], feet[fit])
    wide = len(found) >= cfg.split_size_min_players
    out = []
    for (crop, x0, y0, score), area, foot in zip(found, areas, feet):
        ref = expected(foot)
        k = min(5, int(round(area / ref)))
        if cfg.split_size <= 0 or not wide or area < cfg.split_size * ref or k < 2 or crop.shape[0] > cfg.split_size_max_height * frame_h:
            out.append((crop, x0, y0, score))
            continue
        ys, xs = np.nonzero(crop)
        pts = np.c_[xs * cfg.split_size_xweight, ys].astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        cv2.setRNGSeed(0)  # k-means++ seeding draws from OpenCV's RNG: the same parts every run
        _, labels, _ = cv2.kmeans(pts, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
        labels = labels.ravel()
        for c in range(k):
            if (labels == c).any():
                part = np.zeros_like(crop)
                part[ys[labels == c], xs[labels == c]] = True
                out.append((*_tight(part, x0, y0), score))
    return out


def _tight(crop: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, int, int]:
    rows, cols = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
    return crop[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], x0 + int(cols[0]), y0 + int(rows[0])


def postprocess(
    proba: np.ndarray, classes: TaskClasses, cfg: PostprocessConfig | None = None,
    image: np.ndarray | None = None,
) -> tuple[list[Instance], np.ndarray]:
    """CxHxW class probabilities (or an HxW label map) -> (instances, HxW uint8 semantic map).
    A (C+1)xHxW input carries a centre channel last (`Segmenter.predict_proba` of a centre-head model).

    `image`: the RGB frame (any size; the pitch test of step 5 needs it, skipped without it).

    Instances carry boxes (x0, y0, x1, y1) and HxW bool masks at the input's resolution. Every
    step after the connected components works on the component's crop (cost ~ object size).
    """
    cfg = cfg or PostprocessConfig()
    if proba.ndim == 2:
        semantic, proba, centre = proba.astype(np.uint8), None, None
    elif proba.ndim == 3 and proba.shape[0] in (len(classes), len(classes) + 1):
        proba, centre = proba[: len(classes)], (proba[len(classes)] if proba.shape[0] > len(classes) else None)
        semantic = proba.argmax(0).astype(np.uint8)
    else:
        raise ValueError(f"expected {len(classes)}xHxW probabilities or an HxW label map, got {proba.shape}")
    h, w = semantic.shape
    min_area = max(1, cfg.min_area_px, int(round(cfg.min_area_frac * h * w)))
    led = classes.led_board
    separator = None
    if cfg.split_on_led and proba is not None and led is not None:
        separator = proba[led] >= cfg.split_led_threshold
    grass = _pitch(image, (h, w)) if cfg.on_pitch > 0 and image is not None else None
    radius = max(1, int(round(cfg.centre_radius * h)))
    wide_h = cfg.split_size_max_height * h  # the centres are learnt from wide shots: not on close-ups
    instances: list[Instance] = []
    for name in cfg.instance_classes:
        cid = classes.get(name)
        if cid is None:
            continue
        mask = clean_mask(semantic == cid, cfg.open_px, cfg.close_px)
        found = []  # (crop, x0, y0)
        for comp in semantic_to_instances(mask.view(np.uint8), 1, min_area=min_area):
            x0, y0, x1, y1 = (int(v) for v in comp.box)
            crop = comp.mask[y0:y1, x0:x1]
            if separator is not None and cid != led:
                parts = split_on_separator(crop, separator[y0:y1, x0:x1], min_area)
            else:
                parts = [crop]
            if cfg.split_core > 0 and proba is not None and cid == classes.player:
                parts = [q for part in parts
                         for q in split_on_separator(part, proba[cid, y0:y1, x0:x1] < cfg.split_core,
                                                     max(min_area, int(cfg.split_core_share * part.sum())))]
            if centre is not None and cfg.centre_peak > 0 and cid == classes.player and y1 - y0 <= wide_h:
                parts = [q for part in parts
                         for q in split_on_centres(part, centre[y0:y1, x0:x1], cfg, min_area, radius)]
            found += [_tight(part, x0, y0) for part in parts]
        # (crop, x0, y0, score): the mean probability of the class over the blob's pixels
        found = [(c, x0, y0, float(proba[cid, y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]][c].mean())
                  if proba is not None else 1.0) for c, x0, y0 in found]
        if cid == classes.player:
            if centre is not None and cfg.centre_min > 0:  # a wide-shot player holds a person's centre
                peak = lambda c, x0, y0: float(centre[y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]][c].max())
                found = [f for f in found if f[0].shape[0] > wide_h or peak(*f[:3]) >= cfg.centre_min]
            if grass is not None:  # players stand on the pitch (before the frame's sizes are fitted)
                found = [f for f in found if f[0].shape[0] >= cfg.on_pitch_max_height * h
                         or grass_around(grass, (f[1], f[2], f[1] + f[0].shape[1], f[2] + f[0].shape[0])) >= cfg.on_pitch]
            found = split_by_size([f for f in found if f[3] >= cfg.min_player_score], (h, w), cfg)
        found.sort(key=lambda f: -int(f[0].sum()))
        for crop, x0, y0, score in found[: cfg.max_instances]:
            if cfg.fill_holes:
                crop = fill_holes(crop)
            if cfg.convex_hull:
                crop = convex_hull(crop)
            ch, cw = crop.shape
            m = np.zeros((h, w), bool)
            m[y0 : y0 + ch, x0 : x0 + cw] = crop
            box = (float(x0), float(y0), float(x0 + cw), float(y0 + ch))
            instances.append(Instance(class_id=cid, box=box, mask=m, label=name, score=score))
    return instances, semantic


def _pitch(image: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The frame's pitch mask at `size` (h, w); None when no pitch is in view (nothing to test)."""
    grass = pitch_mask(image, margin=0)
    if not grass.any():
        return None
    if grass.shape != size:
        grass = cv2.resize(grass.view(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return grass


def class_fractions(semantic: np.ndarray, classes: TaskClasses) -> dict[str, float]:
    """Fraction of the frame's pixels given to each class (the per-frame semantic summary)."""
    counts = np.bincount(semantic.ravel(), minlength=len(classes))[: len(classes)]
    return {name: float(c) / semantic.size for name, c in zip(classes.names, counts)}


def upsample_crop(mask: np.ndarray, box, height: int, width: int):
    """A model-resolution instance mask -> (crop, x0, y0) of its mask at `height`x`width`."""
    h, w = mask.shape
    sx, sy = width / w, height / h
    bx0, by0, bx1, by1 = (int(v) for v in box)
    if (sx, sy) == (1.0, 1.0):
        return mask[by0:by1, bx0:bx1], bx0, by0
    X0, Y0 = int(np.floor(bx0 * sx)), int(np.floor(by0 * sy))
    X1, Y1 = min(width, int(np.ceil(bx1 * sx))), min(height, int(np.ceil(by1 * sy)))
    # 1-pixel margin so bilinear interpolation sees the outside of the instance.
    cx0, cy0, cx1, cy1 = max(0, bx0 - 1), max(0, by0 - 1), min(w, bx1 + 1), min(h, by1 + 1)
    src = mask[cy0:cy1, cx0:cx1].astype(np.float32)
    # Inverse map: destination pixel (X0 + u) has its centre at source ((X0 + u + .5) / sx - .5).
    m = np.float32([[1 / sx, 0, (X0 + 0.5) / sx - 0.5 - cx0], [0, 1 / sy, (Y0 + 0.5) / sy - 0.5 - cy0]])
    up = cv2.warpAffine(
        src, m, (X1 - X0, Y1 - Y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return up >= 0.5, X0, Y0


def instance_records(instances: list[Instance], source_hw: tuple[int, int], classes: TaskClasses) -> list[dict]:
    """Instances at model resolution -> prediction records at source resolution
    (`video.schema.instance_record`: instance_id, class, score, bbox [x, y, w, h], area, RLE).
    Instances that vanish when mapped to the source size are dropped.
    """
    from playerseg.video.schema import instance_record

    height, width = source_hw
    rows = []
    for inst in instances:
        crop, x0, y0 = upsample_crop(inst.mask, inst.box, height, width)
        area = int(crop.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(crop)
        rle = encode_crop(crop, x0, y0, height, width)
        bbox = (x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        rows.append(instance_record(len(rows), classes.names[inst.class_id], inst.score, bbox, area, rle))
    return rows
