"""Several labelled sets at once, each for what it labels: the LabelMe reader, `Sample.labels`,
class sets per pixel, partial-label and box losses, per-source metrics, whole-match splits and the
model's resolution policy."""
from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
import torch

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.errors import DataError, Failures
from playerseg.data.labelme import LabelmeReader
from playerseg.data.registry import DataConfig, SourceConfig, build_reader, iter_samples
from playerseg.data.sample import BOX, NONE, PIXEL, Instance, Sample
from playerseg.data.targets import known_classes
from playerseg.pitch import pitch_mask
from playerseg.losses import LossConfig, PartialLabelLoss, box_projection, exact_target, set_nll
from playerseg.metrics.sources import SourceMeter, match_boxes, occluded_board
from playerseg.models.preprocess import Preprocess

C = TaskClasses()
BG, PLAYER, LED = 1, 2, 4  # class-set bits


def _labelme(folder, stem, shapes, size=(64, 48), image_size=None):
    w, h = size
    iw, ih = image_size or size
    img = np.full((ih, iw, 3), 90, np.uint8)
    cv2.imwrite(str(folder / f"{stem}.jpg"), img)
    doc = {"version": "5.8.3", "shapes": shapes, "imagePath": f"{stem}.jpg", "imageData": None,
           "imageHeight": h, "imageWidth": w}
    (folder / f"{stem}.json").write_text(json.dumps(doc))


def _board(points):
    return {"label": "billboard", "points": points, "shape_type": "polygon", "group_id": 1}


@pytest.fixture()
def labelme_dir(tmp_path):
    clip = tmp_path / "clip_a"
    clip.mkdir()
    _labelme(clip, "frame_000000", [_board([[0, 10], [63, 10], [63, 20], [0, 20]])])
    _labelme(clip, "frame_000005", [_board([[0, 10], [20, 10], [20, 20], [0, 20]]),
                                    _board([[30, 10], [63, 10], [63, 20], [30, 20]]),
                                    {"label": "ball", "points": [[1, 1], [3, 1], [3, 3]], "shape_type": "polygon"}])
    _labelme(clip, "frame_000010", [_board([[0, 10], [5, 10]])])                   # 2 points
    (clip / "frame_000015.json").write_text("{not json")                            # broken JSON
    _labelme(clip, "frame_000020", [], size=(64, 48), image_size=(32, 24))          # other size
    _labelme(clip, "frame_000025", [])
    (clip / "frame_000025.jpg").unlink()                                            # image missing
    return tmp_path


def test_labelme_reader_paints_boards_and_says_what_it_labels(labelme_dir):
    reader = LabelmeReader(str(labelme_dir), C)
    assert reader.keys()[0] == "clip_a/frame_000000" and reader.group("clip_a/frame_000005") == "clip_a"
    s = reader.load("clip_a/frame_000005")
    assert s.labels == {"led_board": PIXEL, "background": PIXEL} and s.label_kind("player") == NONE
    assert (s.semantic[12:19, 2:18] == C.led_board).all() and (s.semantic[12:19, 23:28] == 0).all()
    assert [i.class_id for i in s.instances] == [C.led_board, C.led_board]  # `ball` is not mapped: dropped
    assert s.frame_index == 5


def test_labelme_bad_inputs_are_named_and_skipped(labelme_dir):
    reader = LabelmeReader(str(labelme_dir), C)
    failures = Failures()
    got = [s.id for s in iter_samples(reader, failures)]
    assert got == ["clip_a/frame_000000", "clip_a/frame_000005"]
    errors = dict(failures.items)
    assert "at least 3" in errors["clip_a/frame_000010"] and "frame_000010.json" in errors["clip_a/frame_000010"]
    assert "not valid JSON" in errors["clip_a/frame_000015"]
    assert "64x48" in errors["clip_a/frame_000020"] and "32x24" in errors["clip_a/frame_000020"]
    assert "image file missing" in errors["clip_a/frame_000025"]


