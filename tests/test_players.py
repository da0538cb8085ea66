"""Players of interest: flags on hand-made masks, colour / encoder embeddings, team clustering on
synthetic scenes with known kits, and `playerseg cluster` end to end on a synthetic video."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from playerseg.players import embed, flags, teams
from playerseg.players.teams import OTHER, UNKNOWN


def _analysis():
    """`benchmarks/teams_analysis.py`, the measurement behind `benchmarks/bench_teams.py`."""
    if "teams_analysis" not in sys.modules:  # registered first: its dataclasses look their module up
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "teams_analysis.py"
        spec = importlib.util.spec_from_file_location("teams_analysis", path)
        sys.modules["teams_analysis"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["teams_analysis"]


# ---- flags ------------------------------------------------------------------------------------
def _rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_led_overlap_is_the_box_fraction_on_board_pixels():
    led = np.zeros((100, 100), bool)
    led[40:60] = True  # a 20-row board band
    assert flags.led_overlap((10, 30, 20, 70), led) == pytest.approx(20 / 40)
    assert flags.led_overlap((10, 0, 20, 30), led) == 0.0
    assert flags.led_overlap((10, 45, 20, 55), led) == 1.0
    assert flags.led_overlap((10, 10, 10, 20), led) == 0.0  # empty box


def test_truncated_and_solidity():
    assert flags.truncated((0, 10, 20, 50), 100, 100)
    assert flags.truncated((10, 10, 20, 100), 100, 100)
    assert not flags.truncated((10, 10, 20, 50), 100, 100)
    assert flags.solidity(_rect(60, 60, 10, 5, 20, 55)) == pytest.approx(1.0)
    two = _rect(60, 60, 5, 5, 15, 55) | _rect(60, 60, 40, 5, 50, 55)
    assert flags.solidity(two) < 0.5
    assert flags.solidity(np.zeros((5, 5), bool)) == 0.0


def test_instance_flags_merged_cue_and_led():
    h, w = 120, 200
    single = [_rect(h, w, 10 + 30 * i, 40, 22 + 30 * i, 80) for i in range(3)]  # 12 x 40: tall, convex
    pair = _rect(h, w, 120, 40, 132, 80) | _rect(h, w, 150, 40, 162, 80) | _rect(h, w, 120, 70, 162, 80)
    masks = single + [pair]
    boxes = [flags_box(m) for m in masks]
    led = np.zeros((h, w), bool)
    led[40:60, :50] = True  # the board behind the first two players
    out = flags.instance_flags(boxes, masks, led)
    assert [f["merged"] for f in out] == [False, False, False, True]
    assert out[3]["aspect"] == pytest.approx(42 / 40) and out[3]["area_ratio"] > 2
    assert out[0]["led"] and out[0]["led_overlap"] == pytest.approx(0.5)
    assert not out[2]["led"] and out[2]["led_overlap"] == 0.0
    assert not any(f["truncated"] for f in out)
    assert flags.instance_flags([], [], led) == []
    one = flags.instance_flags(boxes[3:], masks[3:], None)  # one player: no area reference, no board
    assert one[0]["led_overlap"] == 0.0 and np.isnan(one[0]["area_ratio"])


def flags_box(mask):
    from playerseg.data.reader import mask_box

    return mask_box(mask)


# ---- teams: accuracy and clustering -------------------------------------------------------------
def test_best_permutation_accuracy():
    truth = np.array([0, 0, 1, 1, OTHER])
    assert teams.team_accuracy([1, 1, 0, 0, OTHER], truth) == {"outfield": 1.0, "all": 1.0}
    assert teams.team_accuracy([1, 1, 0, 1, 0], truth) == {"outfield": 0.75, "all": 0.6}
    assert teams.team_accuracy([OTHER] * 5, truth)["outfield"] == 0.0
    assert teams.permutation_counts([0, 1], [1, 0], swapped=False)["all"] == (0, 2)
    assert np.isnan(teams.team_accuracy([], [])["all"])
    assert list(teams.true_teams(["team_a", "team_b", "referee", "goalkeeper_a"])) == [0, 1, OTHER, OTHER]


def test_clustering_with_outlier_and_small_frames():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0, 0]) + rng.normal(0, 0.02, (8, 3))
    b = np.array([0, 1.0, 0]) + rng.normal(0, 0.02, (7, 3))
    ref = np.array([[0, 0, 1.0]])
    x = np.concatenate([a, b, ref])
    pred = teams.assign_teams(x)
    assert pred[-1] == OTHER
    assert teams.team_accuracy(pred, [0] * 8 + [1] * 7 + [OTHER])["all"] == 1.0
    assert np.array_equal(pred, teams.assign_teams(x))  # deterministic, canonical ids
    model = teams.TeamModel().fit(x)
    again = teams.TeamModel.from_state(json.loads(json.dumps(model.state())))
    assert np.array_equal(again.predict(x), pred)
    assert teams.assign_teams(np.zeros((0, 3))).shape == (0,)
    assert list(teams.assign_teams(x[:1])) == [0]  # one player: a team, never an outlier
    assert sorted(teams.assign_teams(x[[0, 9]])) == [0, 1]
    assert set(teams.assign_teams(np.ones((3, 3)))) == {0}  # identical players
    with pytest.raises(ValueError):
        teams.TeamModel().fit(np.zeros((0, 3))).predict(x)


# ---- embeddings on synthetic scenes with known kits ----------------------------------------------
def _players(sample, min_pixels=30):
    return [i for i in sample.instances if i.class_id == 1 and i.mask.sum() >= min_pixels]


def test_colour_histogram_counts_only_masked_kit_pixels():
    image = np.zeros((40, 20, 3), np.uint8)
    image[:, :] = (40, 160, 40)  # pitch green
    image[5:30, 5:15] = (220, 20, 20)  # red kit
    mask = _rect(40, 20, 5, 5, 15, 30)
    h = embed.colour_histograms(image, [mask], [(5, 5, 15, 30)])[0]
    assert h.sum() == pytest.approx(1.0) and h.shape == (embed.hist_dim(),)
    assert np.count_nonzero(h) == 1  # one red bin: no green leaks in
    white = np.full((40, 20, 3), 240, np.uint8)
    hw = embed.colour_histograms(white, [mask], [(5, 5, 15, 30)])[0]
    assert hw[: embed.ColourConfig().grey_bins].sum() == pytest.approx(1.0)  # achromatic bins
    assert embed.colour_histograms(image, [np.zeros((40, 20), bool)], [(0, 0, 0, 0)])[0].sum() == 0
    assert embed.colour_histograms(image, [], []).shape == (0, embed.hist_dim())


def test_colour_clustering_recovers_synthetic_teams():
    from playerseg.data.synthetic import render_frame

    xs, truths = [], []
    for index in (0, 7, 14):
        sample = render_frame(0, index, (256, 144), people=12)
        people = _players(sample)
        assert len(people) >= 5 and "referee" in [p.label for p in people]
        x = embed.hellinger(embed.colour_histograms(sample.image, [p.mask for p in people], [p.box for p in people]))
        truth = teams.true_teams([p.label for p in people])
        assert teams.team_accuracy(teams.assign_teams(x), truth) == {"outfield": 1.0, "all": 1.0}
        xs.append(x)
        truths.append(truth)
    acc = teams.team_accuracy(teams.assign_teams(np.concatenate(xs)), np.concatenate(truths))
    assert acc == {"outfield": 1.0, "all": 1.0}


def test_one_and_zero_player_frames():
    from playerseg.data.synthetic import render_frame

    sample = render_frame(0, 0, (128, 96), people=1)  # the referee only
    people = _players(sample, 1)
    assert len(people) == 1
    x = embed.colour_histograms(sample.image, [p.mask for p in people], [p.box for p in people])
    assert list(teams.assign_teams(x)) == [0]
    # a frame without players (e.g. a crowd shot): empty embeddings, no teams, no flags
    assert teams.assign_teams(embed.colour_histograms(sample.image, [], [])).shape == (0,)
    assert flags.instance_flags([], [], sample.semantic == 2) == []


@pytest.fixture(scope="module")
def tiny_embedder():
    import torch

    from playerseg.models.registry import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder_weights=""), num_classes=3)  # random init, nothing loaded
    return model.encoder


@pytest.mark.parametrize("mode", ["crop", "frame"])
def test_encoder_embedding_is_masked_and_normalised(tiny_embedder, mode):
    from playerseg.data.synthetic import render_frame

    cfg = embed.EncoderConfig(mode=mode, crop_size=(32, 64), frame_width=128)
    embedder = embed.EncoderEmbedder(tiny_embedder, cfg=cfg, device="cpu")
    sample = render_frame(1, 0, (128, 96), people=6)
    people = _players(sample, 20)
    masks, boxes = [p.mask for p in people], [p.box for p in people]
    x = embedder(sample.image, masks, boxes)
    assert x.shape == (len(people), embedder.dim()) and embedder.dim() == 16 + 24
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedder(sample.image, masks, boxes), x, atol=1e-6)  # deterministic
    top = [embed.band_mask(m, b, (0.0, 0.5)) for m, b in zip(masks, boxes)]
    assert not np.allclose(embedder(sample.image, top, boxes), x, atol=1e-3)  # the mask matters
    assert embedder(sample.image, [], []).shape == (0, embedder.dim())


# ---- playerseg cluster end to end -------------------------------------------------------------
def _write_predictions(synth_dir, out):
    """Prediction parts in the `playerseg infer` layout, made from the synthetic ground truth."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from playerseg.video.schema import PREDICTION_SCHEMA

    coco = json.loads((synth_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    frame_of = {im["id"]: im["frame_index"] for im in coco["images"]}
    kind = {"team_a": "player", "team_b": "player", "referee": "player", "advertisement": "led_board"}
    rows, truth = {}, {}
    for a in coco["annotations"]:
        name = names[a["category_id"]]
        if name not in kind:
            continue
        f = frame_of[a["image_id"]]
        iid = len([r for r in rows.get(f, [])])
        rows.setdefault(f, []).append({
            "video_id": "video", "frame_index": f, "pts_seconds": f / 25, "instance_id": iid, "class": kind[name],
            "score": 1.0, "bbox": a["bbox"], "area": a["area"], "mask_rle_size": a["segmentation"]["size"],
            "mask_rle_counts": a["segmentation"]["counts"], "team": -1})
        truth[(f, iid)] = name
    for a, b in ((0, 6), (6, 12)):
        part = out / "predictions" / "video" / f"{a:06d}-{b:06d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([r for f in range(a, b) for r in rows.get(f, [])], schema=PREDICTION_SCHEMA)
        pq.write_table(table, part)
    return truth


def test_cluster_command_writes_teams_and_flags_once(synth_dir, tmp_path, ray_local):
    import pyarrow.parquet as pq

    from playerseg.players.cluster import ClusterConfig, cluster

    import shutil

    truth = _write_predictions(synth_dir, tmp_path)
    ghost = tmp_path / "predictions" / "ghost" / "000000-000006.parquet"  # a video not among the inputs
    ghost.parent.mkdir()
    shutil.copy(tmp_path / "predictions" / "video" / "000000-000006.parquet", ghost)
    # a planning split other than the parts' (4 vs 6 frames): frames are matched by index
    cfg = ClusterConfig(inputs=[str(synth_dir / "video.mp4")], predictions=str(tmp_path), segment_frames=4)
    summary = cluster(cfg)
    assert summary["written"] == 2 and summary["failed"] == 1, summary  # the rest completes
    assert "ghost" in summary["failures"] and "not found in the inputs" in summary["failures"]
    table = pq.read_table(tmp_path / "predictions" / "video").to_pylist()
    assert {"team", "led_overlap", "led", "truncated", "merged"} <= set(table[0])
    players = [r for r in table if r["class"] == "player"]
    boards = [r for r in table if r["class"] == "led_board"]
    assert boards and all(r["team"] == UNKNOWN and r["led"] is None for r in boards)
    pred = [r["team"] for r in players]
    true = teams.true_teams([truth[(r["frame_index"], r["instance_id"])] for r in players])
    big = np.array([r["area"] >= 30 for r in players])  # slivers of occluded players carry little kit
    acc = teams.team_accuracy(np.array(pred)[big], true[big])
    assert acc["outfield"] == 1.0, acc
    assert all(0.0 <= r["led_overlap"] <= 1.0 for r in players)
    assert any(r["led"] for r in players) and not all(r["led"] for r in players)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").rglob("*.parquet")}
    again = cluster(cfg)  # idempotent: nothing rewritten, the bad part named again
    assert again["already_written"] == 2 and again["written"] == 0 and again["failed"] == 1
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").rglob("*.parquet")}
    # a video that gains a part is fitted again and every part of it rewritten (one model per video)
    shutil.copy(tmp_path / "predictions" / "video" / "000000-000006.parquet",
                tmp_path / "predictions" / "video" / "000012-000018.parquet")
    grown = cluster(cfg)
    assert grown["written"] == 3 and grown["videos"]["video"]["parts"] == 3, grown
    # other options are refused before any work, in one line naming what differs; --overwrite redoes every part
    from playerseg.config import ConfigError

    other = ClusterConfig(inputs=cfg.inputs, predictions=cfg.predictions, segment_frames=4, min_pixels=2)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").rglob("*.parquet")}
    with pytest.raises(ConfigError, match=r"min_pixels 0 -> 2.*--overwrite") as err:
        cluster(other)
    assert len(str(err.value).splitlines()) == 1
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").rglob("*.parquet")}
    redone = cluster(other, overwrite=True)
    assert redone["written"] == 3 and redone["already_written"] == 0, redone
    assert [d.name for d in (tmp_path / "_cluster").iterdir() if d.is_dir()] == [redone["fingerprint"]]


def test_analysis_tables_and_led_split_on_synthetic_records():
    from playerseg.data.synthetic import render_frame
    analysis = _analysis()
    AnalysisConfig, FrameRecord, format_tables = analysis.AnalysisConfig, analysis.FrameRecord, analysis.format_tables
    instance_seg_counts, measure = analysis.instance_seg_counts, analysis.measure

    records = []
    for index in (0, 7):
        sample = render_frame(0, index, (256, 144), people=12)
        people = _players(sample)
        masks, boxes = [p.mask for p in people], [p.box for p in people]
        pred = sample.semantic.copy()
        pred[pred == 1] = 0 if index == 7 else 1  # frame 7: every player missed
        records.append(FrameRecord(
            key=sample.id, truth=teams.true_teams([p.label for p in people]),
            features={"colour": embed.hellinger(embed.colour_histograms(sample.image, masks, boxes))},
            flags=flags.instance_flags(boxes, masks, sample.semantic == 2), boxes=boxes,
            seg={"instances": [instance_seg_counts(pred, sample.semantic, b, m, 1) for b, m in zip(boxes, masks)]}))
    result = measure(records, "none", AnalysisConfig())
    assert result["teams"]["colour"]["overall"]["global/outfield"] == 1.0
    split = result["led_split"]
    n = sum(len(r.truth) for r in records)
    assert split["led"]["instances"] + split["no_led"]["instances"] == n
    assert split["led"]["instances"] == sum(f["led"] for r in records for f in r.flags) > 0
    assert split["no_led"]["recall/mean"] == pytest.approx(
        np.mean([1.0 if r.key.endswith("00000") else 0.0 for r in records for f in r.flags if not f["led"]]))
    text = format_tables(result)
    assert "colour" in text and "LED-overlap" in text and sample.id in text


@pytest.mark.realdata
def test_acme_analysis_colour_teams_beat_chance(acme_dir):
    analysis = _analysis()
    result = analysis.run(analysis.AnalysisConfig(root=str(acme_dir), limit=10))
    assert result["frames"] == 10 and result["led_split"] is None  # no model given
    assert result["teams"]["colour"]["overall"]["global/outfield"] >= 0.8, result["teams"]["colour"]["overall"]
    assert set(result["teams"]) == {"colour", "encoder"}


def test_sam_embedding_of_masks():
    from playerseg.data.synthetic import render_frame
    from playerseg.sam.build import build_sam

    embedder = embed.SamEmbedder(build_sam("tiny_untrained"))  # untrained: tests the machinery only
    sample = render_frame(1, 0, (128, 96), people=6)
    masks = [p.mask for p in _players(sample, 20)]
    x = embedder(sample.image, masks)
    assert x.shape == (len(masks), 256) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(x[0], x[1], atol=1e-4)  # different players, different embeddings
    assert embedder(sample.image, []).shape == (0, 256)
