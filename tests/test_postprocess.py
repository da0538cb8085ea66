"""Post-processing: probabilities -> player / LED-board instances, and their RLE at source size."""
import dataclasses

import numpy as np
import pytest

from playerseg.classes import TaskClasses
from playerseg.infer.postprocess import (
    PostprocessConfig,
    class_fractions,
    instance_records,
    postprocess,
)
from playerseg.metrics import rle

CLASSES = TaskClasses()
BG, PLAYER, LED = 0, 1, 2


def probs(label: np.ndarray, led_extra: np.ndarray | None = None) -> np.ndarray:
    """Confident one-hot probabilities of a label map; `led_extra` adds LED-board evidence."""
    p = np.stack([(label == c).astype(np.float32) for c in range(3)]) * 0.9 + 0.05
    if led_extra is not None:
        p[LED][led_extra] = 0.4
        p[PLAYER][led_extra] = 0.55
        p[BG][led_extra] = 0.05
    return p


def two_players_bridged():
    label = np.zeros((64, 96), np.uint8)
    label[20:30, :] = LED  # the board behind them
    label[10:50, 20:34] = PLAYER
    label[10:50, 40:54] = PLAYER
    label[22:28, 34:40] = PLAYER  # bridge of player pixels across the board
    bridge = np.zeros_like(label, bool)
    bridge[22:28, 34:40] = True
    return label, bridge


def test_merged_players_split_where_led_board_separates_them():
    label, bridge = two_players_bridged()
    instances, _ = postprocess(probs(label, bridge), CLASSES)
    players = [i for i in instances if i.class_id == PLAYER]
    assert len(players) == 2
    # every player pixel lands in exactly one part
    merged, _ = postprocess(probs(label, bridge), CLASSES, PostprocessConfig(split_on_led=False, split_core=0))
    (whole,) = [i for i in merged if i.class_id == PLAYER]
    union = sum(p.mask.astype(int) for p in players)
    assert union.max() == 1 and ((union > 0) == whole.mask).all()
    xs = sorted(p.box[0] for p in players)
    assert xs[0] == 20 and xs[1] >= 34


def test_bridge_without_led_evidence_is_not_split():
    label, _ = two_players_bridged()
    instances, _ = postprocess(probs(label), CLASSES)
    assert len([i for i in instances if i.class_id == PLAYER]) == 1


def test_touching_players_split_at_the_valley_of_player_probability():
    label = np.zeros((64, 96), np.uint8)
    label[10:50, 20:34] = PLAYER
    label[10:50, 34:48] = PLAYER  # side by side, one blob
    p = probs(label)
    p[PLAYER, 10:50, 33:35] = 0.6  # where they touch the model is less sure
    p[BG, 10:50, 33:35] = 0.35
    split = [i for i in postprocess(p, CLASSES)[0] if i.class_id == PLAYER]
    assert sorted(i.box[0] for i in split) == [20, 33] or sorted(i.box[0] for i in split) == [20, 34]
    whole = [i for i in postprocess(p, CLASSES, PostprocessConfig(split_core=0))[0] if i.class_id == PLAYER]
    assert len(whole) == 1
    union = sum(i.mask.astype(int) for i in split)  # every pixel of the blob in exactly one part
    assert union.max() == 1 and ((union > 0) == whole[0].mask).all()
    p[PLAYER, 30:31, 20:48] = 0.6  # a thin dip across both: cores too small to stand alone are not cut
    p[PLAYER, 10:50, 33:35] = 0.95
    assert len([i for i in postprocess(p, CLASSES)[0] if i.class_id == PLAYER]) == 1


