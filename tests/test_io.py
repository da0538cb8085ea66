"""Atomic writes: the target appears whole or not at all."""
import os

import pytest

from playerseg.io import atomic_path, read_json, write_json_atomic


def test_atomic_write_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic(target, {"a": 1})
    assert read_json(target) == {"a": 1}
    assert os.listdir(target.parent) == ["out.json"]


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
