"""Readers: tiny hand-made files for every bad-input case, then ALL the real frames."""
import itertools
import json
import pickle

import cv2
import numpy as np
import pytest

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.acme import AcmeReader
from playerseg.data.coco import CocoReader
from playerseg.data.errors import DataError, Failures
from playerseg.data.registry import READERS, DataConfig, build_reader, iter_samples
from playerseg.data.yolo import YoloReader, video_and_frame
from playerseg.metrics import rle

PALETTE = {"ground": (137, 126, 126), "advertisement": (27, 71, 151), "team_a": (254, 233, 3),
           "team_b": (255, 160, 1), "ball": (201, 19, 223), "unlabelled": (0, 0, 0)}
W, H = 32, 24


def _write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA))


def _mask_names():
    names = np.full((H, W), "ground", dtype=object)
    names[4:8, :] = "advertisement"
    names[10:20, 2:6] = "team_a"  # stands in front of nothing, 40 px
    names[3:18, 20:26] = "team_b"  # in front of the board: cuts it in two
    names[12:15, 12:15] = "team_a"  # a second team_a component, 9 px
    names[22, 0:2] = "team_a"  # 2 px: below min_instance_pixels
    names[20:22, 28:30] = "ball"
    names[0, 0] = "unlabelled"
    return names


def make_acme(root, stems=("frame_001", "frame_002"), names=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"classes": [{"name": n, "rgb": list(c)} for n, c in PALETTE.items()]}))
    names = _mask_names() if names is None else names
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    for n, c in PALETTE.items():
        rgba[names == n, :3] = c
    for stem in stems:
        _write_rgb(root / "images" / f"{stem}.jpg", np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
        _write_rgb(root / "masks" / f"{stem}.png", rgba)
    return root


def test_acme_maps_colours_and_finds_instances(tmp_path):
    reader = AcmeReader(str(make_acme(tmp_path / "set")), min_instance_pixels=4)
    assert reader.keys() == ["frame_001", "frame_002"] and len(reader) == 2
    s = reader.load("frame_002")
    names = _mask_names()
    expected = np.zeros((H, W), np.uint8)
    expected[np.isin(names, ["team_a", "team_b"])] = 1
    expected[names == "advertisement"] = 2
    expected[names == "unlabelled"] = IGNORE_INDEX
    np.testing.assert_array_equal(s.semantic, expected)  # ball -> background without a ball class
    assert s.image.shape == (H, W, 3) and s.frame_index == 2 and s.group == "set"
    boxes = sorted((i.label, i.box, int(i.mask.sum())) for i in s.instances)
    assert boxes == [("advertisement", (0.0, 4.0, 20.0, 8.0), 80), ("advertisement", (26.0, 4.0, 32.0, 8.0), 24),
                     ("team_a", (2.0, 10.0, 6.0, 20.0), 40), ("team_a", (12.0, 12.0, 15.0, 15.0), 9),
                     ("team_b", (20.0, 3.0, 26.0, 18.0), 90)]
    assert {i.class_id for i in s.instances if i.label.startswith("team")} == {1}


def test_acme_ball_kept_when_a_task_class(tmp_path):
    reader = AcmeReader(str(make_acme(tmp_path / "set")), TaskClasses(("background", "player", "led_board", "ball")))
    s = reader.load("frame_001")
    assert (s.semantic == 3).sum() == 4
    assert [i.label for i in s.instances if i.class_id == 3] == []  # 4 px < default min_instance_pixels 16


def test_acme_missing_mask_and_image(tmp_path):
    root = make_acme(tmp_path / "set", stems=("frame_001", "frame_002", "frame_003"))
    (root / "masks" / "frame_002.png").unlink()
    (root / "images" / "frame_003.jpg").unlink()
    reader = AcmeReader(str(root))
    assert reader.keys() == ["frame_001", "frame_002", "frame_003"]
    with pytest.raises(DataError, match=r"masks/frame_002\.png.*mask file missing"):
        reader.load("frame_002")
    with pytest.raises(DataError, match=r"images/frame_003\.jpg.*image file missing"):
        reader.load("frame_003")


def test_acme_size_mismatch_names_both_sizes(tmp_path):
    root = make_acme(tmp_path / "set")
    _write_rgb(root / "images" / "frame_001.jpg", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(DataError) as e:
        AcmeReader(str(root)).load("frame_001")
    assert "masks/frame_001.png" in str(e.value) and "32x24" in str(e.value) and "30x20" in str(e.value)


def test_acme_colour_outside_palette_names_file_colour_and_pixel(tmp_path):
    root = make_acme(tmp_path / "set")
    mask = cv2.imread(str(root / "masks" / "frame_002.png"), cv2.IMREAD_UNCHANGED)
    mask[5, 7, :3] = (3, 2, 1)  # BGR -> RGB (1, 2, 3)
    cv2.imwrite(str(root / "masks" / "frame_002.png"), mask)
    with pytest.raises(DataError) as e:
        AcmeReader(str(root)).load("frame_002")
    msg = str(e.value)
    assert msg.startswith(str(root / "masks" / "frame_002.png")) and "(1, 2, 3)" in msg and "x=7, y=5" in msg


def test_skip_and_report_keeps_good_samples(tmp_path):
    root = make_acme(tmp_path / "set", stems=("frame_001", "frame_002", "frame_003"))
    (root / "masks" / "frame_002.png").write_bytes(b"not a png")
    failures = Failures()
    reader = build_reader(DataConfig(format="acme", root=str(root)))
    ids = [s.id for s in iter_samples(reader, failures)]
    assert ids == ["frame_001", "frame_003"]
    assert len(failures) == 1 and "frame_002.png" in failures.summary() and "cannot decode" in failures.summary()


def test_reader_pickles_without_its_colour_table(tmp_path):
    reader = AcmeReader(str(make_acme(tmp_path / "set")))
    reader.load("frame_001")
    assert reader._colour_lut is not None
    blob = pickle.dumps(reader)
    assert len(blob) < 100_000  # the 16 MiB lookup table stays behind (Ray ships readers to workers)
    np.testing.assert_array_equal(pickle.loads(blob).load("frame_001").semantic, reader.load("frame_001").semantic)


def _coco(tmp_path, annotations, text=None):
    img_dir = tmp_path / "images"
    _write_rgb(img_dir / "a.jpg", np.zeros((H, W, 3), np.uint8))
    path = tmp_path / "instances.json"
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "Player"}, {"id": 2, "name": "LED"}, {"id": 3, "name": "flag"}],
            "annotations": annotations}
    path.write_text(text if text is not None else json.dumps(data, indent=1))
    return path


