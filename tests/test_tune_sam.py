"""`playerseg tune sam`: a tiny ASHA sweep of SAM fine-tuning (tiny UNTRAINED SAM, synthetic frames) on a
private 2-CPU Ray head (conftest's `tune_head`, shared with test_tune.py), the CLI (`run_sweep`) in a
process of its own as in test_tune.py. Each trial runs `playerseg.sam.train.build_trainer(cfg)`, which
prepares what `train_sam` prepares (the embedding cache, by Ray Data, inside the trial); trials that
differ in crop size get a cache each.
The best config loads as a SamTrainConfig, the best checkpoint as a SAM."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from playerseg.config import load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tune_head, synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune_sam")
    space = tmp / "space.yaml"
    # crops.size changes what is cached (as in tune_spaces/sam.yaml): one cache per size
    space.write_text("crops.size: {grid: [48, 64]}\n"
                     "sam.mode: {choice: [decoder, decoder_prompt]}\n"
                     "optim.lr: {loguniform: [3.0e-4, 3.0e-3]}\n")
    sets = [f"data.root={synth_dir}", "data.format=acme", "data.val_fraction=0.25", "data.split_block=3",
            "crops.max_per_frame=1", "cache.cpus_per_actor=0.5", "run.cpus_per_worker=0.5", "run.batch_size=8",
            "run.epochs=2"]
    args = ["tune", "sam", "--space", str(space), "--out", str(tmp / "sweeps"), "--name", "tiny",
            "--num-samples", "1", "--max-concurrent", "2", "--no-wandb", *[a for s in sets for a in ("--set", s)]]
    # the CLI (run_sweep) in a process of its own: it joins the private head (conftest's `tune_head`, W&B
    # disabled in it) through RAY_ADDRESS + its token
    proc = subprocess.run([sys.executable, "-m", "playerseg.cli", *args], env=tune_head.env, cwd=tmp,
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"dir": tmp / "sweeps" / "tiny", "stdout": proc.stdout}


def test_sam_sweep_runs_every_trial_with_its_own_cache(sweep):
    table = pd.read_csv(sweep["dir"] / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"OK"}, table
    assert set(table["config/crops.size"]) == {48, 64}
    assert (table["iterations"] >= 1).all() and table["iterations"].max() == 2
    assert (table["encoder_calls"] == 0).all()  # cached modes only
    caches = sorted((sweep["dir"] / "trials" / "sam_cache").glob("tiny_untrained-*"))
    assert len(caches) == 2  # one per crop size, next to the trials' run folders
    for cache in caches:
        assert len(list(cache.glob("_done/frames/*.json"))) == 12  # every frame, train and val
        assert json.loads((cache / "_run.json").read_text())["crops"]["size"] in (48, 64)


def test_sam_sweep_best_config_and_checkpoint(sweep):
    from playerseg.sam.checkpoint import FILE, load_finetuned_sam, load_trained
    from playerseg.sam.train import SamTrainConfig

    best = json.loads((sweep["dir"] / "best.json").read_text())
    assert best["trials"] == 2 and best["errors"] == 0 and best["metric"] == "score"
    cfg = load(SamTrainConfig, sweep["dir"] / "best_config.yaml")
    assert cfg.crops.size == best["config"]["crops.size"] and cfg.sam.mode == best["config"]["sam.mode"]
    assert cfg.optim.lr == pytest.approx(best["config"]["optim.lr"])
    assert cfg.sam.model_type == "tiny_untrained" and cfg.run.epochs == 2
    assert best["checkpoint"] and (Path(best["checkpoint"]) / FILE).is_file()
    state = load_trained(str(Path(best["checkpoint"]) / FILE))
    assert state["mode"] == cfg.sam.mode and state["config"]["crops"]["size"] == cfg.crops.size
    sam = load_finetuned_sam(str(Path(best["checkpoint"]) / FILE))
    assert sam.image_encoder.img_size == 256
