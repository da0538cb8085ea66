"""SAM building, prompts, refinement, loss, cache items and decoder-only training on the tiny
UNTRAINED configuration and synthetic frames (no Ray here; see test_sam_job.py)."""
import numpy as np
import pytest
import torch

from playerseg.classes import TaskClasses
from playerseg.data.synthetic import render_frame
from playerseg.sam.build import SamCheckpointError, build_sam, embedding_shape
from playerseg.sam.checkpoint import load_finetuned_sam, load_trained, save_trained
from playerseg.sam.dataset import CachedItems, PromptConfig
from playerseg.sam.embeddings import embed_frame, list_items, load_item
from playerseg.sam.head import SamEmbeddingHead, build_sam_head
from playerseg.sam.inputs import Geometry
from playerseg.sam.loss import SamLoss, SamLossConfig
from playerseg.sam.model import SamTrainModel
from playerseg.sam.prompts import Crop, CropConfig, jitter_boxes, player_crops, sample_points
from playerseg.sam.refine import SamRefiner

CLASSES = TaskClasses()


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def frame():
    return render_frame(0, 3, (256, 144), people=6)


def test_tiny_build_is_deterministic_and_follows_its_geometry():
    a, b = build_sam("tiny_untrained"), build_sam("tiny_untrained")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert embedding_shape(a) == (256, 16, 16)
    assert Geometry.of(a) == Geometry(img_size=256, low_res=64)
    with pytest.raises(ValueError, match="unknown SAM model type 'vit_x'"):
        build_sam("vit_x")


def test_missing_or_mismatched_checkpoint_names_the_model_type(tmp_path):
    with pytest.raises(SamCheckpointError, match=r"nope\.pth: SAM 'vit_b' checkpoint not found"):
        build_sam("vit_b", str(tmp_path / "nope.pth"))
    state = build_sam("tiny_untrained").state_dict()
    bad = dict(state)
    bad.pop("mask_decoder.iou_token.weight")
    bad["mask_decoder.mask_tokens.weight"] = torch.zeros(2, 256)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(SamCheckpointError, match=r"does not fit SAM model type 'tiny_untrained'.*1 missing key.*"
                                                 r"iou_token.*1 shape mismatch"):
        build_sam("tiny_untrained", str(tmp_path / "bad.pth"))
    vit_b_like = {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}
    torch.save(vit_b_like, tmp_path / "vit_b.pth")
    with pytest.raises(SamCheckpointError, match=r"'tiny_untrained'.*looks like a 'vit_b' checkpoint"):
        build_sam("tiny_untrained", str(tmp_path / "vit_b.pth"))
    torch.save(state, tmp_path / "ok.pth")  # the right one loads
    assert torch.equal(build_sam("tiny_untrained", str(tmp_path / "ok.pth")).state_dict()[
        "mask_decoder.iou_token.weight"], state["mask_decoder.iou_token.weight"])


def test_refine_encodes_once_and_decodes_all_boxes_in_one_call(frame):
    sam = build_sam("tiny_untrained")
    calls = {"enc": 0, "dec": 0}
    sam.image_encoder.register_forward_hook(lambda *a: calls.__setitem__("enc", calls["enc"] + 1))
    sam.mask_decoder.register_forward_hook(lambda *a: calls.__setitem__("dec", calls["dec"] + 1))
    boxes = frame.boxes
    masks, scores = SamRefiner(sam, "cpu").refine(frame.image, boxes)
    assert len(boxes) >= 4
    assert masks.shape == (len(boxes), frame.height, frame.width) and masks.dtype == bool
    assert scores.shape == (len(boxes),)
    assert calls == {"enc": 1, "dec": 1}
    empty, s = SamRefiner(sam, "cpu").refine(frame.image, np.zeros((0, 4)))
    assert empty.shape == (0, frame.height, frame.width) and len(s) == 0


def test_prompts_jitter_points_and_crops(frame):
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 20, 50, 100], [0, 0, 5, 5]], np.float32)
    j = jitter_boxes(boxes, rng, 0.1, 20, size=(128, 96))
    assert (j[:, 2:] > j[:, :2]).all() and (j >= 0).all() and (j[:, [0, 2]] <= 96).all() and (j[:, [1, 3]] <= 128).all()
    assert not np.allclose(j, boxes) and np.abs(j - boxes).max() <= 20
    mask = np.zeros((2, 32, 32), bool)
    mask[:, 8:16, 8:16] = True
    coords, labels = sample_points(mask, np.array([[4, 4, 20, 20]] * 2), rng, positive=2, negative=2)
    xy = coords.astype(int)
    assert labels.tolist() == [[1, 1, 0, 0]] * 2
    assert all(mask[0, y, x] for x, y in xy[:, :2].reshape(-1, 2))
    assert not any(mask[0, y, x] for x, y in xy[:, 2:].reshape(-1, 2))
    crops = player_crops(frame, CLASSES, CropConfig(size=64, max_per_frame=3))
    assert crops[0] == Crop.full(frame) and 1 < len(crops) <= 4
    board = frame.semantic == CLASSES.led_board
    players = [i for i in frame.instances if i.class_id == CLASSES.player]
    on_board = [p for p in players if board[int(p.box[1]):int(p.box[3]), int(p.box[0]):int(p.box[2])].any()]
    assert on_board, "the synthetic scene puts players over the LED board"
    assert any(crops[1].contains(p.box) for p in on_board)  # those come first
    assert all(c.x1 - c.x0 >= 64 and c.x1 <= frame.width and c.y1 <= frame.height for c in crops[1:])


