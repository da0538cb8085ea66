"""Leak-free splits: whole blocks of neighbouring frames, deterministic, disjoint, complete."""
import pytest

from playerseg.data.reader import Reader
from playerseg.data.registry import DataConfig, build_reader
from playerseg.data.splits import block_of, split_keys


class FakeVideos(Reader):
    """Keys `<video>/<frame>`; keys without a number have no frame index."""

    def __init__(self, keys):
        self._keys = sorted(keys)

    def keys(self):
        return list(self._keys)

    def load(self, key):
        raise AssertionError("splitting must not load samples")

    def group(self, key):
        return key.split("/")[0]

    def frame_index(self, key):
        tail = key.split("/")[1]
        return int(tail) if tail.isdigit() else None


KEYS = [f"v{v}/{f:04d}" for v in range(3) for f in range(0, 200, 1 + v)] + ["stills/a", "stills/b", "stills/c"]


def test_split_is_disjoint_complete_and_deterministic():
    reader = FakeVideos(KEYS)
    s = split_keys(reader, val_fraction=0.2, split_block=10, seed=0)
    assert set(s["train"]).isdisjoint(s["val"]) and sorted(s["train"] + s["val"]) == sorted(KEYS)
    assert split_keys(FakeVideos(list(reversed(KEYS))), 0.2, 10, 0) == s  # key order does not matter
    assert abs(len(s["val"]) / len(KEYS) - 0.2) < 0.03
    assert split_keys(reader, 0.2, 10, seed=1) != s


def test_whole_blocks_go_to_one_side():
    reader = FakeVideos(KEYS)
    s = split_keys(reader, val_fraction=0.3, split_block=10, seed=3)
    side = {k: "val" for k in s["val"]} | {k: "train" for k in s["train"]}
    blocks = {}
    for k in KEYS:
        blocks.setdefault(block_of(reader, k, 10), set()).add(side[k])
    assert all(len(sides) == 1 for sides in blocks.values())  # no block is cut
    # so a val frame's neighbours (same video, same block of 10 frame numbers) are never in train
    for k in s["val"]:
        g, f = reader.group(k), reader.frame_index(k)
        if f is not None:
            assert not any(reader.group(t) == g and reader.frame_index(t) // 10 == f // 10 for t in s["train"])


def test_val_blocks_are_contiguous_runs_of_frames():
    reader = FakeVideos([f"v0/{f:04d}" for f in range(100)])
    val = split_keys(reader, val_fraction=0.2, split_block=10, seed=0)["val"]
    frames = sorted(reader.frame_index(k) for k in val)
    assert len(frames) == 20 and {f // 10 for f in frames} == {frames[0] // 10, frames[-1] // 10}
    assert all(frames[i] // 10 * 10 == frames[i] - frames[i] % 10 for i in range(20))
    runs = [frames[i:i + 10] for i in range(0, 20, 10)]
    assert all(r == list(range(r[0], r[0] + 10)) and r[0] % 10 == 0 for r in runs)


def test_edge_fractions_and_bad_arguments():
    reader = FakeVideos(KEYS)
    assert split_keys(reader, 0.0)["val"] == []
    assert split_keys(reader, 1.0)["train"] == []
    two = FakeVideos(["v/0001", "v/0050"])
    assert [len(v) for v in split_keys(two, 0.9).values()] == [1, 1]  # each side keeps a block
    with pytest.raises(ValueError):
        split_keys(reader, 1.5)
    with pytest.raises(ValueError):
        split_keys(reader, 0.2, split_block=0)


@pytest.mark.realdata
def test_real_splits_without_loading(acme_dir, detection_dir):
    cfg = DataConfig(format="acme", root=str(acme_dir))
    train, val = build_reader(cfg, "train"), build_reader(cfg, "val")
    assert len(train) + len(val) == 90 and 10 <= len(val) <= 26
    assert {k for k in val.keys()}.isdisjoint(train.keys())
    yolo = DataConfig(format="yolo", root=str(detection_dir))
    ytrain, yval = build_reader(yolo, "train"), build_reader(yolo, "val")
    assert len(ytrain) + len(yval) == 242
    val_blocks = {(yval.group(k), yval.frame_index(k) // 10) for k in yval.keys()}
    assert val_blocks.isdisjoint((ytrain.group(k), ytrain.frame_index(k) // 10) for k in ytrain.keys())
    assert len({g for g, _ in val_blocks}) >= 5  # val spans several clips (08fd33_0, ...), not one
