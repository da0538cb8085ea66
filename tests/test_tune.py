"""`playerseg tune`: search-space validation, and a tiny ASHA sweep on a private 2-CPU Ray head
whose best config round-trips into `playerseg train`."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from playerseg.config import load, to_dict
from playerseg.sam.train import SamTrainConfig
from playerseg.train.config import TrainConfig
from playerseg.tune.space import SpaceError, apply, load_space, parse_space

REPO = Path(__file__).resolve().parents[1]


# ---- the space format (no Ray) -------------------------------------------------------------
def test_shipped_spaces_validate():
    unet = load_space(TrainConfig, REPO / "tune_spaces" / "unet.yaml")
    assert {"optim.lr", "optim.name", "sched.name", "input.crop", "loss.terms", "model"} <= set(unet.leaves)
    sam = load_space(SamTrainConfig, REPO / "tune_spaces" / "sam.yaml")
    assert {"optim.lr", "sam.mode", "crops.size"} <= set(sam.leaves)


def test_leaves_map_onto_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = parse_space(TrainConfig, {"optim.lr": {"loguniform": [1e-4, 1e-2]}, "optim.name": {"choice": ["adamw", "sgd"]},
                                      "sched.step_epochs": {"randint": [2, 5]}, "input.crop": {"grid": [[64, 64], [96, 96]]},
                                      "run.epochs": 3})
    ps = space.param_space()
    assert isinstance(ps["optim.lr"], Float) and isinstance(ps["optim.name"], Categorical)
    assert isinstance(ps["sched.step_epochs"], Integer)
    assert ps["input.crop"] == {"grid_search": [[64, 64], [96, 96]]} and ps["run.epochs"] == 3
    lr = ps["optim.lr"].sample()
    assert 1e-4 <= lr <= 1e-2


def test_nested_sections_and_dict_keys():
    space = parse_space(TrainConfig, {"optim": {"lr": {"uniform": [0.001, 0.01]}}, "loss.terms.dice": {"uniform": [0.5, 2]}})
    assert set(space.leaves) == {"optim.lr", "loss.terms.dice"}
    cfg = apply(TrainConfig, to_dict(TrainConfig()), {"loss.terms.dice": 0.7})
    assert cfg.loss.terms == {"ce": 1.0, "dice": 0.7}


def test_section_choice_merges_and_dict_value_replaces():
    base = TrainConfig()
    base.model.encoder_depth = 3
    cfg = apply(TrainConfig, to_dict(base), {"model": {"encoder": "resnet18", "encoder_weights": ""},
                                            "loss.terms": {"focal": 1.0}})
    assert (cfg.model.encoder, cfg.model.encoder_weights, cfg.model.encoder_depth) == ("resnet18", "", 3)
    assert cfg.loss.terms == {"focal": 1.0}


@pytest.mark.parametrize("space, message", [
    ({"optim.lrr": {"uniform": [0.1, 0.2]}}, "unknown key 'optim.lrr'"),
    ({"optimizer.lr": 0.1}, "unknown key 'optimizer.lr'"),
    ({"optim.lr": {"choise": [0.1, 0.2]}}, "is not a search type"),
    ({"optim.lr": {"uniform": [0.2, 0.1]}}, "low < high"),
    ({"optim.lr": {"loguniform": [0.0, 0.1]}}, "low > 0"),
    ({"optim.lr": {"uniform": [0.1]}}, "[low, high]"),
    ({"run.epochs": {"randint": [1.5, 3]}}, "integers"),
    ({"run.epochs": {"choice": [2, "many"]}}, "'many' does not fit"),
    ({"run.cache": {"uniform": [0.1, 0.2]}}, "does not fit"),
    ({"optim.lr.x": {"uniform": [0.1, 0.2]}}, "is a value, not a section"),
    ({"model": {"choice": ["resnet18"]}}, "options are mappings"),
    ({"run.epochs": 4}, "nothing is searched"),
])
def test_bad_spaces_are_clear_errors(tmp_path, space, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(SpaceError) as e:
        load_space(TrainConfig, path)
    assert str(path) in str(e.value) and message in str(e.value), str(e.value)


# ---- a real sweep --------------------------------------------------------------------------
EPOCHS = 4


def tiny_config(synth_dir, path: Path) -> Path:
    cfg = {
        "data": {"format": "acme", "root": str(synth_dir), "val_fraction": 0.25, "split_block": 3},
        "model": {"encoder": "resnet18", "encoder_weights": "", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
        "optim": {"name": "adamw"},
        "sched": {"name": "constant", "warmup_epochs": 0.0},
        "input": {"scale": 1.0, "crop": [64, 64], "pad_multiple": 32},
        "val": {"overlays": 0},
        "run": {"epochs": EPOCHS, "batch_size": 4, "samples_per_epoch": 16, "num_workers": 1, "cpus_per_worker": 0.5,
                "max_val_images": 2, "wandb_project": "playerseg-test"},
        "export": {"formats": ["safetensors"], "half": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def playerseg(args, env, cwd):
    proc = subprocess.run([sys.executable, "-m", "playerseg.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope="module")
def head():
    from _ray_head import LocalHead

    with LocalHead(num_cpus=2) as h:
        yield h


@pytest.fixture(scope="module")
def sweep(head, synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    base = tiny_config(synth_dir, tmp / "base.yaml")
    space = tmp / "space.yaml"
    # lr 0 never learns: ASHA must cut that trial before its last epoch
    space.write_text("optim.lr: {grid: [1.0e-2, 3.0e-3, 0.0]}\n")
    env = {**head.env, "WANDB_MODE": "disabled"}  # the trainer's W&B tracker is tested with the trainer
    args = ["tune", "unet", "--space", str(space), "--config", str(base), "--out", str(tmp / "sweeps"),
            "--name", "tiny", "--num-samples", "1", "--metric", "train/loss", "--mode", "min",
            "--max-concurrent", "2", "--no-wandb"]
    out = playerseg(args, env, tmp)
    return {"dir": tmp / "sweeps" / "tiny", "stdout": out, "env": env, "tmp": tmp, "args": args}


@pytest.mark.slow
def test_asha_stops_the_bad_trial_early(sweep):
    table = pd.read_csv(sweep["dir"] / "results.csv")
    assert len(table) == 3 and set(table["status"]) == {"OK"}
    assert set(table["config/optim.lr"]) == {1e-2, 3e-3, 0.0}
    frozen = table[table["config/optim.lr"] == 0.0].iloc[0]
    assert frozen["iterations"] < EPOCHS, table[["config/optim.lr", "iterations"]]
    assert table["iterations"].max() == EPOCHS
    assert pd.read_parquet(sweep["dir"] / "results.parquet")["trial_id"].tolist() == table["trial_id"].tolist()
    for trial_id in table["trial_id"]:  # every trial ran `playerseg train`'s job in its own run folder
        assert (sweep["dir"] / "trials" / trial_id / "metrics.csv").is_file()


@pytest.mark.slow
def test_best_config_and_checkpoint(sweep):
    import json

    best = json.loads((sweep["dir"] / "best.json").read_text())
    assert best["config"]["optim.lr"] > 0
    table = pd.read_csv(sweep["dir"] / "results.csv")
    assert best["best_train/loss"] == pytest.approx(table["best_train/loss"].min())
    assert best["checkpoint"] and Path(best["checkpoint"]).is_dir()
    cfg = load(TrainConfig, sweep["dir"] / "best_config.yaml")
    assert cfg.optim.lr == best["config"]["optim.lr"]
    assert cfg.model.encoder == "resnet18" and cfg.data.root == str(Path(cfg.data.root).resolve())


@pytest.mark.slow
def test_best_config_trains(sweep):
    out = playerseg(["train", "unet", "--config", str(sweep["dir"] / "best_config.yaml"), "--epochs", "1",
                     "--out", str(sweep["tmp"] / "runs"), "--name", "from_best"], sweep["env"], sweep["tmp"])
    run_dir = sweep["tmp"] / "runs" / "from_best"
    assert (run_dir / "export").is_dir() and (run_dir / "metrics.csv").is_file(), out
    assert load(TrainConfig, run_dir / "config.yaml").optim.lr == load(TrainConfig, sweep["dir"] / "best_config.yaml").optim.lr


@pytest.mark.slow
def test_resume_restores_the_sweep(sweep):
    before = pd.read_csv(sweep["dir"] / "results.csv")
    playerseg(["tune", "unet", "--out", str(sweep["tmp"] / "sweeps"), "--name", "tiny", "--resume"],
              sweep["env"], sweep["tmp"])
    after = pd.read_csv(sweep["dir"] / "results.csv")
    assert sorted(after["trial_id"]) == sorted(before["trial_id"])
    assert dict(zip(after["trial_id"], after["iterations"])) == dict(zip(before["trial_id"], before["iterations"]))


def test_existing_sweep_is_not_overwritten(tmp_path):
    from playerseg.tune.sweep import SweepConfig, run_sweep

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "tuner.pkl").write_bytes(b"x")
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {choice: [0.1, 0.01]}\n")
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(SweepConfig(space=str(space), out_dir=str(tmp_path), name="s"))


def test_bad_space_fails_before_any_trial(tmp_path):
    from playerseg.tune.sweep import SweepConfig, run_sweep

    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {choice: [0.1, 0.01]}\nloss.term: {ce: 1.0}\n")
    with pytest.raises(SpaceError, match="unknown key 'loss.term'"):
        run_sweep(SweepConfig(space=str(space), out_dir=str(tmp_path), name="s"))
    assert not (tmp_path / "s").exists()
