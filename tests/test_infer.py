"""`playerseg infer`: outputs, exactly-once frames, resume, bad inputs, SAM step, node loss."""
import json
import shutil
import threading
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import ray

from playerseg.classes import TaskClasses
from playerseg.infer.pipeline import InferConfig, run_inference
from playerseg.infer.postprocess import PostprocessConfig
from playerseg.video.frames import Unit
from playerseg.infer.writer import UnitWriter
from playerseg.ledger import Ledger
from playerseg.metrics import rle
from playerseg.models.segmenter import Segmenter
from playerseg.video.schema import PREDICTION_SCHEMA, prediction_row

SIZE = (160, 96)  # synthetic frames (w, h); the model runs at half: 80 x 48


def make_model(path):
    """A tiny random-init Unet saved as Segmenter.load reads it (model.json + safetensors)."""
    import torch

    from playerseg.models.registry import ModelConfig, build_model
    from playerseg.models.segmenter import Preprocess, model_meta
    from playerseg.train.unet import write_model_dir

    torch.manual_seed(0)
    cfg = ModelConfig(encoder_weights="", decoder_channels=[8, 8, 8, 8, 8], num_classes=3)
    model = build_model(cfg)
    write_model_dir(path, model.state_dict(), model_meta(cfg, TaskClasses(), Preprocess(scale=0.5)))
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def inputs(synth_dir, tmp_path_factory):
    """The synthetic clip (12 frames), a broken video, a frame folder with one corrupt image."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    frames = root / "cam2"
    frames.mkdir()
    for i in range(4):
        shutil.copy(synth_dir / "images" / f"frame_{i:05d}.jpg", frames / f"frame_{i:05d}.jpg")
    (frames / "frame_00005.jpg").write_bytes(b"corrupt jpeg")
    return {"video": str(synth_dir / "video.mp4"), "broken": str(root / "broken.mp4"), "frames": str(frames)}


def read(path):
    return pq.read_table(str(path)).to_pylist()


def test_cli_end_to_end_resume_and_failures(ray_local, model_dir, inputs, tmp_path, capsys):
    from playerseg.cli import main

    out = tmp_path / "out"
    argv = ["infer", inputs["video"], inputs["broken"], inputs["frames"], "--model", model_dir,
            "--output", str(out), "--batch-size", "3", "--set", "segment_frames=4",
            "--set", "postprocess.min_area_frac=0.001", "--set", "resources.postprocess_in_actor=false"]
    assert main(argv) == 1  # failures -> exit status 1, the rest finished
    printed = capsys.readouterr().out
    assert "broken.mp4" in printed and "frame_00005.jpg" in printed
    summary = json.loads((out / "summary.json").read_text())
    # 3 units of the clip + 2 of the frame folder (frames 0-3, then 5): the bad jpeg is reported and
    # left out, its unit written without it (and without done marker: a re-run reports it again)
    assert summary["units"] == 5 and summary["units_written"] == 5 and summary["units_failed"] == []
    assert [f["what"] for f in summary["failures"] if "frame_00005" in f["error"]] == ["cam2/000005-000006 frame 5"]

    frames = read(out / "frames")
    video = sorted(r["frame_index"] for r in frames if r["video_id"] == "video")
    assert video == list(range(12))  # every frame exactly once, frames without instances too
    assert sorted(r["frame_index"] for r in frames if r["video_id"] == "cam2") == [0, 1, 2, 3]
    for r in frames:
        assert abs(sum(r[f"{n}_fraction"] for n in TaskClasses().names) - 1) < 1e-5

    table = pq.read_table(str(out / "predictions"))
    assert table.schema.remove_metadata().equals(PREDICTION_SCHEMA)
    rows = table.to_pylist()
    assert rows, "a random model still predicts some players / boards"
    # plain pyarrow queries the typed columns (no JSON to parse): a score filter, boxes as numbers
    cut = sorted(r["score"] for r in rows)[len(rows) // 2]
    kept = table.filter(pc.greater_equal(table["score"], cut))
    assert 0 < kept.num_rows == sum(r["score"] >= cut for r in rows) <= len(rows)
    assert pc.min(pc.list_element(kept["bbox"], 2)).as_py() >= 1.0  # widths, float32
    for r in rows:
        assert r["mask_rle_size"] == [SIZE[1], SIZE[0]]  # masks at source size, not model size
        mask = rle.decode({"size": r["mask_rle_size"], "counts": r["mask_rle_counts"]})
        assert mask.sum() == r["area"] > 0
        x, y, w, h = r["bbox"]
        assert 0 <= x and x + w <= SIZE[0] and 0 <= y and y + h <= SIZE[1]
    keys = [(r["video_id"], r["frame_index"], r["instance_id"]) for r in rows]
    assert len(keys) == len(set(keys))
    results = json.loads((out / "coco_results.json").read_text())
    assert len(results) == len(rows) and {d["category_id"] for d in results} <= {1, 2}

    # resume: finished units are skipped and left untouched; the one with a bad frame is tried again
    parts = sorted(p for p in (out / "predictions").rglob("*.parquet") if p.name != "000005-000006.parquet")
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert main(argv) == 1
    again = json.loads((out / "summary.json").read_text())
    assert again["units_skipped"] == 4 and again["units_written"] == 1 and again["units_failed"] == []
    assert [p.stat().st_mtime_ns for p in parts] == stamps

    # a unit whose done marker is gone is redone, with identical output (deterministic)
    before = read(out / "predictions" / "video" / "000004-000008.parquet")
    (out / "_done" / "video" / "000004-000008.json").unlink()
    assert main(argv) == 1
    assert json.loads((out / "summary.json").read_text())["units_written"] == 2
    assert read(out / "predictions" / "video" / "000004-000008.parquet") == before

    # other options into the same output are refused in one line naming what differs and the way out
    capsys.readouterr()
    assert main(argv + ["--tta"]) == 2
    err = capsys.readouterr().err
    assert "tta False -> True" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_postprocess_in_actor_and_sam_refinement(ray_local, model_dir, inputs, tmp_path):
    # the tiny test model is not confident: keep its weak players (the score floor is not under test)
    base = dict(model=model_dir, inputs=[inputs["video"]], segment_frames=6,
                postprocess=PostprocessConfig(min_player_score=0.0))
    cfg = InferConfig(output=str(tmp_path / "in_actor"), **base)
    cfg.resources.postprocess_in_actor = True
    cfg.resources.actors = 2
    cfg.resources.cpus_per_actor = 0.5
    sam = InferConfig(output=str(tmp_path / "sam"), **base)
    sam.sam.checkpoint, sam.sam.model_type = "untrained", "tiny_untrained"
    a, s = run_inference(cfg), run_inference(sam)
    assert a["failures"] == s["failures"] == [] and a["resources"]["actors"] == 2 and s["frames_written"] == 12
    # same instances as post-processing in its own stage, except the masks SAM refined
    key = lambda r: (r["frame_index"], r["instance_id"])  # noqa: E731
    plain, refined = (sorted(read(tmp_path / d / "predictions"), key=key) for d in ("in_actor", "sam"))
    assert [key(r) + (r["class"], r["score"]) for r in plain] == [key(r) + (r["class"], r["score"]) for r in refined]
    boards = [r["mask_rle_counts"] for r in plain if r["class"] == "led_board"]
    assert boards == [r["mask_rle_counts"] for r in refined if r["class"] == "led_board"]
    players = [r["mask_rle_counts"] for r in plain if r["class"] == "player"]
    assert players and players != [r["mask_rle_counts"] for r in refined if r["class"] == "player"]


def test_unit_writer_exactly_once(tmp_path):
    unit = Unit("video", "v", "000000-000002", 2, {})
    writer = UnitWriter(Ledger(str(tmp_path), {}), {unit.key: unit}, TaskClasses().names)
    row = {"unit": unit.key, "video_id": "v", "pts_seconds": 0.0, "width": 4, "height": 4, "error": "",
           "instances": [], "num_instances": 0,
           "fractions": json.dumps({"background": 1.0, "player": 0.0, "led_board": 0.0})}
    writer.add({**row, "frame_index": 0})
    writer.add({**row, "frame_index": 0})  # a retried task sends frame 0 again
    assert writer.written == [] and writer.duplicates == 1
    writer.add({**row, "frame_index": 1})
    writer.add({**row, "frame_index": 1})  # after the unit is written: ignored
    assert writer.written == [unit.key] and writer.duplicates == 2
    assert [r["frame_index"] for r in read(tmp_path / "frames")] == [0, 1]

    other = Unit("video", "v", "000002-000004", 2, {})
    w2 = UnitWriter(Ledger(str(tmp_path), {}), {other.key: other}, TaskClasses().names)
    w2.add({**row, "unit": other.key, "frame_index": 2})
    w2.finish()  # frame 3 never came: reported, not written
    assert "incomplete: 1 of 2 frames" in w2.failures.summary() and w2.written == []


def test_frame_results_stream_typed_instances(tmp_path):
    """A post-processed frame streams with its instances as typed structs (no JSON); the writer
    makes each a row of the part file."""
    import pyarrow as pa

    from playerseg.infer.pipeline import _results
    from playerseg.video.schema import INSTANCE_TYPE

    proba = np.zeros((3, 48, 80), np.float32)  # model resolution: half the 160 x 96 source
    proba[0] = 1.0
    proba[:, 10:40, 20:30] = np.array([0.0, 1.0, 0.0])[:, None, None]
    row = {"unit": "v/000003-000004", "video_id": "v", "frame_index": np.int64(3), "pts_seconds": np.float64(0.12),
           "width": np.int64(SIZE[0]), "height": np.int64(SIZE[1]), "error": ""}
    table = _results([{**row, "proba": proba}], TaskClasses(), PostprocessConfig())
    assert table.schema.field("instances").type == pa.list_(INSTANCE_TYPE)
    (inst,) = table.column("instances").to_pylist()[0]
    assert (inst["class"], inst["bbox"]) == ("player", [40.0, 20.0, 20.0, 60.0])  # at source size
    assert inst["area"] == rle.decode({"size": inst["mask_rle_size"], "counts": inst["mask_rle_counts"]}).sum() > 1000

    unit = Unit("video", "v", "000003-000004", 1, {})
    UnitWriter(Ledger(str(tmp_path), {}), {unit.key: unit}, TaskClasses().names).add(table.to_pylist()[0])
    assert read(tmp_path / "predictions") == [prediction_row("v", 3, 0.12, inst)]


def test_torchscript_export_loads(model_dir, tmp_path):
    from playerseg.train.export import export_model

    export_model(model_dir, str(tmp_path / "export"), formats=("safetensors", "torchscript"), half=False,
                 example_hw=(64, 96))
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 80, 3), dtype=np.uint8)
    ts = Segmenter.load(str(tmp_path / "export" / "model.ts"), "cpu", model_resolution=True)
    ref = Segmenter.load(model_dir, "cpu", model_resolution=True)
    np.testing.assert_allclose(ts.predict_proba(frames), ref.predict_proba(frames), atol=1e-4)
    with pytest.raises(ValueError, match="onnxruntime"):
        Segmenter.load(str(tmp_path / "export" / "model.onnx"), runtime="torch")


def test_runtime_onnxruntime_gives_the_instances_of_torch(ray_local, model_dir, inputs, tmp_path, model_cache):
    """`--runtime onnxruntime` (the model folder exported to ONNX by the actors, into the cache)
    and `--runtime torch` on the same clip: the same instances."""
    pytest.importorskip("onnxruntime")
    from playerseg.cli import main

    rows = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        assert main(["infer", inputs["video"], "--model", model_dir, "--output", str(out), "--runtime", runtime,
                     "--set", "segment_frames=6", "--set", "postprocess.min_area_frac=0.001"]) == 0
        rows[runtime] = sorted(read(out / "predictions"), key=lambda r: (r["frame_index"], r["instance_id"]))
    assert list((model_cache / "onnx").glob("*.onnx")), "the actors export into the session's cache"
    torch_rows, ort_rows = rows["torch"], rows["onnxruntime"]
    assert torch_rows and len(ort_rows) == len(torch_rows)
    for a, b in zip(torch_rows, ort_rows):
        assert (a["frame_index"], a["instance_id"], a["class"], a["bbox"]) == \
            (b["frame_index"], b["instance_id"], b["class"], b["bbox"])
        assert a["mask_rle_counts"] == b["mask_rle_counts"] and abs(a["score"] - b["score"]) < 1e-3


@pytest.mark.slow
def test_worker_node_removed_mid_run_every_frame_once(model_dir, tmp_path):
    """A 2-node cluster loses its worker node mid-run: the job still finishes, each frame once."""
    from ray.cluster_utils import Cluster

    from playerseg.data.synthetic import generate

    clip = generate(str(tmp_path / "clip"), num_frames=48, size=SIZE, fps=25, seed=1, progress=False)["video"]
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    try:
        cfg = InferConfig(model=model_dir, inputs=[clip], output=str(tmp_path / "out"), segment_frames=4)
        r = cfg.resources
        r.actors, r.cpus_per_actor, r.torch_threads, r.batch_size = 2, 0.25, 1, 2
        result = {}
        job = threading.Thread(target=lambda: result.update(run_inference(cfg)))
        job.start()
        done = tmp_path / "out" / "_done" / "clip"
        deadline = time.time() + 300  # a guard against a hang, generous under load
        while job.is_alive() and len(list(done.glob("*.json")) if done.exists() else []) < 2:
            assert time.time() < deadline, "no unit finished in time"
            time.sleep(0.05)
        finished_before = len(list(done.glob("*.json")))
        cluster.remove_node(worker)
        job.join(timeout=300)
        assert not job.is_alive()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert finished_before < 12, "the node must go while work is left"
    assert result["failures"] == [] and result["units_written"] == 12
    frames = [r["frame_index"] for r in read(tmp_path / "out" / "frames")]
    assert sorted(frames) == list(range(48))


def test_coco_results_feed_the_evaluation_tools():
    """Prediction rows -> COCO results -> metrics.instance: predictions equal to the truth score AP 1."""
    import pyarrow as pa

    from playerseg.data.synthetic import render_frame
    from playerseg.infer.coco_export import coco_results
    from playerseg.infer.postprocess import instance_records
    from playerseg.metrics.instance import InstanceMeter

    classes = TaskClasses()
    meter = InstanceMeter(classes)
    rows = []
    for index in range(2):
        sample = render_frame(0, index, size=SIZE)
        meter.add_ground_truth(sample)
        for rec in instance_records(sample.instances, (sample.height, sample.width), classes):
            rows.append(prediction_row("clip", index, 0.0, rec))
    table = pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
    results = coco_results(table, classes, image_id="frame_{frame_index:05d}")
    assert len(results) == len(rows) > 0
    meter.add_detections(results)
    assert meter.compute("segm")["AP"] > 0.99


def test_sam_head_checkpoint_is_a_model(tmp_path):
    """A SAM semantic-head checkpoint (`playerseg train sam`, mode head) serves as the model."""
    from playerseg.sam.build import build_sam
    from playerseg.sam.checkpoint import save_trained
    from playerseg.sam.head import SamEmbeddingHead

    path = str(tmp_path / "sam_trained.pt")
    save_trained(path, build_sam("tiny_untrained"), [], model_type="tiny_untrained", base_checkpoint=None,
                 mode="head", head=SamEmbeddingHead(3, hidden=16))
    seg = Segmenter.load(path, "cpu", model_resolution=True)
    proba = seg.predict_proba(np.zeros((1, 48, 80, 3), np.uint8))
    assert proba.shape == (1, 3, 48, 80) and np.allclose(proba.sum(1), 1, atol=1e-4)
    assert seg.classes.names == TaskClasses().names


def test_parquet_and_frame_folder_units(synth_dir, tmp_path):
    """Frame Parquet (`extract --parquet` schema) and frame folders plan into units and read back."""
    import cv2
    import pyarrow as pa

    from playerseg.video.frames import plan_units, read_unit
    from playerseg.video.schema import FRAME_SCHEMA

    jpgs = [(synth_dir / "images" / f"frame_{i:05d}.jpg").read_bytes() for i in range(3)]
    rows = [{"video_id": "clip", "frame_index": 10 + i, "pts_seconds": i / 25, "width": SIZE[0], "height": SIZE[1],
             "image": b, "image_format": "jpg"} for i, b in enumerate(jpgs)]
    pq.write_table(pa.Table.from_pylist(rows, schema=FRAME_SCHEMA), str(tmp_path / "frames.parquet"), row_group_size=2)
    units, failures = plan_units([str(tmp_path / "frames.parquet"), str(synth_dir / "images")], segment_frames=5)
    assert not failures
    assert [(u.kind, u.key, u.num_frames) for u in units] == [
        ("frames", "images/000000-000005", 5), ("frames", "images/000005-000010", 5),
        ("frames", "images/000010-000012", 2), ("parquet", "frames/rg00000", 2), ("parquet", "frames/rg00001", 1)]
    frames = [f for u in units if u.kind == "parquet" for f in read_unit(u)]
    assert [(f.video_id, f.frame_index) for f in frames] == [("clip", 10), ("clip", 11), ("clip", 12)]
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpgs[0], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(frames[0].image, expected)
    first = next(read_unit(units[0]))
    assert (first.video_id, first.frame_index, first.image.shape) == ("images", 0, (SIZE[1], SIZE[0], 3))


def test_decode_path_imports_no_torch():
    """Decode workers resize with the model's own `Preprocess`, from a module that loads no torch."""
    import subprocess
    import sys

    code = ("import sys, playerseg.models.preprocess, playerseg.infer.pipeline; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
