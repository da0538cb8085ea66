"""Models by name, the EfficientNet-Lite0/1/2 key mapping (proved on real photos), and Segmenter."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from playerseg.classes import TaskClasses
from playerseg.models import effnet_lite
from playerseg.models.registry import MODELS, ModelConfig, build_model
from playerseg.models.segmenter import Preprocess, Segmenter, model_meta

TINY = dict(encoder="resnet18", encoder_weights="", encoder_depth=3, decoder_channels=[32, 16, 8])
PALACE, DAISY, HONEYCOMB = 698, 985, 599  # ImageNet class ids
# flower.jpg is a pompon dahlia, which ImageNet lacks: Lite0/1 call it a daisy, Lite2 a honeycomb
# (its cell-like petals; so does timm's TF-exact `tf_efficientnet_lite2` with these weights).
FLOWER = {"lite0": DAISY, "lite1": DAISY, "lite2": HONEYCOMB}


def _photo(name: str) -> torch.Tensor:
    """A real photo shipped with scikit-learn, centre-cropped to 224 px, normalised like the weights."""
    from sklearn.datasets import load_sample_image

    img = load_sample_image(name)
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    mean = torch.tensor(effnet_lite.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(effnet_lite.STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("variant,stages", [("lite0", (1, 2, 2, 3, 3, 4, 1)), ("lite1", (1, 3, 3, 4, 4, 5, 1)),
                                            ("lite2", (1, 3, 3, 4, 4, 5, 1))])
def test_every_package_key_maps_onto_timm_lite(variant, stages):
    import timm

    assert effnet_lite.stage_blocks(variant) == stages  # read off timm, not hard-coded
    mapped = effnet_lite.timm_state_dict(variant)
    target = timm.create_model(effnet_lite.timm_name(variant)).state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


@pytest.mark.parametrize("variant", effnet_lite.VARIANTS)
def test_imagenet_lite_encoder_classifies_real_photos(variant):
    """The segmentation model's own encoder + the package's head names real photos correctly;
    a random encoder with the same head does not."""
    encoder = effnet_lite.encoder_name(variant)
    model = build_model(ModelConfig(encoder=encoder, encoder_weights=f"effnet-{variant}-imagenet"), num_classes=3)
    clf = effnet_lite.LiteClassifier(model.encoder, variant).eval()
    with torch.no_grad():
        palace = clf(_photo("china.jpg")).softmax(1)[0]
        flower = clf(_photo("flower.jpg")).softmax(1)[0]
    assert int(palace.argmax()) == PALACE and palace[PALACE] > 0.2
    assert int(flower.argmax()) == FLOWER[variant]
    random_model = build_model(ModelConfig(encoder=encoder, encoder_weights=""), num_classes=3)
    rand = effnet_lite.LiteClassifier(random_model.encoder, variant).eval()
    with torch.no_grad():
        assert (int(rand(_photo("china.jpg")).argmax()) != PALACE
                or int(rand(_photo("flower.jpg")).argmax()) != FLOWER[variant])


def test_lite_weights_refuse_another_encoder():
    with pytest.raises(ValueError, match="tu-efficientnet_lite0"):
        build_model(ModelConfig(encoder="resnet18", encoder_weights="effnet-lite0-imagenet"))
    with pytest.raises(ValueError, match="tu-efficientnet_lite2"):
        build_model(ModelConfig(encoder="tu-efficientnet_lite1", encoder_weights="effnet-lite2-imagenet"))
    lite1 = build_model(ModelConfig(encoder="tu-efficientnet_lite1", encoder_weights=""), num_classes=3)
    with pytest.raises(ValueError, match="not tu-efficientnet_lite0"):  # the key check itself, below the registry
        effnet_lite.load_encoder_weights(lite1.encoder, "lite0")
    with pytest.raises(ValueError, match="lite3"):
        effnet_lite.weights_path("lite3")


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_arch_gives_logits_per_class(arch):
    cfg = ModelConfig(arch=arch, **(TINY if arch in ("unet", "unetplusplus") else
                                    dict(encoder="resnet18", encoder_weights="", encoder_depth=5)))
    model = build_model(cfg, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 3, 64, 96)


def test_encoder_weights_from_a_local_file(tmp_path):
    a = build_model(ModelConfig(**TINY))
    path = tmp_path / "enc.pt"
    torch.save(a.encoder.state_dict(), path)
    b = build_model(ModelConfig(**{**TINY, "encoder_weights": str(path)}))
    assert all(torch.equal(a.encoder.state_dict()[k], v) for k, v in b.encoder.state_dict().items())
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_model(ModelConfig(**{**TINY, "encoder_weights": str(tmp_path / "missing.pt")}))


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="nonet"):
        build_model(ModelConfig(arch="nonet"))


def _model_dir(tmp_path, scale=0.5):
    from playerseg.train.unet import write_model_dir

    cfg = ModelConfig(**TINY, num_classes=3)
    torch.manual_seed(0)
    model = build_model(cfg)
    pre = Preprocess(scale=scale, pad_multiple=32)
    write_model_dir(tmp_path / "m", model.state_dict(), model_meta(cfg, TaskClasses(), pre, [0.75, 1.0]))
    return tmp_path / "m", model.eval(), pre


def test_segmenter_loads_and_predicts_at_input_resolution(tmp_path):
    path, model, pre = _model_dir(tmp_path)
    seg = Segmenter.load(path, device="cpu")
    assert seg.classes.names == ("background", "player", "led_board")
    assert seg.preprocess == pre and seg.tta_scales == (0.75, 1.0)
    frames = np.random.default_rng(0).integers(0, 255, (2, 90, 150, 3), dtype=np.uint8)
    proba = seg.predict_proba(frames)
    assert proba.shape == (2, 3, 90, 150) and proba.dtype == np.float32
    assert np.allclose(proba.sum(1), 1.0, atol=1e-4)
    labels = seg.predict(frames, tta=True)
    assert labels.shape == (2, 90, 150) and labels.dtype == np.uint8 and labels.max() < 3
    # the exact preprocessing: resize by 0.5, normalise, pad 45x75 -> 64x96, crop, upsample
    small = np.stack([cv2.resize(f, (75, 45), interpolation=cv2.INTER_AREA) for f in frames])
    x = pre.pad(pre.normalize(torch.from_numpy(small).permute(0, 3, 1, 2)))
    assert x.shape[-2:] == (64, 96)
    with torch.no_grad():
        ref = torch.nn.functional.interpolate(model(x)[..., :45, :75].softmax(1), size=(90, 150), mode="bilinear",
                                              align_corners=False)
    assert np.allclose(ref.numpy(), proba, atol=1e-4)


def test_segmenter_loads_run_folders_and_uris(tmp_path):
    import fsspec

    path, _, _ = _model_dir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    path.rename(run / "best")
    frame = np.zeros((1, 64, 64, 3), np.uint8)
    expected = Segmenter.load(run, device="cpu").predict_proba(frame)
    fs = fsspec.filesystem("memory")
    for f in (run / "best").iterdir():
        fs.pipe(f"/models/m/{f.name}", f.read_bytes())
    assert np.allclose(Segmenter.load("memory://models/m", device="cpu").predict_proba(frame), expected)
    with pytest.raises(FileNotFoundError, match="model.json"):
        Segmenter.load(tmp_path / "nothing")


def test_export_writes_fp16_weights_torchscript_and_preprocessing(tmp_path):
    from playerseg.train.export import export_model

    path, model, pre = _model_dir(tmp_path)
    files = export_model(str(path), str(tmp_path / "out"), ["safetensors", "torchscript"], half=True,
                         example_hw=(64, 64))
    assert {"model.json", "preprocess.json", "model.safetensors", "model.ts"} <= set(files)
    spec = json.loads((tmp_path / "out" / "preprocess.json").read_text())
    assert spec["resize"]["scale"] == 0.5 and spec["pad"]["multiple"] == 32 and spec["normalize"]["mean"] == list(pre.mean)
    frame = np.random.default_rng(1).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    a = Segmenter.load(path, device="cpu").predict_proba(frame)
    b = Segmenter.load(tmp_path / "out", device="cpu").predict_proba(frame)
    assert np.abs(a - b).max() < 2e-2  # fp16 weights
    traced = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-4)


def test_a_crafted_checkpoint_never_runs_code(tmp_path):
    """A checkpoint.pt whose pickle would run a shell command is refused, naming the file, and the
    command never runs (weights are read with weights_only=True everywhere a file comes from outside)."""
    import json
    import os
    import pickle

    from playerseg.models.segmenter import Segmenter

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({
        "format": "playerseg-segmenter/1", "classes": ["background", "player", "led_board"],
        "model": {"arch": "unet", "encoder": "resnet18", "encoder_weights": "", "encoder_depth": 3,
                  "decoder_channels": [16, 16, 8], "num_classes": 3},
        "preprocess": {"scale": 1.0, "pad_multiple": 32, "mean": [0.5] * 3, "std": [0.5] * 3}}))
    (folder / "checkpoint.pt").write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ValueError, match="checkpoint.pt: unreadable weights"):
        Segmenter.load(str(folder), device="cpu", runtime="torch")
    assert not marker.exists()


def test_a_centre_head_adds_one_sigmoid_channel_and_keeps_its_base_model_exact(tmp_path):
    """`centre_head`: one more output channel after the classes; a donor without it
    (`run.init_weights`) becomes the base, whose class outputs stay exactly the donor's through
    training (no gradient, BatchNorm statistics fixed); the loader gives the class softmax and
    P(centre) (~0.1 at the start), `predict` ignores it."""
    from playerseg.train.unet import load_donor, write_model_dir

    path, donor, pre = _model_dir(tmp_path)
    cfg = ModelConfig(**TINY, num_classes=3, centre_head=True)
    model = build_model(cfg)
    load_donor(model, donor.state_dict())
    x = torch.randn(2, 3, 64, 64)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # a few training steps on the centre channel alone
        opt.zero_grad()
        model(x)[:, 3].mean().backward()
        opt.step()
    assert all(not p.requires_grad for p in model.base.parameters())
    with torch.no_grad():
        out, ref = model.eval()(x), donor(x)
    assert out.shape[1] == 4 and torch.allclose(out[:, :3], ref, atol=1e-5)
    write_model_dir(tmp_path / "c", model.state_dict(), model_meta(cfg, TaskClasses(), pre))
    seg = Segmenter.load(tmp_path / "c", device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (2, 90, 150, 3), dtype=np.uint8)
    proba = seg.predict_proba(frames, tta=True)
    assert proba.shape == (2, 4, 90, 150) and np.allclose(proba[:, :3].sum(1), 1.0, atol=1e-4)
    assert np.array_equal(seg.predict(frames), Segmenter.load(path, device="cpu").predict(frames))
    fresh = build_model(cfg)
    load_donor(fresh, donor.state_dict())
    with torch.no_grad():
        assert np.allclose(fresh.eval()(x)[:, 3].sigmoid(), 0.1, atol=0.02)  # CenterNet's prior