def test_data_errors_survive_pickling():
    e = pickle.loads(pickle.dumps(DataError("a/b.json", "broken", line=3)))
    assert isinstance(e, DataError) and str(e) == "a/b.json:3: broken" and e.line == 3


def test_class_sets_use_only_what_each_source_labels(labelme_dir):
    epl = LabelmeReader(str(labelme_dir), C).load("clip_a/frame_000000")
    allowed, boxes, _ = known_classes(epl, C)
    assert (allowed[12:19] == LED).all() and (allowed[30:] == BG | PLAYER).all() and len(boxes) == 0

    sem = np.array([[0, 1, 2, IGNORE_INDEX]], np.uint8)
    full = Sample("f", np.zeros((1, 4, 3), np.uint8), semantic=sem, labels={n: PIXEL for n in C.names})
    assert known_classes(full, C)[0].tolist() == [[BG, PLAYER, LED, 7]]

    det = Sample("d", np.zeros((10, 10, 3), np.uint8), instances=[Instance(C.player, (2, 2, 5, 8))],
                 labels={"player": BOX})
    allowed, boxes, box_classes = known_classes(det, C)
    assert (allowed[2:8, 2:5] == 7).all() and allowed[0, 0] == BG | LED and int((allowed == 7).sum()) == 18
    assert boxes.tolist() == [[2, 2, 5, 8]] and box_classes.tolist() == [C.player]


def test_partial_losses():
    allowed = torch.tensor([[[BG, PLAYER, BG | PLAYER, 7, 0]]], dtype=torch.uint8)
    assert exact_target(allowed).tolist() == [[[0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]]
    sure = torch.full((1, 3, 1, 5), -20.0)
    sure[:, 1] = 20.0  # player everywhere: inside {bg, player}: no loss
    assert float(set_nll(sure, allowed)) < 1e-6
    board = torch.full((1, 3, 1, 5), -20.0)
    board[:, 2] = 20.0  # board where the set says background or player: a large loss
    assert float(set_nll(board, allowed)) > 10

    proba = torch.zeros(1, 3, 20, 20)
    box = [torch.tensor([[1.0, 4, 2, 10, 18]])]
    empty = float(box_projection(proba, box))
    proba[0, 1, 2:18, 6:8] = 1.0  # a thin figure: every row of the box has a player pixel, few columns
    thin = float(box_projection(proba, box))
    proba[0, 1, 2:18, 4:10] = 1.0  # filling the box's rows and columns
    filled = float(box_projection(proba, box))
    assert empty == pytest.approx(1.0) and filled < 1e-6 < thin < empty


def test_partial_label_loss_learns_from_boxes_and_sets():
    """A tiny network fit on one box-labelled and one board-labelled image: every row and column of
    the box holds player pixels, none lies outside it, the board rows are board. (The projection alone
    does not say which pixels inside the box: a rim satisfies it, as in BoxInst; the pixel-labelled
    sources and the pairwise term supply the shape.)"""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 1))
    x = torch.zeros(2, 3, 24, 24)
    x[0, :, 6:18, 8:14] = 1.0  # a bright person in image 0
    x[1, 1, 4:8, :] = 1.0  # a green board in image 1
    allowed = torch.full((2, 24, 24), 7, dtype=torch.uint8)
    allowed[0] = BG | LED
    allowed[0, 6:18, 8:14] = 7
    allowed[1] = BG | PLAYER
    allowed[1, 4:8] = LED
    boxes = [torch.tensor([[1.0, 8, 6, 14, 18]]), torch.zeros(0, 5)]
    loss_fn = PartialLabelLoss(LossConfig(), 3)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss, parts = loss_fn(net(x), allowed, boxes)
        loss.backward()
        opt.step()
    pred = net(x).argmax(1)
    inside = pred[0, 6:18, 8:14] == 1
    assert inside.any(0).all() and inside.any(1).all()
    outside = pred[0] == 1
    outside[6:18, 8:14] = False
    assert not outside.any()
    assert (pred[1, 4:8] == 2).all() and set(parts) >= {"partial", "box_projection"}


