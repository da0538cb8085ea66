"""Metrics: hand-computed tiny cases, agreement with pycocotools, and real Acme masks."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.sample import Instance, Sample
from playerseg.io import shared_data_dir
from playerseg.metrics import rle
from playerseg.metrics.boundary import boundary_f, boundary_precision_recall, mask_boundary
from playerseg.metrics.instance import (InstanceMeter, detections_from_instances, instance_ap,
                                        semantic_to_detections, semantic_to_instances, write_coco_results)
from playerseg.metrics.semantic import (SegmentationMeter, confusion_matrix, dice_from_confusion,
                                        iou_from_confusion, players_over_led_iou, scale_radius)

C = TaskClasses()  # background 0, player 1, led_board 2
I = IGNORE_INDEX
ACME = shared_data_dir() / "acme-football-semseg"

# --------------------------------------------------------------------------- semantic

TARGET = np.array([[0, 0, 1, 1],
                   [2, 2, 1, I]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [2, 0, 2, 0]], dtype=np.uint8)
# valid (truth, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,2); the ignored pixel is dropped
#   background: TP 1, predicted 2, true 2 -> IoU 1/(2+2-1) = 1/3, Dice 2/4 = 1/2
#   player:     TP 2, predicted 3, true 3 -> IoU 2/4 = 1/2,      Dice 4/6 = 2/3
#   led_board:  TP 1, predicted 2, true 2 -> IoU 1/3,            Dice 1/2
#   miou over non-background classes: (1/2 + 1/3) / 2 = 5/12


def test_confusion_iou_dice_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_allclose(iou_from_confusion(cm), [1 / 3, 1 / 2, 1 / 3])
    np.testing.assert_allclose(dice_from_confusion(cm), [1 / 2, 2 / 3, 1 / 2])
    m = SegmentationMeter(C)
    m.update(PRED, TARGET)
    out = m.compute()
    assert out["miou"] == pytest.approx(5 / 12)
    assert out["iou/player"] == pytest.approx(0.5) and out["dice/player"] == pytest.approx(2 / 3)


def test_ignored_pixels_count_for_nothing():
    # whatever is predicted on the ignored pixel, nothing changes
    other = PRED.copy()
    other[1, 3] = 1
    np.testing.assert_array_equal(confusion_matrix(other, TARGET, 3), confusion_matrix(PRED, TARGET, 3))


def test_out_of_range_ids_are_errors():
    with pytest.raises(ValueError, match="prediction ids"):
        confusion_matrix(np.full((2, 2), 3, np.uint8), np.zeros((2, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="target ids"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), 7, np.uint8), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 3)


def test_absent_class_is_nan_not_one_or_zero():
    t = np.array([[0, 1], [1, 0]], np.uint8)
    m = SegmentationMeter(C)
    row = m.update(t, t)[0]
    assert math.isnan(row["iou/led_board"]) and math.isnan(row["dice/led_board"])
    assert math.isnan(row["boundary_f/led_board"]) and math.isnan(row["players_over_led_iou"])
    assert row["iou/player"] == 1.0 and row["miou"] == 1.0  # miou skips the absent class
    # predicted but not true: 0, not NaN
    p = t.copy()
    p[0, 0] = 2
    assert m.update(p, t)[0]["iou/led_board"] == 0.0
    # dataset level: the led column was measured once (0.0) -> 0.0
    assert m.compute()["iou/led_board"] == 0.0


# players over LED, one row of 9 pixels, board at x=4, radius 2 -> region R = x 2..6
T_ROW = np.array([[0, 1, 1, 0, 2, 0, 1, 1, 0]], np.uint8)
P_ROW = np.array([[0, 1, 0, 1, 2, 0, 1, 0, 0]], np.uint8)
# in R: true players {2, 6}, predicted players {3, 6} -> IoU 1/3; x 1, 7 (outside R) do not count


def test_players_over_led_by_hand():
    assert players_over_led_iou(P_ROW, T_ROW, 1, 2, radius=2) == pytest.approx(1 / 3)
    # radius 1 -> R = x 3..5, no player there in truth or prediction but x=3 predicted -> 0/1
    assert players_over_led_iou(P_ROW, T_ROW, 1, 2, radius=1) == 0.0
    # radius 3 -> R = x 1..7: truth {1,2,6,7}, pred {1,3,6} -> inter {1,6} = 2, union {1,2,3,6,7} = 5
    assert players_over_led_iou(P_ROW, T_ROW, 1, 2, radius=3) == pytest.approx(2 / 5)
    # no board -> NaN
    assert math.isnan(players_over_led_iou(P_ROW, np.where(T_ROW == 2, 0, T_ROW), 1, 2, radius=2))
    # an ignored pixel inside R drops out: make x=2 ignored -> truth {6}, pred {3, 6} -> 1/2
    t = T_ROW.copy()
    t[0, 2] = I
    assert players_over_led_iou(P_ROW, t, 1, 2, radius=2) == pytest.approx(1 / 2)


def test_players_over_led_region_is_euclidean_disk():
    # board pixel at the centre of 7x7; radius 2 -> disk: (dx,dy) with dx^2+dy^2 <= 4 = 13 pixels
    t = np.zeros((7, 7), np.uint8)
    t[3, 3] = 2
    t[3 + 1, 3 + 1] = 1  # diagonal neighbour, distance sqrt(2) <= 2: inside
    t[3 + 2, 3 + 2] = 1  # distance sqrt(8) > 2: outside
    p = np.zeros_like(t)
    p[3 + 2, 3 + 2] = 1  # only the outside player found
    assert players_over_led_iou(p, t, 1, 2, radius=2) == 0.0  # inside player missed, outside ignored
    p[4, 4] = 1
    assert players_over_led_iou(p, t, 1, 2, radius=2) == 1.0


def test_meter_dataset_level_sums_and_image_mean():
    m = SegmentationMeter(C, led_radius=2)
    m.update(P_ROW, T_ROW)                    # players-over-LED inter 1, union 3
    m.update(T_ROW, T_ROW)                    # inter 2, union 2
    m.update(np.zeros((1, 9), np.uint8), np.zeros((1, 9), np.uint8))  # no board: NaN, adds nothing
    assert m.compute()["players_over_led_iou"] == pytest.approx(3 / 5)
    assert m.compute_image_mean()["players_over_led_iou"] == pytest.approx((1 / 3 + 1) / 2)
    assert len(m.per_image()) == 3 and math.isnan(m.per_image()[2]["players_over_led_iou"])


def test_meter_keys_batches_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, (3, 32, 40)).astype(np.uint8)
    t[0, :2] = I
    p = rng.integers(0, 3, (3, 32, 40)).astype(np.uint8)
    one, batch = SegmentationMeter(C), SegmentationMeter(C)
    for i in range(3):
        one.update(p[i], t[i])
    batch.update(torch.from_numpy(p), torch.from_numpy(t), ids=["a", "b", "c"])
    assert set(batch.compute()) == {"iou/background", "iou/player", "iou/led_board", "dice/background",
                                    "dice/player", "dice/led_board", "miou", "boundary_f/player",
                                    "boundary_f/led_board", "players_over_led_iou"}
    assert batch.compute() == pytest.approx(one.compute(), nan_ok=True)
    np.testing.assert_equal(batch.per_image(), one.per_image())
    assert set(batch.per_image()[0]) == set(batch.compute()) == set(batch.compute_image_mean())
    assert batch.image_ids == ["a", "b", "c"]


def test_scale_radius():
    assert scale_radius(15, 1080) == 15 and scale_radius(15, 540) == 8 and scale_radius(15, 20) == 1
    m = SegmentationMeter(C, led_radius=4, reference_height=18)  # 9-pixel-tall maps -> radius 2
    t = np.repeat(T_ROW, 9, axis=0)
    p = np.repeat(P_ROW, 9, axis=0)
    assert m.update(p, t)[0]["players_over_led_iou"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- boundary


def _square(x0, y0, size=4, shape=(10, 10)):
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_boundary_by_hand():
    truth = _square(2, 2)  # rows/cols 2..5; boundary = 12-pixel perimeter
    assert mask_boundary(truth).sum() == 12
    # shifted right by 1: 6 of 12 boundary pixels coincide; every pixel is within 1 px
    assert boundary_precision_recall(_square(3, 2), truth, tol=0) == pytest.approx((0.5, 0.5))
    assert boundary_f(_square(3, 2), truth, tol=1) == pytest.approx(1.0)
    # shifted by 2 (cols 4..7): within 1 px of the truth outline are row 2 and 5 at cols 4,5,6 (6)
    # and col 4 rows 3,4 (2) -> 8 of 12; symmetric for recall -> F = 2/3
    assert boundary_precision_recall(_square(4, 2), truth, tol=1) == pytest.approx((2 / 3, 2 / 3))
    assert boundary_f(_square(4, 2), truth, tol=1) == pytest.approx(2 / 3)
    assert boundary_f(_square(4, 2), truth, tol=2) == pytest.approx(1.0)


def test_boundary_edge_cases():
    empty = np.zeros((10, 10), bool)
    assert math.isnan(boundary_f(empty, empty))
    assert boundary_f(empty, _square(2, 2)) == 0.0 and boundary_f(_square(2, 2), empty) == 0.0
    # the frame edge is not an outline: rows 0-1 filled -> only row 1 is boundary
    top = np.zeros((4, 4), bool)
    top[:2] = True
    np.testing.assert_array_equal(np.flatnonzero(mask_boundary(top).any(1)), [1])
    assert mask_boundary(top).sum() == 4
    # predicted outline on ignored pixels is not counted against precision
    pred = _square(2, 2) | _square(6, 6, size=2)
    valid = ~_square(6, 6, size=2)
    assert boundary_precision_recall(pred, _square(2, 2), tol=0, valid=valid) == pytest.approx((1.0, 1.0))


# --------------------------------------------------------------------------- instances


def test_semantic_to_instances():
    cm = np.zeros((20, 20), np.uint8)
    cm[2:6, 2:6] = 1          # 16 px
    cm[6, 6] = 1              # touches diagonally -> same component under 8-connectivity (17 px)
    cm[10:13, 10:18] = 1      # 24 px
    cm[18, 0] = 1             # 1 px, below min_area
    cm[15:18, 15:18] = 2      # other class
    inst = semantic_to_instances(cm, 1, min_area=4)
    assert [(i.box, int(i.mask.sum())) for i in inst] == [((2.0, 2.0, 7.0, 7.0), 17), ((10.0, 10.0, 18.0, 13.0), 24)]
    assert all(i.class_id == 1 and i.score == 1.0 for i in inst)
    four = semantic_to_instances(cm, 1, min_area=4, connectivity=4)  # the diagonal pixel splits off
    assert [(i.box, int(i.mask.sum())) for i in four] == [((2.0, 2.0, 6.0, 6.0), 16), ((10.0, 10.0, 18.0, 13.0), 24)]
    assert len(semantic_to_instances(cm, 1, min_area=1, connectivity=4)) == 4
    scores = np.zeros((20, 20), np.float32)
    scores[10:13, 10:18] = 0.25
    assert semantic_to_instances(cm, 1, min_area=4, score_map=scores)[1].score == pytest.approx(0.25)


def test_rle_from_columns_and_crops_equals_pycocotools():
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = np.zeros((37, 53), bool)
        y0, x0 = rng.integers(0, 30), rng.integers(0, 45)
        m[y0:y0 + rng.integers(1, 8), x0:x0 + rng.integers(1, 9)] = rng.random() < 0.9
        m &= rng.random(m.shape) < 0.8
        reference = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert rle.encode(m)["counts"] == reference
        ys, xs = np.nonzero(m) if m.any() else (np.array([0]), np.array([0]))
        crop = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert rle.encode_crop(crop, int(xs.min()), int(ys.min()), 37, 53)["counts"] == reference
    for full in (np.zeros((5, 4), bool), np.ones((5, 4), bool)):
        assert np.array_equal(rle.decode(rle.encode(full)), full)


def test_semantic_to_detections_equals_instances_route():
    rng = np.random.default_rng(4)
    cm = (rng.random((40, 60)) < 0.3).astype(np.uint8) + (rng.random((40, 60)) < 0.1)
    scores = rng.random((40, 60)).astype(np.float32)
    direct = semantic_to_detections(cm, 1, "f", min_area=3, score_map=scores)
    via = detections_from_instances(semantic_to_instances(cm, 1, min_area=3, score_map=scores), "f")
    assert len(direct) > 3 and direct == via


def _sample(masks, sid="img0", shape=(64, 64)):
    inst = [Instance(class_id=c, box=_box(m), mask=m) for c, m in masks]
    return Sample(id=sid, image=np.zeros((*shape, 3), np.uint8), instances=inst)


def _box(m):
    ys, xs = np.nonzero(m)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_ap_perfect_and_shifted(tmp_path):
    gt = _square(10, 10, size=10, shape=(64, 64))
    s = _sample([(1, gt)])
    perfect = detections_from_instances(s.instances, "img0")
    for iou_type in ("segm", "bbox"):
        assert instance_ap([s], perfect, iou_type) == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    # shifted 2 px right: overlap 10x8 = 80, union 120 -> IoU 2/3 for mask and box alike. A true
    # positive at the COCO thresholds .50 .55 .60 .65 (4 of 10) -> AP50 = 1, AP75 = 0, AP = 0.4
    shifted = [Instance(1, (12.0, 10.0, 22.0, 20.0), _square(12, 10, size=10, shape=(64, 64)))]
    dets = detections_from_instances(shifted, 0)  # image id by position works too
    for iou_type in ("segm", "bbox"):
        assert instance_ap([s], dets, iou_type) == pytest.approx({"AP": 0.4, "AP50": 1.0, "AP75": 0.0})
    # wrong class: no match; per-class AP names task classes
    wrong = [dict(d, category_id=2) for d in dets]
    out = instance_ap([s], wrong, "segm", per_class=True)
    assert out["AP"] == 0.0 and out["AP/player"] == 0.0 and math.isnan(out["AP/led_board"])
    # no detections at all -> 0; no truth at all -> NaN
    assert instance_ap([s], [], "segm")["AP"] == 0.0
    assert math.isnan(instance_ap([_sample([])], [], "bbox")["AP"])
    # results JSON round-trips through pycocotools-compatible RLE strings
    write_coco_results(str(tmp_path / "res.json"), perfect)
    import json
    loaded = json.loads((tmp_path / "res.json").read_text())
    assert np.array_equal(rle.decode(loaded[0]["segmentation"]), gt)


def test_instance_meter_errors():
    m = InstanceMeter(C)
    m.add_ground_truth(Sample(id="boxes", image=np.zeros((8, 8, 3), np.uint8),
                              instances=[Instance(1, (0.0, 0.0, 4.0, 4.0))]))
    with pytest.raises(ValueError, match="boxes only"):
        m.compute("segm")
    with pytest.raises(KeyError, match="no ground truth"):
        m.add_detections([{"image_id": "other", "category_id": 1, "score": 1.0, "bbox": [0, 0, 1, 1]}])
    m.add_detections([{"image_id": "boxes", "category_id": 1, "score": 0.9, "bbox": [0, 0, 4, 4]}])
    assert m.compute("bbox")["AP"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- real masks

realdata = pytest.mark.skipif(not (ACME / "classes.json").is_file(), reason=f"{ACME} not present")


@pytest.fixture(scope="module")
def acme_samples():
    from playerseg.data.acme import AcmeReader

    reader = AcmeReader(str(ACME))
    return [reader.load(k) for k in reader.keys()[:3]]


@pytest.mark.realdata
@realdata
def test_real_self_ap(acme_samples):
    assert all(len(s.instance_masks()) > 0 for s in acme_samples)
    dets = [d for s in acme_samples for d in detections_from_instances(s.instances, s.id)]
    for iou_type in ("segm", "bbox"):
        assert instance_ap(acme_samples, dets, iou_type) == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0})


@pytest.mark.realdata
@realdata
def test_real_semantic_meter(acme_samples):
    m = SegmentationMeter(C)
    for s in acme_samples:
        perfect = m.update(np.where(s.semantic == I, 0, s.semantic), s.semantic)[0]
        assert perfect["iou/player"] == 1.0 and perfect["boundary_f/player"] == 1.0
    # players shrunk by erosion: player IoU and players-over-LED IoU drop below 1
    worse = SegmentationMeter(C)
    for s in acme_samples:
        pred = np.where(s.semantic == I, 0, s.semantic)
        player = cv2.erode((pred == 1).view(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        pred[(pred == 1) & ~player] = 0
        worse.update(pred, s.semantic)
    out = worse.compute()
    assert 0 < out["iou/player"] < 1 and 0 < out["players_over_led_iou"] < 1
    assert out["iou/led_board"] == 1.0


def _dist(boundary):
    return cv2.distanceTransform((~boundary).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def test_boundary_window_matches_full_frame_distance_transform():
    # the windowed dilation must agree with an exact distance transform over the whole frame
    rng = np.random.default_rng(3)
    for tol in (1, 2, 3.5):
        for _ in range(5):
            pred = cv2.dilate((rng.random((60, 80)) < 0.01).view(np.uint8), np.ones((5, 7), np.uint8)).astype(bool)
            truth = np.zeros_like(pred)
            truth[rng.integers(0, 40):, rng.integers(0, 60):rng.integers(60, 81)] = True
            bp, bt = mask_boundary(pred), mask_boundary(truth)
            expected = ((_dist(bt)[bp] <= tol + 1e-3).mean(), (_dist(bp)[bt] <= tol + 1e-3).mean())
            assert boundary_precision_recall(pred, truth, tol) == pytest.approx(expected)
