"""`playerseg evaluate`: metrics/report/gallery from (sample, prediction) pairs, and the whole job
with a stand-in model on the tiny synthetic set (never a stand-in for real results)."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import types

import cv2
import numpy as np
import pytest

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.acme import AcmeReader
from playerseg.evaluate import EvaluateConfig, evaluate_pairs, write_outputs
from playerseg.metrics.instance import semantic_to_instances
from playerseg.metrics.semantic import led_region

C = TaskClasses()


@pytest.fixture(scope="module")
def samples(synth_dir):
    reader = AcmeReader(str(synth_dir))
    return [reader.load(k) for k in reader.keys()[:6]]


def _perfect(sample):
    return np.where(sample.semantic == IGNORE_INDEX, 0, sample.semantic).astype(np.uint8)


def _merged(sample, radius=1):
    """Players near the boards predicted as board: the failure the project is about."""
    pred = _perfect(sample)
    pred[led_region(sample.semantic, C.led_board, radius) & (pred == C.player)] = C.led_board
    return pred


def test_perfect_predictions(samples):
    results, ev = evaluate_pairs([(s, _perfect(s)) for s in samples], C, EvaluateConfig(worst=3))
    sem = results["semantic"]
    assert sem["iou/player"] == 1.0 and sem["iou/led_board"] == 1.0 and sem["miou"] == 1.0
    assert sem["boundary_f/player"] == 1.0 and sem["players_over_led_iou"] == 1.0
    assert results["num_images"] == results["num_semantic"] == len(samples)
    # the reader splits touching players of different teams (source classes); connected components
    # of a perfect semantic map merge them: instance AP stays below 1 even for a perfect map
    assert 0.3 < results["instance"]["segm"]["AP"] < 1.0
    # against truth instances made the same way (components of the task-class map) it is exact
    same_way = [dataclasses.replace(s, instances=[i for c in (1, 2) for i in semantic_to_instances(_perfect(s), c)])
                for s in samples]
    results, _ = evaluate_pairs([(s, _perfect(s)) for s in same_way], C)
    assert results["instance"]["segm"]["AP"] == pytest.approx(1.0)
    assert results["instance"]["bbox"]["AP"] == pytest.approx(1.0)


def test_worst_frames_rank_merged_players_first(samples, tmp_path):
    counts = [int((led_region(s.semantic, C.led_board, 1) & (s.semantic == C.player)).sum()) for s in samples]
    bad = int(np.argmax(counts))
    assert counts[bad] > 0, "the synthetic set should have players in front of boards"
    pairs = [(s, _merged(s) if i == bad else _perfect(s)) for i, s in enumerate(samples)]
    cfg = EvaluateConfig(worst=2, tile_width=120)
    results, ev = evaluate_pairs(pairs, C, cfg)
    assert results["worst"][0]["id"] == samples[bad].id and results["worst"][0]["value"] == 0.0
    assert results["worst"][1]["value"] == 1.0 and len(results["worst"]) == 2
    assert 0 < results["semantic"]["players_over_led_iou"] < 1
    assert results["semantic"]["iou/led_board"] < 1  # the board grew over the players

    write_outputs(results, ev, cfg, str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert "Players over LED boards IoU" in report and samples[bad].id in report
    assert "![worst frames](worst_frames.png)" in report and "| mask |" in report
    metrics = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: NaN became null
    assert metrics["semantic"]["iou/player"] == 1.0 or metrics["semantic"]["iou/player"] < 1
    assert metrics["worst"][0]["id"] == samples[bad].id and metrics["config"]["worst"] == 2
    gallery = cv2.imread(str(tmp_path / "worst_frames.png"))
    h, w = samples[0].height, samples[0].width
    tile_h = round(h * 120 / w)
    assert gallery.shape == (2 * tile_h + 4, 4 * 120, 3)  # two rows of image|pred|truth|error
    dets = json.loads((tmp_path / "detections.json").read_text())
    assert dets and {"image_id", "category_id", "score", "segmentation", "bbox"} <= set(dets[0])


def test_rank_by_must_be_a_metric():
    with pytest.raises(ValueError, match="rank_by"):
        evaluate_pairs([], C, EvaluateConfig(rank_by="accuracy"))


def test_prediction_size_mismatch_names_the_sample(samples):
    with pytest.raises(ValueError, match=samples[0].id):
        evaluate_pairs([(samples[0], np.zeros((8, 8), np.uint8))], C)


class _Background:
    """A stand-in model for the job test: predicts background everywhere."""

    classes = C
    loaded: list = []

    @classmethod
    def load(cls, path, device=None, runtime=None):
        cls.loaded.append(path)
        return cls()

    def predict(self, images, tta=False):
        assert images.ndim == 4 and images.dtype == np.uint8
        return np.zeros(images.shape[:3], np.uint8)


def test_job_end_to_end_skips_bad_and_is_idempotent(synth_dir, tmp_path, monkeypatch, capsys):
    from playerseg.cli import main
    from playerseg.models.segmenter import weights_sha256

    module = types.ModuleType("playerseg.models.segmenter")
    module.Segmenter, module.weights_sha256 = _Background, weights_sha256
    monkeypatch.setitem(sys.modules, "playerseg.models.segmenter", module)
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    broken = sorted((data / "images").iterdir())[1]
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", "stand-in.ckpt", "--data-root", str(data), "--split", "all",
            "--out", str(out), "--worst", "2", "--set", "batch_size=5", "--set", "max_samples=8"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 7  # the first 8 frames, one unreadable
    assert [f["what"] for f in metrics["failures"]] == [broken.stem] and str(broken) in metrics["failures"][0]["error"]
    assert metrics["semantic"]["iou/player"] == 0.0 and metrics["instance"]["segm"]["AP"] == 0.0
    assert math.isclose(metrics["semantic"]["miou"], 0.0)
    report = (out / "report.md").read_text()
    assert "## Skipped inputs" in report and "cannot decode" in report and broken.name in report
    assert (out / "worst_frames.png").is_file()
    # the same config again: nothing is redone; a different one runs again
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(argv) == 0 and (out / "metrics.json").stat().st_mtime_ns == stamp
    assert len(_Background.loaded) == 1
    assert main(argv + ["--set", "overwrite=true"]) == 0 and len(_Background.loaded) == 2
    # another config into the same folder is refused in one line naming what differs; --overwrite redoes it
    capsys.readouterr()
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(argv + ["--worst", "1"]) == 2 and len(_Background.loaded) == 2
    err = capsys.readouterr().err
    assert "worst 2 -> 1" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "worst_frames.png").is_file() and (out / "metrics.json").stat().st_mtime_ns == stamp  # untouched
    assert main(argv + ["--worst", "1", "--overwrite"]) == 0 and len(_Background.loaded) == 3
    assert json.loads((out / "metrics.json").read_text())["config"]["worst"] == 1


def test_job_with_a_real_tiny_segmenter(synth_dir, tmp_path):
    """The job with `Segmenter.load` on a tiny random-weight model folder equals evaluating the
    model's own predictions directly (TTA on): the job adds no error of its own."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from playerseg.cli import main
    from playerseg.models.registry import ModelConfig, build_model
    from playerseg.models.segmenter import WEIGHTS_FILE, META_FILE, Preprocess, Segmenter, model_meta

    torch.manual_seed(0)
    mcfg = ModelConfig(arch="unet", encoder_weights="", encoder_depth=3, decoder_channels=[32, 16, 8])
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_file(build_model(mcfg, 3).state_dict(), str(model_dir / WEIGHTS_FILE))
    (model_dir / META_FILE).write_text(json.dumps(model_meta(mcfg, C, Preprocess(scale=0.5), (1.0,))))
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(model_dir), "--data-root", str(synth_dir), "--split", "all",
            "--out", str(out), "--tta", "--worst", "2", "--batch-size", "2", "--set", "max_samples=4"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["tta"] is True and metrics["num_images"] == 4 and metrics["classes"] == list(C.names)
    assert "Test-time augmentation: on" in (out / "report.md").read_text()

    seg = Segmenter.load(str(model_dir), device="cpu", runtime="auto")  # the job's runtime (config default)
    reader = AcmeReader(str(synth_dir))
    samples = [reader.load(k) for k in reader.keys()[:4]]
    proba = seg.predict_proba(np.stack([s.image for s in samples]), tta=True)
    direct, _ = evaluate_pairs([(s, p.argmax(0).astype(np.uint8), p) for s, p in zip(samples, proba)], C,
                               EvaluateConfig(worst=2))
    for section, got in (("semantic", metrics["semantic"]), ("instance", metrics["instance"]["segm"])):
        want = direct[section] if section == "semantic" else direct["instance"]["segm"]
        assert set(got) == set(want)
        for key, value in want.items():  # metrics.json has null where the metric is NaN
            assert (got[key] is None) if math.isnan(value) else got[key] == pytest.approx(value), key


def test_options_file_then_set_then_flags(tmp_path):
    from playerseg.cli import build_parser
    from playerseg.config import ConfigError
    from playerseg.evaluate_cmd import config_from_args

    (tmp_path / "eval.yaml").write_text("worst: 3\nbatch_size: 7\ndata: {format: coco, root: /from/file}\n")
    args = build_parser("evaluate").parse_args(
        ["evaluate", "--config", str(tmp_path / "eval.yaml"), "--set", "worst=5", "--set", "led_radius=20",
         "--data-root", "/from/flag", "--tta"])
    cfg = config_from_args(args)
    assert (cfg.worst, cfg.batch_size, cfg.led_radius, cfg.tta) == (5, 7, 20.0, True)
    assert (cfg.data.format, cfg.data.root, cfg.split) == ("coco", "/from/flag", "val")
    bad = build_parser("evaluate").parse_args(["evaluate", "--set", "wrost=1"])
    with pytest.raises(ConfigError, match="wrost"):
        config_from_args(bad)
