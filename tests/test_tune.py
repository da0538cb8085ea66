"""`playerseg tune`: search-space validation, a tiny ASHA sweep on a private 2-CPU Ray head (conftest's
`tune_head`, W&B disabled in it) whose best config round-trips into `playerseg train`, and a
tiny PBT sweep whose bad trial clones the good one."""
import json
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
    broadcast = load_space(TrainConfig, REPO / "tune_spaces" / "unet_broadcast.yaml")
    assert {"input.target_height", "loss.box_projection", "loss.box_pairwise", "loss.partial"} <= set(broadcast.leaves)


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
def head(tune_head):
    """conftest's private head, shared with test_tune_sam."""
    return tune_head


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


# ---- PBT: exploit = restart from a donor's weights and epoch, with the new hyperparameters --------
def test_keep_moments_keeps_the_new_hyperparameters():
    import torch

    from playerseg.optim import OptimConfig, SchedConfig, build_optimizer, build_scheduler
    from playerseg.train.loop import keep_moments

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    donor = build_optimizer(OptimConfig(name="adamw", lr=1e-2, weight_decay=1e-4), model.parameters())
    for _ in range(3):
        model(torch.randn(8, 4)).square().mean().backward()
        donor.step()
        donor.zero_grad()
    new = build_optimizer(OptimConfig(name="adamw", lr=3e-3, weight_decay=0.05, betas=(0.8, 0.99)), model.parameters())
    build_scheduler(SchedConfig(name="constant", warmup_epochs=0.0), new, 4, 2)  # sets initial_lr, as in the loop
    keep_moments(new, donor.state_dict())
    group = new.param_groups[0]
    assert (group["lr"], group["initial_lr"], group["weight_decay"], group["betas"]) == (3e-3, 3e-3, 0.05, (0.8, 0.99))
    for p in model.parameters():  # the donor's moments and step counts
        assert torch.equal(new.state[p]["exp_avg"], donor.state[p]["exp_avg"])
        assert float(new.state[p]["step"]) == 3


def test_advance_schedule_is_the_schedule_at_that_step():
    import torch

    from playerseg.optim import OptimConfig, SchedConfig, build_optimizer, build_scheduler
    from playerseg.train.loop import advance_schedule

    cfg = SchedConfig(name="cosine", warmup_epochs=1.0)
    params = [torch.nn.Parameter(torch.zeros(1))]
    stepped_opt = build_optimizer(OptimConfig(lr=2e-3), params)
    stepped = build_scheduler(cfg, stepped_opt, 5, 4)
    for _ in range(12):
        stepped_opt.step()
        stepped.step()
    jumped = build_scheduler(cfg, build_optimizer(OptimConfig(lr=2e-3), params), 5, 4)
    advance_schedule(jumped, 12)
    assert jumped.steps == 12 and jumped.lr == pytest.approx(stepped.lr) and 0 < jumped.lr < 2e-3


def test_clamp_keeps_perturbed_values_in_their_range():
    space = parse_space(TrainConfig, {"optim.lr": {"loguniform": [1e-4, 1e-2]}, "augment.hflip.p": {"uniform": [0.0, 0.5]},
                                      "sched.step_epochs": {"randint": [2, 5]}, "optim.name": {"choice": ["adamw", "sgd"]}})
    out = space.clamp({"optim.lr": 1.2e-2, "augment.hflip.p": 0.6, "sched.step_epochs": 5, "optim.name": "sgd"})
    assert out == {"optim.lr": 1e-2, "augment.hflip.p": 0.5, "sched.step_epochs": 4, "optim.name": "sgd"}
    assert space.clamp({"optim.lr": 5e-3, "augment.hflip.p": 0.2, "sched.step_epochs": 3})["optim.lr"] == 5e-3