def test_coco_polygons_rle_crowd_and_paint_order(tmp_path):
    board = np.zeros((H, W), bool)
    board[2:12, 0:32] = True
    small = np.zeros((H, W), bool)
    small[8:20, 10:14] = True
    uncompressed = {"size": [H, W], "counts": _uncompressed_counts(small)}
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "segmentation": uncompressed, "iscrowd": 0},  # small, first
        {"id": 2, "image_id": 7, "category_id": 2, "segmentation": rle.encode(board), "iscrowd": 0},  # big, later
        {"id": 3, "image_id": 7, "category_id": 1, "segmentation": [[20, 14, 26, 14, 26, 20, 20, 20]], "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 1, "segmentation": rle.encode(np.pad(np.ones((2, 2), bool), ((21, 1), (0, 30)))), "iscrowd": 1},
        {"id": 5, "image_id": 7, "category_id": 3, "segmentation": rle.encode(board), "iscrowd": 0},  # unmapped: dropped
    ]
    reader = CocoReader(str(_coco(tmp_path, anns)), min_instance_pixels=4)
    assert reader.keys() == ["a"] and reader.frame_index("a") is None
    s = reader.load("a")
    assert (s.semantic[small] == 1).all()  # the small player painted over the larger board
    assert (s.semantic[board & ~small] == 2).all()
    assert s.semantic[17, 23] == 1 and s.semantic[22, 0] == 1  # polygon, crowd
    assert [(i.label, i.class_id) for i in s.instances] == [("Player", 1), ("LED", 2), ("Player", 1)]  # no crowd, no flag
    assert s.instances[0].box == (10.0, 8.0, 14.0, 20.0)


def _uncompressed_counts(mask):
    """COCO uncompressed RLE counts: run lengths over the column-major pixels, zeros first."""
    runs = [len(list(g)) for _, g in itertools.groupby(mask.flatten(order="F"))]
    return [0, *runs] if mask.flatten(order="F")[0] else runs


def test_coco_broken_json_names_file_and_line(tmp_path):
    path = _coco(tmp_path, [], text='{"images": [\n  {"id": 1,\n   "file_name": "a.jpg" "width": 3}\n]}')
    with pytest.raises(DataError) as e:
        CocoReader(str(path))
    assert e.value.path == str(path) and e.value.line == 3 and str(e.value).startswith(f"{path}:3:")


def test_coco_missing_image_names_file(tmp_path):
    path = _coco(tmp_path, [])
    (tmp_path / "images" / "a.jpg").unlink()
    with pytest.raises(DataError, match=r"a\.jpg: image file not found"):
        CocoReader(str(path)).load("a")