def _wide_shot():
    """A 200 x 320 wide shot: crowd above row 60, grass below; a player on the grass, a player-like
    blob in the crowd, and a close-up-sized player (over a fifth of the frame high) in the crowd."""
    rng = np.random.default_rng(1)
    image = np.zeros((200, 320, 3), np.uint8)
    image[:60] = rng.integers(40, 220, (60, 320, 3), dtype=np.uint8)
    image[60:] = (40, 130, 50)
    label = np.zeros((200, 320), np.uint8)
    label[120:150, 100:110] = PLAYER  # on the pitch
    label[20:40, 200:208] = PLAYER  # in the crowd
    label[5:58, 20:40] = PLAYER  # tall: 53 of 200 rows
    image[label == PLAYER] = (200, 30, 30)
    return image, label


def test_players_must_stand_on_the_pitch_when_the_frame_shows_one():
    image, label = _wide_shot()
    boxes = lambda inst: sorted(i.box[:2] for i in inst if i.class_id == PLAYER)
    found, _ = postprocess(probs(label), CLASSES, PostprocessConfig(), image)
    assert boxes(found) == [(20.0, 5.0), (100.0, 120.0)]  # the crowd blob is gone, the tall one stays
    assert len(boxes(postprocess(probs(label), CLASSES, PostprocessConfig(on_pitch=0), image)[0])) == 3
    assert len(boxes(postprocess(probs(label), CLASSES)[0])) == 3  # no frame, no test
    no_pitch = np.full_like(image, 128)  # no grass in view (a close-up, the crowd): nothing is tested
    assert len(boxes(postprocess(probs(label), CLASSES, PostprocessConfig(), no_pitch)[0])) == 3
    half, _ = postprocess(probs(label[::2, ::2]), CLASSES, PostprocessConfig(), image)  # frame at another size
    assert len(boxes(half)) == 2


def test_components_small_blobs_and_classes():
    label = np.zeros((100, 100), np.uint8)
    label[10:40, 10:20] = PLAYER
    label[10:40, 60:70] = PLAYER
    label[80:82, 80:82] = PLAYER  # 4 px speck, removed by the opening / min area
    label[50:60, :] = LED
    cfg = PostprocessConfig(min_area_frac=0.002)  # 20 px
    instances, semantic = postprocess(probs(label), CLASSES, cfg)
    assert sorted(i.class_id for i in instances) == [PLAYER, PLAYER, LED]
    assert all(0.9 < i.score <= 0.951 for i in instances)
    assert semantic.shape == (100, 100) and semantic[15, 15] == PLAYER
    big = PostprocessConfig(min_area_frac=0.05)  # 500 px: only the board survives
    assert [i.class_id for i in postprocess(probs(label), CLASSES, big)[0]] == [LED]


def test_hole_filling_and_convex_hull_options():
    label = np.zeros((64, 64), np.uint8)
    label[10:40, 10:40] = PLAYER
    label[20:30, 20:30] = BG  # a hole
    off = PostprocessConfig(fill_holes=False, open_px=0, close_px=0)
    (inst,), _ = postprocess(label, CLASSES, off)
    assert inst.mask.sum() == 900 - 100 and inst.score == 1.0  # label map input: score 1
    (filled,), _ = postprocess(label, CLASSES, PostprocessConfig(open_px=0, close_px=0))
    assert filled.mask.sum() == 900

    ell = np.zeros((64, 64), np.uint8)
    ell[10:40, 10:16] = PLAYER
    ell[34:40, 10:40] = PLAYER
    (plain,), _ = postprocess(ell, CLASSES, off)
    (hull,), _ = postprocess(ell, CLASSES, PostprocessConfig(convex_hull=True, open_px=0, close_px=0))
    assert hull.mask.sum() > plain.mask.sum() + 250 and hull.mask[plain.mask].all()


def test_contour_cleanup_removes_spurs():
    label = np.zeros((64, 64), np.uint8)
    label[10:40, 10:30] = PLAYER
    label[20, 30:45] = PLAYER  # one-pixel-wide spur
    (inst,), _ = postprocess(label, CLASSES)
    assert not inst.mask[20, 32:45].any() and inst.box[2] <= 31


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="probabilities"):
        postprocess(np.zeros((2, 8, 8), np.float32), CLASSES)
    with pytest.raises(ValueError, match="probabilities"):
        postprocess(np.zeros((5, 8, 8), np.float32), CLASSES)