def test_pbt_never_mutates_what_shapes_the_weights():
    from playerseg.tune.pbt import pbt_mutations
    from playerseg.tune.sweep import FAMILIES

    unet = load_space(TrainConfig, REPO / "tune_spaces" / "unet.yaml")
    mutations = pbt_mutations(unet, FAMILIES["unet"].weights_keys)
    assert "model" in unet.leaves and "model" not in mutations
    assert {"optim.lr", "optim.name", "loss.terms", "input.crop"} <= set(mutations)
    only_model = parse_space(TrainConfig, {"model.encoder_depth": {"choice": [3, 4]}})
    with pytest.raises(ValueError, match="nothing to mutate"):
        pbt_mutations(only_model, FAMILIES["unet"].weights_keys)


def test_pbt_needs_a_loop_that_starts_from_init_from(tmp_path, monkeypatch):
    import dataclasses

    from playerseg.tune import sweep
    from playerseg.tune.sweep import SweepConfig, run_sweep

    assert sweep.FAMILIES["unet"].pbt and sweep.FAMILIES["sam"].pbt
    monkeypatch.setitem(sweep.FAMILIES, "nopbt", dataclasses.replace(sweep.FAMILIES["sam"], pbt=False))
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {choice: [0.1, 0.01]}\n")
    with pytest.raises(ValueError, match="can't run PBT"):
        run_sweep(SweepConfig(family="nopbt", scheduler="pbt", space=str(space), out_dir=str(tmp_path), name="s"))
    assert not (tmp_path / "s").exists()


def _tune_checkpoint(folder: Path, origin: dict | None):
    from ray import tune

    from playerseg.tune.report import ORIGIN

    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"weights")
    checkpoint = tune.Checkpoint(str(folder))
    if origin is not None:
        checkpoint.set_metadata({ORIGIN: origin})
    return checkpoint


def test_trial_run_folder_follows_the_start_checkpoint(tmp_path, monkeypatch):
    import json

    import ray.tune

    from playerseg.tune.report import trial_run

    trials = tmp_path / "trials"
    start = {"checkpoint": None}
    monkeypatch.setattr(ray.tune, "get_checkpoint", lambda: start["checkpoint"])
    assert trial_run("t1", str(trials), {}) == ("t1", None)  # first start (and every ASHA start)

    # PBT exploit: t1 restarts from donor t0's epoch-2 checkpoint, with its new config
    start["checkpoint"] = _tune_checkpoint(tmp_path / "t0" / "checkpoint_000002",
                                           {"trial_id": "t0", "run": "t0", "epoch": 2, "tag": "epoch002"})
    run, parent = trial_run("t1", str(trials), {"optim.lr": 0.02})
    assert run == "t1/pbt-t0-epoch002"
    init = trials / run / "init_checkpoint"
    assert parent == json.loads((trials / run / "parent.json").read_text())
    assert (parent["trial_id"], parent["epoch"], parent["run"], parent["init_from"], parent["config"]) == \
        ("t0", 2, "t0", str(init), {"optim.lr": 0.02})
    assert (init / "checkpoint.pt").read_bytes() == b"weights"
    (init / "kept").write_text("first copy")  # the same exploit restarted: same folder, first copy kept
    assert trial_run("t1", str(trials), {"optim.lr": 0.02})[0] == run and (init / "kept").is_file()

    # its own later checkpoint (Tuner.restore, a pause): continue that run folder, with its parent
    start["checkpoint"] = _tune_checkpoint(tmp_path / "t1" / "checkpoint_000004",
                                           {"trial_id": "t1", "run": run, "epoch": 4, "tag": "epoch004"})
    assert trial_run("t1", str(trials), {"optim.lr": 0.02}) == (run, parent)

    start["checkpoint"] = ray.tune.Checkpoint(str(tmp_path / "t0" / "checkpoint_000009"))  # pruned meanwhile
    with pytest.raises(FileNotFoundError, match="keep_checkpoints"):
        trial_run("t1", str(trials), {})


# An epoch of the tiny config takes ~0.6 s, a trial's start 40-80 s on 2 busy cores, so the two trials start
# seconds apart, and asynchronous PBT clones only a donor still running when the other trial reaches a
# perturbation: 5 epochs (3 s) were too few for a CI run's start skew, 40 (~25 s) leave room; the test's
# time is its starts and the exploit's restart, not its epochs.
PBT_EPOCHS = 40