def test_source_meter_scores_only_what_is_labelled():
    det = Sample("d", np.zeros((40, 40, 3), np.uint8), labels={"player": BOX},
                 instances=[Instance(C.player, (2, 2, 8, 20)), Instance(C.player, (20, 2, 26, 20))])
    pred = np.zeros((40, 40), np.uint8)
    pred[2:20, 2:8] = C.player  # one of two found, one false blob
    pred[30:38, 30:38] = C.player
    meter = SourceMeter("det", C)
    row = meter.update(det, pred)
    assert row["recall/player"] == 0.5 and row["precision/player"] == 0.5
    out = meter.compute()
    assert "iou/player" not in out and "iou/led_board" not in out and 0 < out["box_AP50"] < 1

    board = np.zeros((20, 300), bool)
    board[5:10, :140] = board[5:10, 150:] = True  # a player between x 140 and 150 splits the board
    hidden = occluded_board(board)  # closes gaps up to 4% of the width
    assert hidden[5:10, 140:150].all() and int(hidden.sum()) == 50
    sem = np.where(board, C.led_board, 0).astype(np.uint8)
    epl = Sample("e", np.zeros((20, 300, 3), np.uint8), semantic=sem, labels={"led_board": PIXEL, "background": PIXEL})
    pred = sem.copy()
    pred[5:10, 140:146] = C.player
    meter = SourceMeter("epl", C)
    meter.update(epl, pred)
    out = meter.compute()
    assert out["iou/led_board"] == 1.0 and "iou/player" not in out and "players_over_led_iou" not in out
    assert out["player_over_board"] == pytest.approx(0.6)


