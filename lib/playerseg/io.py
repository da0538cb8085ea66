"""Filesystem helpers: fsspec paths, atomic writes (temporary name, then rename), done markers."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import fsspec


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the in-filesystem path for a local path or URI (s3://, gs://...)."""
    fs, _, paths = fsspec.get_fs_token_paths(str(path))
    return fs, paths[0]


def is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary sibling path to write; rename it onto `path` only when the block succeeds.

    Works for local paths and fsspec URIs (where the rename is the filesystem's `mv`). A killed
    writer leaves at most a `.tmp-*` file, never a half-written `path`.
    """
    path = str(path)
    fs, fpath = filesystem(path)
    parent = fpath.rsplit("/", 1)[0] if "/" in fpath else "."
    fs.makedirs(parent, exist_ok=True)
    name = fpath.rsplit("/", 1)[-1]
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
    tmp_uri = tmp if is_local(path) else f"{path.split('://', 1)[0]}://{tmp}"
    try:
        yield tmp if is_local(path) else tmp_uri
        if is_local(path):
            os.replace(tmp, fpath)
        else:
            fs.mv(tmp, fpath)
    finally:
        with contextlib.suppress(FileNotFoundError):
            if fs.exists(tmp):
                fs.rm(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with fsspec.open(tmp, "wb") as f:
            f.write(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def exists(path: str | os.PathLike) -> bool:
    fs, fpath = filesystem(str(path))
    return fs.exists(fpath)


def read_json(path: str | os.PathLike) -> Any:
    with fsspec.open(str(path), "r") as f:
        return json.load(f)


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout (or $PLAYERSEG_SHARED_DATA): real test material."""
    env = os.environ.get("PLAYERSEG_SHARED_DATA")
    if env:
        return Path(env)
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    return beside_checkout if beside_checkout.is_dir() else Path.cwd().parent / "shared" / "data"
