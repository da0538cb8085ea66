"""Atomic writes: the target appears whole or not at all; what is still being written is seen as such."""
import os

import pytest

from playerseg.io import atomic_dir, atomic_path, is_temporary, read_json, tree_fingerprint, write_json_atomic


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


def test_work_in_progress_is_temporary_and_left_out_of_fingerprints(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    before = tree_fingerprint(str(tmp_path))
    with atomic_path(tmp_path / "b.txt") as tmp, atomic_dir(tmp_path / "folder") as folder:
        open(tmp, "w").write("half")
        (folder / "c.txt").write_text("half")
        assert is_temporary(os.path.relpath(tmp, tmp_path)) and is_temporary(f"{folder.name}/c.txt")
        assert tree_fingerprint(str(tmp_path)) == before  # a writer at work changes nothing yet
    assert not is_temporary("b.txt") and not is_temporary("folder/c.txt")
    assert tree_fingerprint(str(tmp_path)) != before
