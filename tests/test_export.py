"""Export (`playerseg export`: ONNX, torch.export .pt2) and runtimes (`Segmenter.load(runtime=...)`):
the committed model's exports equal eager torch at two input sizes and batch sizes 1 and 2, carry
their classes and preprocessing, and a model folder's ONNX export is made once into the cache."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from playerseg.models.segmenter import Segmenter  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "models" / "unet_effl0_acme"
TOL = 1e-3  # max abs difference of class probabilities
# frames at source size; the model runs at half: 68 x 120 (padded to 96 x 128) and 136 x 200 (160 x 224)
SIZES = [(136, 240), (272, 400)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The committed model as one .onnx and one .pt2 file, through `playerseg export`."""
    from playerseg.cli import main

    out = tmp_path_factory.mktemp("exports")
    for fmt in ("onnx", "pt2"):
        assert main(["export", str(MODEL), "--format", fmt, "--out", str(out / f"acme.{fmt}")]) == 0
    return {"onnx": str(out / "acme.onnx"), "pt2": str(out / "acme.pt2")}


@pytest.fixture(scope="module")
def eager():
    return Segmenter.load(MODEL, device="cpu", runtime="torch")


def _frames(n, hw, seed):
    return np.random.default_rng(seed).integers(0, 255, (n, *hw, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["onnx", "pt2", "folder-onnxruntime"])
def test_exports_equal_eager_torch(kind, exports, eager):
    path, runtime = (str(MODEL), "onnxruntime") if kind == "folder-onnxruntime" else (exports[kind], None)
    seg = Segmenter.load(path, device="cpu", runtime=runtime, threads=2)
    assert seg.runtime == ("torch" if kind == "pt2" else "onnxruntime")
    assert seg.classes == eager.classes and seg.preprocess == eager.preprocess and seg.tta_scales == eager.tta_scales
    for i, hw in enumerate(SIZES):
        for n in (1, 2):
            frames = _frames(n, hw, i * 10 + n)
            seg.batch_size = eager.batch_size = n
            got, want = seg.predict_proba(frames), eager.predict_proba(frames)
            assert got.shape == want.shape == (n, 3, *hw)
            assert np.abs(got - want).max() < TOL, (kind, hw, n)


def test_files_carry_classes_and_preprocessing(exports):
    """Read back without playerseg: ONNX Runtime's metadata map, torch.export's extra files."""
    import onnxruntime as ort

    folder = json.loads((MODEL / "model.json").read_text())
    session = ort.InferenceSession(exports["onnx"], providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    meta, spec = json.loads(props["model.json"]), json.loads(props["preprocess.json"])
    for key in ("classes", "preprocess", "tta_scales", "model"):
        assert meta[key] == folder[key], key
    assert spec["classes"] == folder["classes"] and spec["pad"]["multiple"] == folder["preprocess"]["pad_multiple"]
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("image", "logits")
    assert inp.shape[1] == 3 and all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))

    extra = {"model.json": "", "preprocess.json": ""}
    torch.export.load(exports["pt2"], extra_files=extra)
    assert json.loads(extra["model.json"])["classes"] == folder["classes"]
    assert json.loads(extra["model.json"])["preprocess"] == folder["preprocess"]
    assert json.loads(extra["preprocess.json"])["normalize"]["mean"] == folder["preprocess"]["mean"]