def test_class_fractions():
    label = np.zeros((10, 10), np.uint8)
    label[:2] = PLAYER
    label[2:3] = LED
    f = class_fractions(label, CLASSES)
    assert f == {"background": 0.7, "player": 0.2, "led_board": 0.1}


def test_encode_crop_of_any_crop_equals_full_frame_encoding():
    """`rle.encode_crop` (what `instance_records` encodes with) of crops not cut tight to the mask."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(3, 30, 2)
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        crop = rng.random((rng.integers(1, h - y0 + 1), rng.integers(1, w - x0 + 1))) > 0.5
        full = np.zeros((h, w), bool)
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        assert rle.encode_crop(crop, int(x0), int(y0), int(h), int(w)) == rle.encode(full)


def test_instance_records_at_source_resolution():
    label = np.zeros((36, 64), np.uint8)
    label[6:30, 10:20] = PLAYER
    instances, _ = postprocess(label, CLASSES)
    (row,) = instance_records(instances, (360, 640), CLASSES)  # 10x the model resolution
    assert row["class"] == "player" and row["instance_id"] == 0
    assert row["mask_rle_size"] == [360, 640]
    mask = rle.decode({"size": row["mask_rle_size"], "counts": row["mask_rle_counts"]})
    expected = np.zeros((360, 640), bool)
    expected[60:300, 100:200] = True
    iou = (mask & expected).sum() / (mask | expected).sum()
    assert iou > 0.97 and row["area"] == mask.sum()
    assert row["bbox"] == [100.0, 60.0, 100.0, 240.0]


def perspective_shot():
    """A 360x640 wide shot (label map) and its player boxes: eight single players whose size grows
    with their foot row (perspective) and two players side by side, touching (one blob), feet at 330."""
    label = np.zeros((360, 640), np.uint8)
    truth = []

    def player(x: int, foot: int) -> None:
        h = int(16 + 0.08 * foot)
        w = h * 2 // 5
        label[foot - h: foot, x: x + w] = PLAYER
        truth.append((float(x), float(foot - h), float(x + w), float(foot)))
        return w

    for i, foot in enumerate(range(150, 310, 20)):
        player(20 + 75 * i, foot)
    w = player(300, 330)
    player(300 + w, 330)  # no gap: the pair is one blob
    return label, truth


def player_boxes(instances) -> list[tuple]:
    return sorted(tuple(i.box) for i in instances if i.class_id == PLAYER)


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_touching_players_of_a_wide_shot_are_split_by_their_size():
    label, truth = perspective_shot()
    cfg = PostprocessConfig(split_core=0, on_pitch=0)
    off = player_boxes(postprocess(label, CLASSES, dataclasses.replace(cfg, split_size=0))[0])
    on = player_boxes(postprocess(label, CLASSES, cfg)[0])
    assert len(off) == len(truth) - 1  # the pair is one blob
    assert len(on) == len(truth)
    for t in truth:  # every player, the pair's two included, found at box IoU >= 0.7
        assert max(box_iou(t, b) for b in on) >= 0.7
    assert on == player_boxes(postprocess(label, CLASSES, cfg)[0])  # deterministic


def test_size_split_leaves_close_ups_and_sparse_frames_whole():
    label, _ = perspective_shot()
    label[20:300, 500:620] = PLAYER  # a close-up player: taller than split_size_max_height of the frame
    cfg = PostprocessConfig(split_core=0, on_pitch=0)
    found = player_boxes(postprocess(label, CLASSES, cfg)[0])
    assert (500.0, 20.0, 620.0, 300.0) in found
    few = np.zeros((360, 640), np.uint8)
    few[200:230, 100:112] = few[200:230, 200:212] = PLAYER
    few[250:285, 300:328] = PLAYER  # twice a player's size, but only three blobs: nothing to fit
    assert len(player_boxes(postprocess(few, CLASSES, cfg)[0])) == 3
    few[210:240, 400:412] = few[220:250, 500:512] = PLAYER  # five blobs: fitted, but not a wide shot's crowd
    assert len(player_boxes(postprocess(few, CLASSES, cfg)[0])) == 5
    assert len(player_boxes(postprocess(few, CLASSES, dataclasses.replace(cfg, split_size_min_players=4))[0])) > 5


def test_specks_far_smaller_than_a_player_at_their_row_are_dropped_unless_the_frame_cuts_them():
    label, truth = perspective_shot()
    label[240:246, 200:206] = PLAYER  # a ball-sized speck among players of ~500 px at that row
    label[240:246, 0:6] = PLAYER  # the same at the frame's edge: a player the frame cuts
    cfg = PostprocessConfig(split_core=0, on_pitch=0)
    found = player_boxes(postprocess(label, CLASSES, cfg)[0])
    assert (200.0, 240.0, 206.0, 246.0) not in found
    assert (0.0, 240.0, 6.0, 246.0) in found
    assert len(found) == len(truth) + 1
    kept = player_boxes(postprocess(label, CLASSES, dataclasses.replace(cfg, min_size=0))[0])
    assert (200.0, 240.0, 206.0, 246.0) in kept


def test_players_the_model_half_believes_are_dropped():
    label = np.zeros((64, 96), np.uint8)
    label[10:40, 10:20] = label[10:40, 60:70] = PLAYER
    p = probs(label)
    p[PLAYER, 10:40, 60:70], p[BG, 10:40, 60:70] = 0.6, 0.35  # player wins the argmax, but weakly
    kept = player_boxes(postprocess(p, CLASSES)[0])
    assert kept == [(10.0, 10.0, 20.0, 40.0)]
    assert len(player_boxes(postprocess(p, CLASSES, PostprocessConfig(min_player_score=0))[0])) == 2


def test_players_overlapping_in_depth_are_cut_between_their_centre_peaks():
    """One blob, two people (one half behind the other) in a wide shot: a model's centre channel with
    two peaks cuts it between them; a weak second peak, no centre channel, or a close-up (the centres
    are learnt from wide shots) leave it whole."""
    label = np.zeros((200, 96), np.uint8)
    label[10:46, 30:44] = PLAYER
    label[18:54, 38:52] = PLAYER  # behind-and-beside: one connected blob (44 of 200 rows), no valley
    p = probs(label)
    yy, xx = np.mgrid[:200, :96]
    centre = np.zeros((200, 96), np.float32)
    for cy, cx in ((28, 37), (36, 45)):
        centre = np.maximum(centre, np.exp(-((xx - cx) ** 2 / 8 + (yy - cy) ** 2 / 30)))
    players = lambda q, **kw: [i for i in postprocess(q, CLASSES, PostprocessConfig(**kw))[0] if i.class_id == PLAYER]
    split = players(np.concatenate([p, centre[None]]))
    assert len(split) == 2
    assert sorted(i.box[0] for i in split)[0] == 30 and sorted(i.box[2] for i in split)[1] == 52
    (whole,) = players(p)  # no centre channel: one player
    union = sum(i.mask.astype(int) for i in split)
    assert union.max() == 1 and ((union > 0) == whole.mask).all()  # every pixel in one part
    assert len(players(np.concatenate([p, centre[None]]), centre_peak=0)) == 1  # off
    weak = centre * np.where(xx > 41, 0.1, 1.0)  # the second peak under the threshold
    assert len(players(np.concatenate([p, weak[None]]))) == 1
    close_up = np.concatenate([p, centre[None]])[:, :64]  # the same blob fills 44 of 64 rows
    assert len(players(close_up)) == 1
    # a blob without any centre is no person (`centre_min`), unless it is close-up sized
    assert len(players(np.concatenate([p, 0.05 * centre[None]]), centre_min=0.2)) == 0
    assert len(players(np.concatenate([p, 0.05 * centre[None]])[:, :64], centre_min=0.2)) == 1
