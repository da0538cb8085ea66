"""`playerseg train sam` end to end on Ray (tiny UNTRAINED SAM, a synthetic set): the embedding
cache is built by Ray Data and reused, cached epochs never run the encoder, the checkpoint holds
only trained parameters and round-trips, and a second run with more epochs resumes."""
import json

import pytest
import torch

from playerseg.config import load


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_train_sam_decoder_job_caches_checkpoints_and_resumes(ray_local, synth_dir, tmp_path):
    from playerseg.sam.checkpoint import load_finetuned_sam, load_trained
    from playerseg.sam.embeddings import list_items
    from playerseg.sam.train import SamTrainConfig, train_sam

    sets = [f"data.root={synth_dir}", "data.format=acme", "data.val_fraction=0.25", "data.split_block=3",
            "crops.size=48", "crops.max_per_frame=2", f"run.out_dir={tmp_path / 'runs'}", "run.name=sam_t",
            f"cache.dir={tmp_path / 'cache'}", "cache.cpus_per_actor=0.5", "run.cpus_per_worker=1",
            "run.batch_size=8", "run.epochs=2", "optim.lr=0.001"]
    out = train_sam(load(SamTrainConfig, None, sets))
    m = out["metrics"]
    assert out["train_items"] > 0 and out["val_items"] > 0 and not out["failures"]
    assert m["encoder_calls"] == 0 and m["epoch"] == 1
    assert m["train/batches"] >= 1 and "val/iou" in m
    index = sorted((tmp_path / "cache").glob("*/index.json"))
    assert len(index) == 12  # every frame, train and val
    stamps = [p.stat().st_mtime_ns for p in index]

    state = load_trained(out["checkpoint"])
    assert state["model_type"] == "tiny_untrained" and state["mode"] == "decoder" and state["epoch"] == 1
    assert state["trained"] and all(k.startswith("mask_decoder.") for k in state["trained"])
    sam = load_finetuned_sam(out["checkpoint"])
    assert torch.equal(dict(sam.named_parameters())["mask_decoder.iou_token.weight"],
                       state["trained"]["mask_decoder.iou_token.weight"])

    out2 = train_sam(load(SamTrainConfig, None, [*sets[:-2], "run.epochs=3", "optim.lr=0.001"]))
    assert [p.stat().st_mtime_ns for p in index] == stamps  # the cache was reused, not rebuilt
    history = json.loads((tmp_path / "runs" / "sam_t" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]  # resumed after epoch 1
    assert load_trained(out2["checkpoint"])["epoch"] == 2
    assert len(list_items(str(tmp_path / "cache"), ["frame_00000"])) == 3  # full frame + 2 crops
