"""Deterministic, leak-free train/val splits of video frames.

Neighbouring frames of one video are near-duplicates: shuffling them into train and val would
measure memory, not generalisation. So frames are cut into blocks of `split_block` consecutive
frame numbers of one group (video), `(group, frame_index // split_block)`, and whole blocks go to
val. Which blocks: ranked by a seeded hash of the block (stable when other blocks are added), taken
in that order, each taken when it brings val's share of frames nearer `val_fraction`. A key without a frame
index is a block of its own, named by its key.
"""
from __future__ import annotations

import hashlib

from playerseg.data.reader import Reader


def block_of(reader: Reader, key: str, split_block: int) -> tuple[str, str]:
    """The block a key belongs to: (group, frame block number or `key:<key>`)."""
    index = reader.frame_index(key)
    group = reader.group(key)
    return (group, str(index // split_block) if index is not None else f"key:{key}")


def _rank(block: tuple[str, str], seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{block[0]}\0{block[1]}".encode()).hexdigest()


def split_keys(reader: Reader, val_fraction: float = 0.2, split_block: int = 10, seed: int = 0,
               val_groups=()) -> dict[str, list[str]]:
    """{"train": keys, "val": keys}: disjoint, together all keys, whole blocks on each side.

    With at least two blocks and 0 < val_fraction < 1, each side gets at least one block. With
    `val_groups`, val is every key whose group starts with one of them (whole matches held out).
    """
    if val_groups:
        prefixes = tuple(str(g) for g in val_groups)
        val = [k for k in reader.keys() if reader.group(k).startswith(prefixes)]
        if not val:
            raise ValueError(f"no group of {reader!r} starts with any of val_groups {list(prefixes)}")
        chosen = set(val)
        return {"train": [k for k in reader.keys() if k not in chosen], "val": val}
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    if split_block < 1:
        raise ValueError(f"split_block must be >= 1, got {split_block}")
    blocks: dict[tuple[str, str], list[str]] = {}
    for key in reader.keys():
        blocks.setdefault(block_of(reader, key, split_block), []).append(key)
    total = sum(len(v) for v in blocks.values())
    target = val_fraction * total
    order = sorted(blocks, key=lambda b: (_rank(b, seed), b))
    val_blocks: list = []
    count = 0
    for block in order:
        size = len(blocks[block])
        # take the next block while that brings val closer to the target share
        if abs(count + size - target) < abs(count - target) or (not val_blocks and 0 < val_fraction):
            if len(val_blocks) + 1 == len(order) and val_fraction < 1 and len(order) > 1:
                continue  # keep at least one block for training
            val_blocks.append(block)
            count += size
    chosen = set(val_blocks)
    val = sorted(k for b in chosen for k in blocks[b])
    train = sorted(k for b in blocks if b not in chosen for k in blocks[b])
    return {"train": train, "val": val}