def test_export_command_folder_and_refusals(tmp_path, capsys):
    from playerseg.cli import main

    small = tmp_path / "small"
    _tiny_model(small)
    assert main(["export", str(small), "--format", "onnx,pt2", "--format", "safetensors", "--out",
                 str(tmp_path / "out")]) == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"model.json", "preprocess.json", "model.safetensors", "model.onnx", "model.pt2"} <= files
    frames = _frames(2, (72, 136), 0)
    want = Segmenter.load(small, device="cpu").predict_proba(frames)
    for name in ("model.onnx", "model.pt2"):
        assert np.abs(Segmenter.load(tmp_path / "out" / name, device="cpu").predict_proba(frames) - want).max() < TOL
    assert main(["export", str(small), "--format", "pt2", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--format onnx alone" in capsys.readouterr().err
    assert main(["export", str(small), "--format", "tflite", "--out", str(tmp_path / "y")]) == 2
    assert "unknown format" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runtime onnxruntime"):
        Segmenter.load(tmp_path / "out" / "model.onnx", device="cpu", runtime="torch")
    with pytest.raises(ValueError, match="not a pt2 file"):
        Segmenter.load(tmp_path / "out" / "model.pt2", device="cpu", runtime="onnxruntime")
    assert Segmenter.load(tmp_path / "out" / "model.pt2", device="cpu", runtime="auto").runtime == "torch"
    (tmp_path / "out" / "MODEL_CARD.md").write_text("# by hand\n")  # re-exporting keeps the card, drops old formats
    assert main(["export", str(small), "--format", "safetensors", "--out", str(tmp_path / "out")]) == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert "model.onnx" not in files and (tmp_path / "out" / "MODEL_CARD.md").read_text() == "# by hand\n"


def test_folder_on_onnxruntime_exports_once_into_the_cache(tmp_path, model_cache, monkeypatch):
    from playerseg.models import formats, runtime

    small = tmp_path / "small"
    _tiny_model(small)
    first = Segmenter.load(small, device="cpu", runtime="auto")  # auto on CPU: ONNX Runtime
    assert first.runtime == "onnxruntime"
    cached = sorted((model_cache / "onnx").glob("*.onnx"))
    assert cached and runtime.cache_dir() == model_cache

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(formats, "write_onnx", no_export)
    again = Segmenter.load(small, device="cpu", runtime="onnxruntime")  # the cached file, no export
    assert sorted((model_cache / "onnx").glob("*.onnx")) == cached
    frames = _frames(1, (72, 136), 1)
    np.testing.assert_array_equal(first.predict_proba(frames), again.predict_proba(frames))


def test_a_folder_runs_its_own_onnx_while_its_weights_are_unchanged(tmp_path, model_cache, monkeypatch, caplog):
    """`playerseg export --format safetensors,onnx` into a folder: loading it on ONNX Runtime runs
    that file (a fresh machine exports nothing); weights replaced in place are exported afresh."""
    import shutil

    from playerseg.cli import main
    from playerseg.models import formats

    small, shipped = tmp_path / "small", tmp_path / "shipped"
    _tiny_model(small)
    assert main(["export", str(small), "--format", "safetensors,onnx", "--out", str(shipped)]) == 0
    before = set((model_cache / "onnx").glob("*.onnx")) if (model_cache / "onnx").is_dir() else set()

    def no_export(*a, **k):
        raise AssertionError("exported although the folder ships its ONNX")

    with monkeypatch.context() as m:
        m.setattr(formats, "write_onnx", no_export)
        seg = Segmenter.load(shipped, device="cpu", runtime="onnxruntime")
    frames = _frames(1, (72, 136), 2)
    eager = Segmenter.load(shipped, device="cpu", runtime="torch")
    assert np.abs(seg.predict_proba(frames) - eager.predict_proba(frames)).max() < TOL

    other = tmp_path / "other"
    _tiny_model(other, seed=1)
    assert main(["export", str(other), "--format", "safetensors", "--out", str(other / "exp")]) == 0
    shutil.copy2(other / "exp" / "model.safetensors", shipped / "model.safetensors")  # replaced in place
    with caplog.at_level("WARNING"):
        changed = Segmenter.load(shipped, device="cpu", runtime="onnxruntime")
    assert "weights changed since" in caplog.text
    assert set((model_cache / "onnx").glob("*.onnx")) - before  # exported afresh
    eager_changed = Segmenter.load(shipped, device="cpu", runtime="torch")
    assert np.abs(changed.predict_proba(frames) - eager_changed.predict_proba(frames)).max() < TOL
    assert np.abs(changed.predict_proba(frames) - seg.predict_proba(frames)).max() > TOL


def test_onnxruntime_threads_follow_torch(tmp_path):
    from playerseg.models.runtime import OnnxModel

    small = tmp_path / "small"
    _tiny_model(small)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        seg = Segmenter.load(small, device="cpu", runtime="onnxruntime")  # threads 0: torch's
        assert isinstance(seg.model, OnnxModel) and seg.model.threads == 1
    finally:
        torch.set_num_threads(old)
    assert Segmenter.load(small, device="cpu", runtime="onnxruntime", threads=2).model.threads == 2


def _tiny_model(path, seed: int = 0):
    from playerseg.classes import TaskClasses
    from playerseg.models.registry import ModelConfig, build_model
    from playerseg.models.segmenter import Preprocess, model_meta
    from playerseg.train.unet import write_model_dir

    torch.manual_seed(seed)
    cfg = ModelConfig(encoder_weights="", decoder_channels=[8, 8, 8, 8, 8], num_classes=3)
    write_model_dir(path, build_model(cfg).state_dict(), model_meta(cfg, TaskClasses(), Preprocess(scale=0.5)))
