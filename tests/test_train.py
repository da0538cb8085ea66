"""Training: loss goes down on tiny synthetic data; Ray Train job with a worker killed mid-run
(FailureConfig) finishes every epoch; resuming from a checkpoint reproduces the same weights."""
from __future__ import annotations

import json
import math

import pytest
import torch

from playerseg.config import dump, load
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
    from playerseg.train.loop import build_training, seed_everything, train_one_epoch

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


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _weights(path):
    return torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_killed_worker_restarts_and_resume_reproduces_the_run(ray_cluster, synth_dir, tmp_path, monkeypatch):
    """Run A: the worker dies (os._exit) at the start of epoch 2; FailureConfig restarts it from
    the epoch-1 checkpoint and the run finishes. Run B (the CLI) resumes from A's epoch-0
    checkpoint: its epochs 1 and 2 give exactly A's weights, optimizer and scheduler state."""
    from playerseg.cli import main
    from playerseg.models.segmenter import Segmenter
    from playerseg.train.trainer import train

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = train(tiny_config(synth_dir, tmp_path, "a", inject_failure_epoch=2, max_failures=1))
    run_a = tmp_path / "a"
    assert (run_a / ".injected-failure-2").exists()  # the worker really died once
    history = json.loads((run_a / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]  # restarted at 2, nothing repeated or lost
    assert out["metrics"]["epoch"] == 2 and not math.isnan(out["metrics"]["val/iou/player"])
    assert (run_a / "overlays" / "epoch_002.png").is_file() and (run_a / "metrics.csv").is_file()
    assert Segmenter.load(run_a / "export").predict(torch.zeros(1, 40, 60, 3, dtype=torch.uint8).numpy()).shape == (1, 40, 60)

    dump(tiny_config(synth_dir, tmp_path, "b"), tmp_path / "b.yaml")
    rc = main(["train", "unet", "--config", str(tmp_path / "b.yaml"), "--resume", str(run_a / "checkpoint_epoch000")])
    assert rc == 0
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