def test_match_boxes_is_one_to_one():
    truth = np.array([[0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], float)
    assert match_boxes(pred, np.array([0.9, 0.8]), truth) == 1


def test_whole_groups_held_out(detection_dir):
    cfg = DataConfig(format="yolo", root=str(detection_dir), val_groups=["08fd33", "573e61"])
    train, val = build_reader(cfg, "train"), build_reader(cfg, "val")
    match = lambda r: {r.group(k)[:6] for k in r.keys()}
    assert match(val) == {"08fd33", "573e61"} and not match(train) & match(val)
    assert len(train) + len(val) == 242


def test_several_sources_in_one_config():
    cfg = DataConfig(classes=["background", "player"], sources=[
        SourceConfig(format="acme", root="a", weight=2.0), SourceConfig(format="yolo", root="b", name="det")])
    a, b = cfg.source_list()
    assert (a.name, a.weight, a.classes, b.name, b.root) == ("acme", 2.0, ["background", "player"], "det", "b")
    with pytest.raises(ValueError, match="distinct names"):
        DataConfig(sources=[SourceConfig(format="acme"), SourceConfig(format="acme")]).source_list()


def _pitch_frame():
    """A 120 x 200 broadcast-like frame: crowd (grey) above, pitch (two mown greens) below, a red
    player and a dark green kit standing on it, and a white line."""
    rng = np.random.default_rng(0)
    im = np.zeros((120, 200, 3), np.uint8)
    im[:30] = rng.integers(60, 200, (30, 200, 3), dtype=np.uint8)  # crowd
    im[30:] = (40, 130, 50)
    im[30:, 100:] = (50, 150, 60)  # a lighter mowing stripe of the same grass
    im[60:100, 40:52] = (200, 30, 30)  # a red player
    im[60:100, 150:162] = (10, 40, 16)  # a dark green kit
    im[30:, 120:122] = 255  # a pitch line
    return im


def test_pitch_mask_finds_the_grass_and_nothing_else():
    im = _pitch_frame()
    grass = pitch_mask(im, margin=2)
    assert grass[40:55, 5:35].all() and grass[100:118, 60:95].all() and grass[40:118, 130:145].all()
    assert not grass[:30].any()  # crowd
    assert not grass[60:100, 38:54].any()  # the player and the margin around it
    assert not grass[62:98, 152:160].any()  # a kit darker than the grass is not grass
    assert not grass[:, 120:122].any()  # the line
    closeup = np.full((120, 200, 3), (200, 30, 30), np.uint8)
    closeup[100:, :20] = (40, 130, 50)  # a little grass in a close-up: no pitch to speak of
    assert not pitch_mask(closeup).any()


def test_pitch_prior_removes_player_on_grass_only_where_players_are_not_labelled():
    im = _pitch_frame()
    det = Sample("d", im, instances=[Instance(C.player, (28.0, 56.0, 64.0, 104.0))], labels={"player": BOX})
    plain, _, _ = known_classes(det, C)
    prior, _, _ = known_classes(det, C, pitch=True)
    assert plain[70, 31] == 7 and prior[70, 31] == BG | LED  # grass inside the box: not player
    assert prior[80, 45] == 7  # the player inside the box keeps every class
    assert (prior[:30] == plain[:30]).all()  # off the pitch nothing changes
    epl = Sample("e", im, semantic=np.zeros(im.shape[:2], np.uint8),
                 labels={"background": PIXEL, "led_board": PIXEL})  # as the LabelMe reader says
    assert known_classes(epl, C, pitch=True)[0][45, 10] == BG  # "background or player" -> background
    assert known_classes(epl, C, pitch=True)[0][80, 45] == BG | PLAYER
    full = Sample("f", im, semantic=np.zeros(im.shape[:2], np.uint8), labels={n: PIXEL for n in C.names})
    assert (known_classes(full, C, pitch=True)[0] == known_classes(full, C)[0]).all()


def test_real_epl_boards(epl_dir):
    reader = build_reader(DataConfig(format="labelme", root=str(epl_dir)))
    failures = Failures()
    boards = sum(len(s.instances) for s in iter_samples(reader, failures))
    assert len(reader) == 198 and not failures and boards == 889


def test_resolution_policy_brings_every_source_to_one_height():
    pre = Preprocess(target_height=720)
    assert pre.size(478, 848) == (720, 1277) and pre.size(1080, 1920) == (720, 1280)
    assert Preprocess(scale=0.5).size(1080, 1920) == (540, 960)
    assert Preprocess.from_dict({"scale": 0.5, "pad_multiple": 32, "mean": [0.5] * 3, "std": [0.5] * 3}).target_height == 0
    assert pre.at_model_resolution().size(720, 1280) == (720, 1280)


class _OneFrame:
    """A reader of one wide frame with one person box at its far right."""

    def keys(self):
        return ["only"]

    def load(self, key):
        return Sample("only", np.zeros((200, 1000, 3), np.uint8), labels={"player": BOX},
                      instances=[Instance(C.player, (900.0, 80.0, 920.0, 130.0))])


def test_object_crops_fall_around_a_labelled_object():
    import albumentations as A

    from playerseg.train.dataset import CropDataset, FrameStore

    store = FrameStore({"d": _OneFrame()}, Preprocess(scale=1.0))
    crop = A.Compose([A.RandomCrop(100, 100)], bbox_params=A.BboxParams(format="pascal_voc",
                                                                          label_fields=["box_classes"]))
    hits = lambda p: sum(int((CropDataset(store, crop, C, 40, object_crop_p=p, crop=(100, 100))[i][2][:, 0] >= 0).any())
                         for i in range(40))
    assert hits(1.0) == 40 and hits(0.0) < 20
    # the crop says whether its boxes list every player (the centre head's targets)
    assert bool(CropDataset(store, crop, C, 1)[0][3])
    store.readers["d"].load = lambda key: Sample("px", np.zeros((200, 1000, 3), np.uint8), labels={"player": PIXEL},
                                                 semantic=np.zeros((200, 1000), np.uint8))
    assert not bool(CropDataset(FrameStore(store.readers, Preprocess(scale=1.0)), crop, C, 1)[0][3])