def make_yolo(root, lines):
    (root / "train" / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [ball, goalkeeper, player, referee]\nnc: 4\n")
    for i, text in enumerate(lines):
        stem = f"08fd33_0_{i + 1}_png.rf.{i:032x}"
        _write_rgb(root / "train" / "images" / f"{stem}.jpg", np.zeros((50, 100, 3), np.uint8))
        (root / "train" / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_yolo_boxes_groups_and_ball(tmp_path):
    root = make_yolo(tmp_path, ["0 0.5 0.5 0.02 0.04\n2 0.1 0.2 0.1 0.2\n\n3 0.99 0.5 0.1 0.2\n"])
    reader = YoloReader(str(root))
    key = reader.keys()[0]
    assert key.startswith("train/08fd33_0_1_png") and reader.group(key) == "08fd33_0" and reader.frame_index(key) == 1
    s = reader.load(key)
    assert s.semantic is None and all(i.mask is None for i in s.instances)
    assert [(i.label, i.class_id) for i in s.instances] == [("player", 1), ("referee", 1)]
    np.testing.assert_allclose(s.boxes, [[5, 5, 15, 15], [94, 20, 100, 30]])  # clipped at the right edge
    with_ball = YoloReader(str(root), classes=TaskClasses(("background", "player", "ball")))
    assert [i.label for i in with_ball.load(key).instances] == ["ball", "player", "referee"]
    assert video_and_frame("clip") == ("clip", None)


def test_yolo_line_with_four_numbers_names_file_and_line(tmp_path):
    root = make_yolo(tmp_path, ["2 0.1 0.2 0.1 0.2\n", "2 0.1 0.2 0.1 0.2\n2 0.5 0.5 0.1\n"])
    reader = YoloReader(str(root))
    bad = reader.keys()[1]
    with pytest.raises(DataError) as e:
        reader.load(bad)
    assert e.value.path.endswith(f"labels/{bad.split('/')[1]}.txt") and e.value.line == 2
    assert "expected 5 values" in str(e.value)
    failures = Failures()
    assert [s.id for s in iter_samples(reader, failures)] == [reader.keys()[0]] and len(failures) == 1


def test_build_reader_rejects_unknown_format():
    assert set(READERS) == {"acme", "coco", "yolo", "labelme"}
    with pytest.raises(ValueError, match="unknown data format 'voc'"):
        build_reader(DataConfig(format="voc"))


@pytest.mark.realdata
def test_all_acme_frames(acme_dir):
    """One pass over all 90 real frames: every mask pixel in the palette, class shares as in the data."""
    reader = build_reader(DataConfig(format="acme", root=str(acme_dir)))
    assert len(reader) == 90
    shares, players = [], []
    for s in reader:
        assert s.image.shape == (1080, 1920, 3) and s.semantic.shape == (1080, 1920)
        counts = np.bincount(s.semantic.ravel(), minlength=256)
        shares.append(counts[[0, 1, 2, IGNORE_INDEX]] / s.semantic.size)
        people = [i for i in s.instances if i.class_id == 1]
        assert {i.label for i in people} <= {"team_a", "team_b", "goalkeeper_a", "goalkeeper_b", "referee"}
        inside = sum(int(i.mask[int(i.box[1]):int(i.box[3]), int(i.box[0]):int(i.box[2])].sum()) for i in people)
        players.append(inside / counts[1])
    shares = np.array(shares)
    assert (shares[:, 2] > 0.01).sum() >= 80  # LED boards in most frames (85 of 90 over 1 %)
    assert (shares[:, 1] > 0.01).all() and 0.08 < shares[:, 1].mean() < 0.25  # close shots: ~15 % players
    assert shares[:, 3].max() < 0.01  # `unlabelled` is rare
    assert min(players) > 0.97  # nearly all player pixels belong to an instance of >= 16 px


@pytest.mark.realdata
def test_all_detection_frames(detection_dir):
    reader = build_reader(DataConfig(format="yolo", root=str(detection_dir)))
    assert len(reader) == 242 and len(YoloReader(str(detection_dir), "valid")) == 38
    failures = Failures()
    boxes = 0
    for s in iter_samples(reader, failures):
        b = s.boxes
        assert s.semantic is None and len(b) > 0
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= s.width).all() and (b[:, 3] <= s.height).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert s.group and s.frame_index is not None
        boxes += len(b)
    assert not failures, failures.summary()
    assert boxes > 242 * 15  # wide shots: ~20 people per frame


def test_components_beyond_16_bit_labels():
    from playerseg.data.acme import _components

    dots = np.zeros((600, 500), np.uint8)
    dots[::2, ::2] = 1  # 75 000 isolated pixels: more labels than 16 bits hold
    n, labels, stats = _components(dots)
    assert n == 75_001 and labels.max() == 75_000 and (stats[1:, 4] == 1).all()


def test_custom_mapping_and_bad_mapping_file(tmp_path):
    root = make_acme(tmp_path / "set")
    mapping = tmp_path / "boards_only.yaml"
    mapping.write_text("default: background\nclasses:\n  advertisement: led_board\n  Team-A: ignore\n")
    s = AcmeReader(str(root), TaskClasses(("background", "led_board")), str(mapping)).load("frame_001")
    names = _mask_names()
    assert (s.semantic[names == "team_a"] == IGNORE_INDEX).all() and (s.semantic[names == "team_b"] == 0).all()
    assert (s.semantic[names == "advertisement"] == 1).all() and {i.label for i in s.instances} == {"advertisement"}
    mapping.write_text("defaults: background\n")
    with pytest.raises(DataError, match="boards_only.yaml: a class mapping takes only the keys"):
        AcmeReader(str(root), mapping=str(mapping))