def test_loss_prefers_the_right_mask_and_picks_the_best_of_three():
    target = torch.zeros(2, 16, 16, dtype=torch.bool)
    target[:, 4:12, 4:12] = True
    good = torch.where(target, 8.0, -8.0).unsqueeze(1)
    loss = SamLoss()
    right = loss(good, torch.ones(2, 1), target)
    wrong = loss(-good, torch.ones(2, 1), target)
    assert right["iou"] == 1 and wrong["iou"] == 0 and right["loss"] < 0.01 < wrong["loss"]
    three = torch.cat([-good, good, -good], dim=1)
    assert torch.allclose(loss(three, torch.ones(2, 3), target)["loss"], right["loss"])


def test_cache_item_round_trip_and_decoder_training_never_runs_the_encoder(tmp_path):
    from playerseg.optim import OptimConfig, build_optimizer
    from playerseg.sam.train import run_epoch

    torch.manual_seed(0)
    model = SamTrainModel(build_sam("tiny_untrained"), "decoder")
    assert model.trained and all(n.startswith("mask_decoder.") for n in model.trained)
    geo = Geometry.of(model.sam)
    keys = []
    for i in range(2):
        s = render_frame(0, 7 * i, (256, 144), people=6)
        embed_frame(model.sam, s, CLASSES, CropConfig(size=64, max_per_frame=2, full_frame=False), (CLASSES.player,),
                    str(tmp_path))
        keys.append(s.id)
    paths = list_items(str(tmp_path), keys)
    assert len(paths) == 4
    item = load_item(paths[0])
    assert item["embedding"].dtype == np.float16 and item["embedding"].shape == (256, 16, 16)
    assert item["masks"].shape[1:] == (64, 64) and item["masks"].any() and len(item["boxes"]) == len(item["masks"])

    def no_encoder(*a, **k):
        raise AssertionError("the image encoder ran in a cached epoch")

    model.sam.image_encoder.forward = no_encoder
    model.sam.image_encoder.patch_embed.forward = no_encoder
    items = CachedItems(paths)
    order = list(range(len(items)))
    # from random init the paper's 20:1 focal weight first drives every mask empty; 1:1 learns fast
    loss = SamLoss(SamLossConfig(focal=1.0))
    prompts = PromptConfig()

    def evaluate():
        return run_epoch(model, items, order, 4, np.random.default_rng(1), prompts, geo, loss)

    before = evaluate()
    opt = build_optimizer(OptimConfig(lr=1e-3, weight_decay=0.0), [p for p in model.parameters() if p.requires_grad])
    rng = np.random.default_rng(0)
    for _ in range(24):
        run_epoch(model, items, order, 4, rng, prompts, geo, loss, optimizer=opt)
    after = evaluate()
    assert after["loss"] < 0.9 * before["loss"]
    assert after["iou"] > before["iou"] + 0.05

    ckpt = tmp_path / "sam_trained.pt"
    save_trained(str(ckpt), model.sam, model.trained, model_type="tiny_untrained", base_checkpoint=None,
                 mode="decoder", epoch=23)
    state = load_trained(str(ckpt))
    assert set(state["trained"]) == set(model.trained) and state["epoch"] == 23
    back = load_finetuned_sam(str(ckpt))
    trained = dict(model.sam.named_parameters())
    for name, p in back.named_parameters():
        assert torch.equal(p, trained[name]), name  # decoder: trained; encoder: the same base
    with pytest.raises(SamCheckpointError, match="not a playerseg SAM training checkpoint"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        load_trained(str(tmp_path / "other.pt"))


def test_head_on_embeddings_and_as_a_segmentation_model():
    head = SamEmbeddingHead(num_classes=3, hidden=32)
    assert head(torch.randn(2, 256, 16, 16)).shape == (2, 3, 64, 64)
    model = build_sam_head(num_classes=3, model_type="tiny_untrained", hidden=32)
    x = torch.randn(1, 3, 72, 128)
    assert model(x).shape == (1, 3, 72, 128)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_shards_are_disjoint_equal_and_cover_every_item():
    from playerseg.sam.train import _shard

    for n, world in [(12, 2), (12, 3), (7, 2), (1, 2)]:
        rng_seed = [0, 3]
        shards = [_shard(n, r, world, np.random.default_rng(rng_seed)) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # every rank steps as often (DDP)
        assert sorted(set().union(*map(set, shards))) == list(range(n))
        visits = sum(len(s) for s in shards)
        assert visits == world * -(-n // world)  # only the padding to equal shards repeats items
        if n % world == 0:
            assert visits == n  # disjoint
    assert _shard(5, 0, 1, None) == [0, 1, 2, 3, 4]


def test_paths_made_absolute_and_one_cache_per_model_data_and_crops(tmp_path, monkeypatch):
    from playerseg.config import load
    from playerseg.sam.embeddings import cache_spec
    from playerseg.sam.train import SamTrainConfig, cache_dir_of

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load(SamTrainConfig, None, ["data.root=data", "cache.dir=caches", "data.mapping=s3://b/m.yaml",
                                      "sam.checkpoint=missing.pth"])
    # `load` resolves every path field once: the existing data folder, the cache folder a run creates
    assert (cfg.data.root, cfg.cache.dir) == (str(tmp_path / "data"), str(tmp_path / "caches"))
    assert cfg.data.mapping == "s3://b/m.yaml"  # URIs stay as they are
    assert cfg.sam.checkpoint == "missing.pth"  # a missing file stays as given, for its own error message

    def cache_of(*sets):
        c = load(SamTrainConfig, None, [f"data.root={tmp_path / 'data'}", *sets])
        spec = cache_spec(c.data, c.crops, c.sam.model_type, c.sam.checkpoint, c.prompts.classes, 256, c.cache.dtype)
        return cache_dir_of(c, tmp_path / "runs" / "r", spec)

    base = cache_of()
    assert base.startswith(f"{tmp_path / 'runs' / 'sam_cache'}/tiny_untrained-")
    # what does not change the embeddings or targets shares the cache; crops and data do not
    assert cache_of("sam.mode=decoder_prompt", "optim.lr=0.1", "data.val_fraction=0.5") == base
    assert len({base, cache_of("crops.size=384"), cache_of("crops.max_per_frame=2"), cache_of("data.format=coco")}) == 4


def test_a_cache_built_with_other_options_is_refused_and_overwrite_rebuilds_it(tmp_path):
    import json

    from playerseg.config import ConfigError
    from playerseg.ledger import Ledger
    from playerseg.sam.embeddings import CacheConfig, CacheFrame, build_cache

    cache = str(tmp_path / "cache")
    old, new = {"version": 2, "crops": {"size": 64}}, {"version": 2, "crops": {"size": 48}}
    with Ledger(cache, old) as ledger:  # a cache of crop size 64 with one frame done
        (tmp_path / "cache" / "f1").mkdir()
        (tmp_path / "cache" / "f1" / "c.npz").write_bytes(b"item")
        ledger.mark(CacheFrame("f1"), crops=["c"])
    assert list_items(cache, ["f1", "f2"]) == [f"{cache}/f1/c.npz"]
    with pytest.raises(ConfigError, match=r"crops.size 64 -> 48.*another cache.dir, or --overwrite") as err:
        build_cache(new, cache, ["f1"], CacheConfig())
    assert len(str(err.value).splitlines()) == 1
    assert list_items(cache, ["f1"]) == [f"{cache}/f1/c.npz"]  # refused before any work: nothing removed
    assert not build_cache(new, cache, [], CacheConfig(), overwrite=True)  # rebuilt (no frames asked here)
    assert list_items(cache, ["f1"]) == [] and not (tmp_path / "cache" / "f1").exists()
    assert json.loads((tmp_path / "cache" / "_run.json").read_text()) == new


def test_a_shared_cache_waits_for_its_builder_instead_of_refusing(tmp_path):
    import threading

    from playerseg.ledger import Ledger

    cache, entered = str(tmp_path / "cache"), threading.Event()

    def second_builder():
        with Ledger(cache, {"v": 1}, wait=True):
            entered.set()

    with Ledger(cache, {"v": 1}, wait=True):
        t = threading.Thread(target=second_builder)
        t.start()
        assert not entered.wait(0.3)  # held: the second builder waits
    t.join(30)
    assert entered.is_set()


def test_train_sam_command_exits_1_when_frames_were_skipped(monkeypatch, tmp_path, capsys):
    """The exit rule of every job: trained on what could be read, the skipped frames listed, status 1
    (it used to be 0 unless nothing at all could be read)."""
    import argparse

    from playerseg.data.errors import DataError, Failures
    from playerseg.sam import train as sam_train
    from playerseg.sam import train_cmd

    failures = Failures()
    out = {"run_dir": str(tmp_path), "seconds": 1.0, "train_items": 5, "val_items": 1, "checkpoint": None,
           "metrics": {}, "failures": failures}
    monkeypatch.setattr(sam_train, "train_sam", lambda cfg, overwrite=False: out)  # the job itself: tests/test_sam_job.py
    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    args = p.parse_args([])
    assert train_cmd.run(args) == 0
    failures.add("frame_007.jpg", DataError("frame_007.jpg", "cannot decode"))
    assert train_cmd.run(args) == 1
    assert "frame_007.jpg" in capsys.readouterr().out
