"""Training: loss goes down on tiny synthetic data; Ray Train job with a worker killed mid-run
(FailureConfig) finishes every epoch; resuming from a checkpoint reproduces the same weights."""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from playerseg.config import dump, load
from playerseg.data.registry import SourceConfig
from playerseg.train.config import TrainConfig

pytestmark = pytest.mark.slow


def tiny_config(synth_dir, out_dir, name, **run) -> TrainConfig:
    overrides = [
        f"data.root={synth_dir}", "data.split_block=3", "data.val_fraction=0.25",
        "model.encoder=resnet18", "model.encoder_weights=", "model.encoder_depth=3",
        "model.decoder_channels=[16,16,8]",
        "input.scale=1.0", "input.crop=[64,64]", "input.pad_multiple=32",
        "augment.rotate.p=0", "augment.blur.p=0",
        "optim.lr=0.01", "sched.warmup_epochs=0",
        "run.batch_size=4", "run.samples_per_epoch=8", "run.epochs=3", "run.cpus_per_worker=1",
        f"run.out_dir={out_dir}", f"run.name={name}", "run.keep_checkpoints=10",
        "val.overlays=1", "export.formats=[safetensors]",
    ]
    overrides += [f"run.{k}={v}" for k, v in run.items()]
    return load(TrainConfig, None, overrides)


def test_a_few_steps_reduce_the_loss(synth_dir, tmp_path):
    from playerseg.optim import build_optimizer, build_scheduler
    from playerseg.train.loop import seed_everything
    from playerseg.train.unet import build_training, train_one_epoch

    cfg = tiny_config(synth_dir, tmp_path, "local")
    cfg.run.samples_per_epoch = 16
    seed_everything(0)
    device = torch.device("cpu")
    classes, pre, model, loss_fn, train_set, val_set, failures = build_training(cfg, device)
    assert len(train_set.store) and len(val_set) and not failures
    loader = torch.utils.data.DataLoader(train_set, batch_size=4, shuffle=True)
    opt = build_optimizer(cfg.optim, model.parameters())
    sched = build_scheduler(cfg.sched, opt, len(loader), 6)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [train_one_epoch(model, loader, loss_fn, opt, sched, scaler, pre, device, 1, False)["train/loss"]
              for _ in range(6)]
    assert losses[-1] < 0.7 * losses[0], losses


