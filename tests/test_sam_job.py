"""`playerseg train sam` end to end on Ray (tiny UNTRAINED SAM, a synthetic set): the embedding
cache is built by Ray Data and reused, cached epochs never run the encoder, the checkpoint holds
only trained parameters and round-trips, a second run with more epochs resumes; every training
mode trains exactly its parameter groups, and a 2-worker DDP run shards the items over its ranks."""
import json
import math
import os

import pytest
import torch

from playerseg.config import load

# frames of the synthetic set (synth_dir): 9 train, 3 val; each is the full frame + 2 crops
SETS = ["data.format=acme", "data.val_fraction=0.25", "data.split_block=3", "crops.size=48", "crops.max_per_frame=2",
        "cache.cpus_per_actor=0.5", "run.batch_size=8", "optim.lr=0.001"]


@pytest.fixture(scope="module", autouse=True)
def no_wandb():
    """W&B disabled, set before the module's Ray starts (autouse: before `ray_dashboard`), so Ray's
    workers inherit it: the tracker is tested with the trainer."""
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    yield
    if old is None:
        os.environ.pop("WANDB_MODE", None)
    else:
        os.environ["WANDB_MODE"] = old


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sam_cache")  # shared: the cached modes build it once


def test_train_sam_decoder_job_caches_checkpoints_and_resumes(ray_dashboard, synth_dir, cache_root, tmp_path):
    from playerseg.sam.checkpoint import load_finetuned_sam, load_trained
    from playerseg.sam.embeddings import list_items
    from playerseg.sam.train import SamTrainConfig, train_sam

    sets = [*SETS, f"data.root={synth_dir}", f"run.out_dir={tmp_path / 'runs'}", "run.name=sam_t",
            f"cache.dir={cache_root}", "run.cpus_per_worker=1", "run.epochs=2"]
    out = train_sam(load(SamTrainConfig, None, sets))
    m = out["metrics"]
    assert out["train_items"] == 27 and out["val_items"] == 9 and not out["failures"]
    assert m["encoder_calls"] == 0 and m["epoch"] == 1
    assert m["train/batches"] >= 1 and "val/iou" in m
    assert m["train/items"] == m["train/items_distinct"] == 27  # one worker: every item once
    cache_dir = out["cache_dir"]
    assert cache_dir.startswith(f"{cache_root}/tiny_untrained-")
    index = sorted((cache_root).glob("*/_done/frames/*.json"))
    assert len(index) == 12  # every frame, train and val
    stamps = [p.stat().st_mtime_ns for p in index]

    state = load_trained(out["checkpoint"])
    assert state["model_type"] == "tiny_untrained" and state["mode"] == "decoder" and state["epoch"] == 1
    assert state["trained"] and all(k.startswith("mask_decoder.") for k in state["trained"])
    sam = load_finetuned_sam(out["checkpoint"])
    assert torch.equal(dict(sam.named_parameters())["mask_decoder.iou_token.weight"],
                       state["trained"]["mask_decoder.iou_token.weight"])

    out2 = train_sam(load(SamTrainConfig, None, [*sets[:-1], "run.epochs=3"]))
    assert out2["cache_dir"] == cache_dir
    assert [p.stat().st_mtime_ns for p in index] == stamps  # the cache was reused, not rebuilt
    history = json.loads((tmp_path / "runs" / "sam_t" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]  # resumed after epoch 1
    assert load_trained(out2["checkpoint"])["epoch"] == 2
    assert len(list_items(cache_dir, ["frame_00000"])) == 3  # full frame + 2 crops

    # a PBT exploit: a new run from that checkpoint's weights and epoch, with ITS lr (not the donor's)
    donor = str(next((tmp_path / "runs" / "sam_t").glob("checkpoint_epoch002")))
    out3 = train_sam(load(SamTrainConfig, None, [*sets[:-2], "run.name=sam_pbt", f"run.init_from={donor}",
                                                 "optim.lr=0.01", "sched.name=constant", "run.epochs=4"]))
    pbt_history = json.loads((tmp_path / "runs" / "sam_pbt" / "metrics.json").read_text())
    assert [r["epoch"] for r in pbt_history] == [3]  # the donor's epoch counter goes on
    assert pbt_history[0]["lr"] == pytest.approx(0.01)
    donor_state, new_state = load_trained(out2["checkpoint"]), load_trained(out3["checkpoint"])
    assert new_state["epoch"] == 3 and new_state["trained"].keys() == donor_state["trained"].keys()


# parameter groups of tiny_untrained (a 2-block encoder) and those each mode must change
GROUPS = ("image_encoder.patch_embed.", "image_encoder.pos_embed", "image_encoder.blocks.0.",
          "image_encoder.blocks.1.", "image_encoder.neck.", "prompt_encoder.", "mask_decoder.")
TRAINED = {
    "decoder_prompt": {"prompt_encoder.", "mask_decoder."},
    "last_n_blocks": {"image_encoder.blocks.1.", "image_encoder.neck.", "prompt_encoder.", "mask_decoder."},
    "full": set(GROUPS),
}


@pytest.mark.parametrize("mode, workers", [("decoder_prompt", 2), ("last_n_blocks", 1), ("full", 1)],
                         ids=["decoder_prompt-ddp2", "last_n_blocks", "full"])
def test_modes_train_exactly_their_parameters(ray_dashboard, synth_dir, cache_root, tmp_path, mode, workers):
    from playerseg.sam.build import build_sam
    from playerseg.sam.checkpoint import load_finetuned_sam, load_trained
    from playerseg.sam.train import SamTrainConfig, train_sam

    sets = [*SETS, f"data.root={synth_dir}", f"run.out_dir={tmp_path / 'runs'}", f"run.name={mode}",
            f"cache.dir={cache_root}", f"sam.mode={mode}", "sam.last_n=1", "run.epochs=1",
            f"run.num_workers={workers}", f"run.cpus_per_worker={1 / workers}", "prompts.positive_points=1"]
    out = train_sam(load(SamTrainConfig, None, sets))
    m = out["metrics"]
    cached = mode == "decoder_prompt"
    # items: crops of the cache (9 train frames x 3) in cached modes, else the frames (the encoder cuts them)
    n = 27 if cached else 9
    assert out["train_items"] == n and m["epoch"] == 0 and m["train/batches"] >= 1
    assert (m["encoder_calls"] == 0) == cached, m["encoder_calls"]
    # the ranks' shards cover every item; over 2 ranks only the padding to equal shards repeats one
    assert m["train/items_distinct"] == n and m["train/items"] == workers * math.ceil(n / workers)

    state = load_trained(out["checkpoint"])
    assert state["mode"] == mode and state["last_n"] == 1
    expected = TRAINED[mode]
    assert {g for g in GROUPS if any(k.startswith(g) for k in state["trained"])} == expected
    base = dict(build_sam("tiny_untrained").named_parameters())
    assert set(state["trained"]) == {k for k in base if k.startswith(tuple(expected))}
    tuned = dict(load_finetuned_sam(out["checkpoint"]).named_parameters())
    for group in GROUPS:
        names = [k for k in base if k.startswith(group)]
        changed = [k for k in names if not torch.equal(tuned[k], base[k])]
        if group in expected:
            assert changed, f"{mode}: nothing of {group} was trained"
        else:
            assert not changed, f"{mode}: frozen {group} changed: {changed[:3]}"