@pytest.fixture(scope="module")
def pbt_sweep(head, synth_dir, tmp_path_factory):
    """Two trials, PBT every epoch on train/loss. The space's seeded draws (seed 10) give one lr of
    ~1.6e-2 and one of ~2e-7 (which does not learn): the second must clone the first."""
    tmp = tmp_path_factory.mktemp("pbt")
    base = tiny_config(synth_dir, tmp / "base.yaml")
    space = tmp / "space.yaml"
    space.write_text("optim.lr: {loguniform: [1.0e-8, 3.0e-2]}\n")
    env = {**head.env, "WANDB_MODE": "disabled"}
    playerseg(["tune", "unet", "--space", str(space), "--config", str(base), "--set", f"run.epochs={PBT_EPOCHS}",
               "--out", str(tmp / "sweeps"), "--name", "pbt", "--scheduler", "pbt", "--num-samples", "2",
               "--metric", "train/loss", "--mode", "min", "--max-concurrent", "2", "--no-wandb",
               "--sweep-set", "seed=10", "--sweep-set", "perturbation_interval=1",
               "--sweep-set", f"keep_checkpoints={PBT_EPOCHS}"], env, tmp)
    return tmp / "sweeps" / "pbt"


@pytest.mark.slow
def test_pbt_bad_trial_restarts_from_the_good_ones_weights(pbt_sweep):
    import torch

    table = pd.read_csv(pbt_sweep / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"OK"}
    first_lr = {t: load(TrainConfig, pbt_sweep / "trials" / t / "config.yaml").optim.lr for t in table["trial_id"]}
    bad, good = sorted(first_lr, key=first_lr.get)
    assert first_lr[bad] < 1e-6 < 5e-3 < first_lr[good], f"the seeded draws changed: {first_lr}; pick another seed"
    history = {t: pd.read_csv(pbt_sweep / t / "progress.csv") for t in first_lr}  # Tune's, across restarts

    cloned = history[bad][history[bad]["parent_trial"] == good]
    columns = ["training_iteration", "epoch", "train/loss", "run_folder", "parent_trial", "date"]
    assert len(cloned), f"no clone: bad\n{history[bad][columns]}\ngood\n{history[good][columns]}"
    after = cloned.iloc[0]  # the bad trial's first epoch after it cloned the good one
    e = int(after["parent_epoch"])
    # the donor's epoch and Tune iteration counters go on
    assert (after["epoch"], after["training_iteration"]) == (e + 1, e + 2)
    run_dir = pbt_sweep / "trials" / after["run_folder"]
    assert after["run_folder"] == f"{bad}/pbt-{good}-epoch{e:03d}"
    parent = json.loads((run_dir / "parent.json").read_text())
    assert (parent["trial_id"], parent["epoch"], parent["run"]) == (good, e, good)
    state = torch.load(run_dir / "init_checkpoint" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == e and state["config"]["optim"]["lr"] == first_lr[good]  # the donor's state

    # explore: a new lr (the donor's x0.8 / x1.2 or a new draw), and it is the lr that trains
    cfg = load(TrainConfig, run_dir / "config.yaml")
    assert cfg.run.init_from == str(run_dir / "init_checkpoint")
    assert cfg.optim.lr not in (first_lr[bad], first_lr[good]) and parent["config"]["optim.lr"] == cfg.optim.lr
    assert after["lr"] == pytest.approx(cfg.optim.lr)  # constant schedule: not the donor's optimizer lr
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].iloc[0] == e + 1

    # the weights are the donor's: its loss is at the good trial's level, far from its own
    own = history[bad][history[bad]["run_folder"] == bad]["train/loss"]
    donor = history[good][history[good]["run_folder"] == good].set_index("epoch")["train/loss"]
    donor_level = donor.get(e + 1, donor[e])
    assert abs(after["train/loss"] - donor_level) < abs(after["train/loss"] - own.min()), (after, donor, own)
    assert after["train/loss"] < own.min() - 0.2

    final = table.set_index("trial_id")
    assert final.loc[bad, "config/optim.lr"] != first_lr[bad]  # the population's config moved
    assert (pbt_sweep / "pbt_global.txt").read_text().strip()  # Ray's PBT log of the exploits
