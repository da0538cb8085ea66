"""The prepared GPU run (`benchmarks/gpu/`) as a CPU dry run, so that it cannot rot.

The dry run is the same script as on the GPU machine (`run.py --tiny --device cpu`): a pack of two
frames per source and split at 96 px high, a 64 px model input, a 3 s training budget. It runs with
ray, albumentations, segment_anything, av, wandb and scipy made unimportable (a `sitecustomize` on
the child's path refuses them), as on a bare CUDA PyTorch machine.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
ABSENT = ["ray", "albumentations", "segment_anything", "av", "wandb", "scipy"]
BLOCKER = f"""
import importlib.abc, sys
ABSENT = {ABSENT!r}
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)", name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory, acme_dir, detection_dir, epl_dir):
    from playerseg.io import shared_data_dir

    out = tmp_path_factory.mktemp("pack") / "pack.zip"
    index = _module("pack").build_pack(str(ROOT / "configs" / "unet_broadcast_v2.yaml"), str(out), quality=80,
                                       max_per_split=2, target_height=96, data_root=str(shared_data_dir()))
    assert index["counts"] == {s: {"train": 2, "val": 2} for s in ("acme", "detection", "epl")}
    return out


def _run(args, tmp_path, block=True):
    env = dict(os.environ)
    paths = [str(ROOT / "lib")]
    if block:
        (tmp_path / "blocker").mkdir(exist_ok=True)
        (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
        paths.insert(0, str(tmp_path / "blocker"))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, str(GPU / "run.py"), *args], env=env, capture_output=True, text=True,
                          timeout=1500)


def test_pack_holds_what_the_readers_give(tiny_pack):
    """Frames, label maps, boxes and label kinds of the pack equal the source readers' scaled samples."""
    from playerseg.config import load
    from playerseg.data.registry import build_reader
    from playerseg.io import shared_data_dir
    from playerseg.train.config import TrainConfig
    from playerseg.train.dataset import scaled_sample
    from playerseg.train.unet import preprocess_of

    pack = _module("pack").Pack(tiny_pack)
    cfg = load(TrainConfig, ROOT / "configs" / "unet_broadcast_v2.yaml", ["input.target_height=96"])
    for source in cfg.data.source_list():
        source.root = str(shared_data_dir() / Path(source.root).name)
        reader = build_reader(source, "val")
        packed = pack.reader(source.name, "val")
        key = packed.keys()[0]
        want = scaled_sample(reader.load(key), preprocess_of(cfg))
        got = packed.load(key)
        assert got.image.shape == want.image.shape and got.labels == want.labels
        assert np.abs(got.image.astype(int) - want.image.astype(int)).mean() < 6  # JPEG
        if want.semantic is None:
            assert got.semantic is None
        else:
            assert np.array_equal(got.semantic, want.semantic)
        assert [i.class_id for i in got.instances] == [i.class_id for i in want.instances]
        assert np.allclose(got.boxes, want.boxes, atol=0.01)


def test_simple_augment_moves_boxes_with_the_pixels():
    from playerseg.train.config import AugmentConfig, AugSpec

    aug = _module("augment")
    off = AugSpec(0.0, 0.0)
    cfg = AugmentConfig(scale=off, rotate=off, hflip=AugSpec(1.0, 0.0), rgb_shift=off, brightness_contrast=off, hsv=off,
                        blur=off)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    mask = np.full((100, 200), 7, np.uint8)
    box = np.array([[10, 20, 30, 40]], np.float32)
    # the crop is larger than the frame: padded (class set 0 = nothing known) at a random place, flipped
    out = aug.SimpleAugment(cfg, (128, 256))(image=image, mask=mask, bboxes=box, box_classes=np.array([1]))
    assert out["image"].shape == (128, 256, 3) and out["mask"].shape == (128, 256)
    assert (out["mask"] == 7).sum() == 100 * 200 and set(np.unique(out["mask"])) == {0, 7}
    x0, y0, x1, y1 = out["bboxes"][0].round().astype(int)
    assert (x1 - x0, y1 - y0) == (20, 20) and list(out["box_classes"]) == [1]
    assert np.array_equal(out["image"][y0:y1, x0:x1], image[20:40, 10:30][:, ::-1])
    # a crop that leaves less than a quarter of a box drops it
    cfg.hflip = off
    small = aug.SimpleAugment(cfg, (100, 8))
    kept = [len(small(image=image, mask=mask, bboxes=box, box_classes=np.array([1]))["bboxes"]) for _ in range(200)]
    assert 0 in kept and 1 in kept
    assert aug.SimpleAugment(AugmentConfig(), (8, 8)).skipped() == ["rotate", "hsv", "blur"]


@pytest.mark.slow
def test_cpu_dry_run_without_ray_writes_figures_and_a_loadable_model(tiny_pack, tmp_path):
    out = tmp_path / "out"
    done = _run(["--tiny", "--device", "cpu", "--pack", str(tiny_pack), "--out", str(out), "--budget-s", "900"], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "time plan (s)" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["phases"].items()} == {"infer": "ok", "train": "ok"}

    infer = summary["infer"]
    assert infer["absent_there_but_imported"] == []
    measured = {(c["precision"], c["batch"]) for c in infer["cells"] if c.get("frames_per_s", 0) > 0}
    assert measured >= {("fp32", 1), ("fp32", 2), ("amp_bf16", 1), ("amp_bf16", 2)}
    assert infer["best_eager"]["64"]["frames_per_s"] > 0
    assert infer["end_to_end"][0]["frames_per_s"] > 0

    train = summary["train"]
    assert train["absent_there_but_imported"] == []
    assert train["trained"]["epochs"] >= 1 and all(math.isfinite(e["loss"]) for e in train["epochs"])
    # scipy absent: the box-labelled detection set is left out of validation, and says so
    assert train["differences_from_ray_training"]["validation_skipped_sources"] == ["detection"]
    assert train["val_score_keys"] == ["acme/iou/player", "acme/players_over_led_iou", "epl/iou/led_board"]
    for key in train["val_score_keys"] + ["score"]:
        assert 0.0 <= train["val"][key] <= 1.0, key
    assert not any(k.startswith("detection/") for k in train["val"])

    from playerseg.models.segmenter import Segmenter

    folder = out / "train" / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors", "preprocess.json"]
    seg = Segmenter.load(str(folder), device="cpu", runtime="torch")
    assert seg.classes.names == ("background", "player", "led_board") and seg.preprocess.target_height == 96
    assert seg.meta["trained_by"] == "benchmarks/gpu/run.py"
    # the folder predicts what the trained model predicts with its weights rounded to fp16 (as stored)
    assert train["model_folder"]["max_proba_diff_vs_trained_fp16_weights"] < 1e-3
    assert train["model_folder"]["max_proba_diff_vs_trained_fp32_weights"] < 0.1


def test_a_failing_phase_is_recorded_and_the_run_goes_on(tmp_path):
    """A phase that raises leaves its JSON (what it had, and the traceback); the summary names it."""
    out = tmp_path / "out"
    done = _run(["--tiny", "--device", "cpu", "--phases", "infer", "--model", str(tmp_path / "no-such-model"),
                 "--out", str(out), "--budget-s", "120"], tmp_path)
    assert done.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases"]["infer"]["status"] == "failed"
    assert "no-such-model" in summary["phases"]["infer"]["error"]
    assert summary["infer"]["env"]["device"] == "cpu"  # written before the failure