def _weights(path):
    return torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_killed_worker_restarts_and_resume_reproduces_the_run(ray_dashboard, synth_dir, tmp_path, monkeypatch, capsys):
    """Run A: the worker dies (os._exit) at the start of epoch 2; FailureConfig restarts it from
    the epoch-1 checkpoint and the run finishes. Run B (the CLI) resumes from A's epoch-0
    checkpoint: its epochs 1 and 2 give exactly A's weights, optimizer and scheduler state."""
    from playerseg.cli import main
    from playerseg.models.segmenter import Segmenter
    from playerseg.train.trainer import train

    import shutil

    monkeypatch.setenv("WANDB_MODE", "offline")
    data = tmp_path / "data"  # the synthetic set plus one mask without its image: skipped and reported
    shutil.copytree(synth_dir, data)
    shutil.copy(sorted((data / "masks").glob("*.png"))[0], data / "masks" / "frame_999.png")
    out = train(tiny_config(data, tmp_path, "a", inject_failure_epoch=2, max_failures=1))
    assert "frame_999.jpg" in out["failures"] and "image file missing" in out["failures"]
    run_a = tmp_path / "a"
    assert (run_a / ".injected-failure-2").exists()  # the worker really died once
    history = json.loads((run_a / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]  # restarted at 2, nothing repeated or lost
    assert out["metrics"]["epoch"] == 2 and not math.isnan(out["metrics"]["val/iou/player"])
    assert (run_a / "overlays" / "epoch_002.png").is_file() and (run_a / "metrics.csv").is_file()
    assert Segmenter.load(run_a / "export").predict(torch.zeros(1, 40, 60, 3, dtype=torch.uint8).numpy()).shape == (1, 40, 60)

    dump(tiny_config(data, tmp_path, "b"), tmp_path / "b.yaml")
    rc = main(["train", "unet", "--config", str(tmp_path / "b.yaml"), "--resume", str(run_a / "checkpoint_epoch000")])
    assert rc == 1 and "skipped samples" in capsys.readouterr().out  # trained on the rest, said, exit 1
    a, b = _weights(run_a / "checkpoint_epoch002"), _weights(tmp_path / "b" / "checkpoint_epoch002")
    assert a["epoch"] == b["epoch"] == 2
    assert b["scheduler"]["steps"] == a["scheduler"]["steps"]
    for k, v in a["train_model"].items():
        assert torch.equal(v, b["train_model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    # and training did something: epoch 0 weights differ from epoch 2 weights
    first = _weights(run_a / "checkpoint_epoch000")["train_model"]
    assert any(not torch.equal(first[k], v) for k, v in a["train_model"].items())



def _yolo_copy(synth_dir, root):
    """The synthetic frames as a box-only YOLO set (person boxes from the COCO annotations)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [ball, player]\n")
    coco = json.loads((synth_dir / "annotations.json").read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    for img in coco["images"]:
        stem = "m00001_0_" + str(int(img["file_name"].split("_")[-1].split(".")[0]))
        (root / "images" / f"{stem}.jpg").write_bytes((synth_dir / "images" / img["file_name"]).read_bytes())
        lines = []
        for a in coco["annotations"]:
            if a["image_id"] == img["id"] and cats[a["category_id"]] in ("team_a", "team_b", "referee"):
                x, y, w, h = a["bbox"]
                W, H = img["width"], img["height"]
                lines.append(f"1 {(x + w / 2) / W} {(y + h / 2) / H} {w / W} {h / H}")
        (root / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")


def test_two_sources_train_side_by_side_and_validate_each(synth_dir, tmp_path):
    """A pixel-labelled and a box-only source in one run: crops come from both (by weight), the loss
    has its partial and box terms, validation reports each source's own metrics and the mean score."""
    from playerseg.train.unet import build_training, train_one_epoch, validate

    _yolo_copy(synth_dir, tmp_path / "boxes")
    cfg = tiny_config(synth_dir, tmp_path, "multi")
    cfg.data.sources = [
        SourceConfig(name="pix", format="acme", root=str(synth_dir), split_block=3, val_fraction=0.25),
        SourceConfig(name="box", format="yolo", root=str(tmp_path / "boxes"), split_block=3, val_fraction=0.25,
                     weight=3.0)]
    cfg.val.score_keys = ["pix/iou/player", "box/recall/player"]
    classes, pre, model, loss_fn, train_set, val_set, failures = build_training(cfg, torch.device("cpu"))
    assert not failures and {n for n, _ in val_set.keys} == {"pix", "box"}
    train_set.set_epoch_seed(1)
    drawn = [train_set.store.keys[int(np.random.default_rng((1, i)).choice(len(train_set.p), p=train_set.p))][0]
             for i in range(400)]
    assert 0.65 < drawn.count("box") / len(drawn) < 0.85  # weight 3 : 1
    loader = torch.utils.data.DataLoader(train_set, batch_size=4)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    sched = types.SimpleNamespace(step=lambda: None)
    m = train_one_epoch(model, loader, loss_fn, opt, sched, torch.amp.GradScaler("cpu", enabled=False), pre,
                        torch.device("cpu"), 1, False)
    assert {"train/loss_partial", "train/loss_box_projection", "train/loss_ce"} <= set(m)
    metrics, _ = validate(model, val_set, classes, cfg, pre, torch.device("cpu"))
    assert "pix/players_over_led_iou" in metrics and "box/box_AP50" in metrics and "box/iou/player" not in metrics
    assert metrics["score"] == pytest.approx((metrics["pix/iou/player"] + metrics["box/recall/player"]) / 2)


def _reduce_on_rank(rank: int, world: int, port: int, out) -> None:
    import torch.distributed as dist

    from playerseg.train.loop import Worker, reduce_metrics

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    mine = {"epoch": 3, "train/loss": float(rank + 1), "calls": rank + 1, "visits": np.eye(2)[rank]}
    if rank == 0:
        mine["val/iou"] = 0.5  # only rank 0 validates (the Unet family)
    worker = Worker(rank, world, torch.device("cpu"), False, Path("."))
    got = reduce_metrics(mine, worker, sum_keys=("calls", "visits"))
    out.put((rank, got["epoch"], got["train/loss"], got["val/iou"], got["calls"], got["visits"].tolist()))
    dist.destroy_process_group()


def test_metrics_reduce_over_ranks_the_same_on_every_rank():
    """train/ keys: the mean over ranks; val/ keys only rank 0 has: rank 0's; sum_keys: summed (arrays too)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reduce_on_rank, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == [(r, 3, 1.5, 0.5, 3, [1.0, 1.0]) for r in range(2)]
