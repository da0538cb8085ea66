"""Filesystem helpers: fsspec paths, atomic writes of files and folders (temporary name, then
rename), fingerprints, and the one reader of weight files."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
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


TEMP_PREFIX = ".tmp-"  # the names atomic_path and atomic_dir write under until their rename


def is_temporary(path: str) -> bool:
    """Whether `path` is, or lies in, a file or folder still being written (a `TEMP_PREFIX` name)."""
    return any(part.startswith(TEMP_PREFIX) for part in str(path).split("/"))


def short_hash(value: Any, length: int = 12) -> str:
    """A short sha1 hex of `value` (a str as it is, else its sorted-key JSON): the stamp of the options
    or content an output was made from, in a file or folder name. Not a fingerprint of a file."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def parquet_parts(folder: str) -> list[str]:
    """The Parquet files under `folder` (sorted; URIs keep their protocol; [] when it is no folder),
    as pyarrow reads a folder: none below a name starting with "." or "_" (temporary `.tmp-*` files)."""
    fs, root = filesystem(folder)
    if not fs.isdir(root):
        return []
    found = sorted(p for p in fs.find(root) if p.endswith(".parquet")
                   and not any(c.startswith((".", "_")) for c in p[len(root):].split("/")))
    return found if is_local(folder) else [f"{folder.split('://', 1)[0]}://{p}" for p in found]


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
    tmp = f"{parent}/{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}"
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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling folder to fill; it replaces the local folder `path` only when
    the block succeeds (the old one moved aside, the new one renamed in, the old one deleted), so a
    reader finds the old folder or the new one, never half of one."""
    target = Path(path)
    tmp = target.parent / f"{TEMP_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = target.parent / f".old-{target.name}-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def write_table_atomic(path: str, table, metadata: dict | None = None) -> None:
    """A pyarrow Table as one Parquet file at `path` (local or URI), written whole then renamed:
    the one Parquet writer of the jobs' outputs. `metadata` is added to the schema's (the stamps of
    the passes that rewrite a part: `playerseg.cluster`, `playerseg.tracks`)."""
    import pyarrow.parquet as pq

    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        fs, fpath = filesystem(tmp)
        pq.write_table(table, fpath, filesystem=fs)


FINGERPRINT_BYTES = 1 << 16  # read at each end of a file


def fingerprint(path: str, info: dict | None = None) -> dict:
    """What identifies a file's content cheaply: size, mtime and the sha256 of its first and last
    64 KiB (`info`: the fsspec listing entry when the caller has it). A file replaced in place (a
    truncated video by the full one, other weights) changes at least one of them."""
    fs, fpath = filesystem(path)
    info = info or fs.info(fpath)
    size = int(info.get("size") or 0)
    mtime = info.get("mtime", info.get("LastModified", info.get("updated", "")))
    h = hashlib.sha256()
    with fs.open(fpath, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            h.update(f.read(FINGERPRINT_BYTES))
    return {"size": size, "mtime": str(mtime), "head_tail_sha256": h.hexdigest()[:16]}


def listing_fingerprint(entries: list[tuple[str, dict]]) -> str:
    """A hash of (name, size, mtime) of files as listed (`fs.find(..., detail=True)` items): a file
    added, removed, replaced or touched changes it. Nothing is read."""
    rows = sorted((name.rsplit("/", 1)[-1], info.get("size"), str(info.get("mtime", info.get("LastModified", ""))))
                  for name, info in entries)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def tree_fingerprint(path: str) -> str:
    """`listing_fingerprint` of every file under `path` (a file: itself); "" when it does not exist."""
    fs, fpath = filesystem(path)
    if not fs.exists(fpath):
        return ""
    if not fs.isdir(fpath):
        return listing_fingerprint([(fpath, fs.info(fpath))])
    entries = [(f[len(fpath):], i) for f, i in fs.find(fpath, detail=True).items()
               if not is_temporary(f[len(fpath):])]
    return listing_fingerprint(entries)


def sha256_file(path: str) -> str:
    """The sha256 of a whole file (model weights: small enough to read once per run)."""
    h = hashlib.sha256()
    with fsspec.open(str(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_weights(path: str | os.PathLike, map_location="cpu") -> dict:
    """The tensors (and plain values) saved at `path`, local or fsspec URI: `.safetensors` by its
    name, anything else with `torch.load(weights_only=True)`, so a file from outside never runs code
    while it is read. FileNotFoundError when it is missing; DataError naming the file when it is
    not such a file (damaged, or a pickle of anything else)."""
    import io

    import torch

    from playerseg.data.errors import DataError

    with fsspec.open(str(path), "rb") as f:
        data = f.read()
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load

            return load(data)
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - safetensors and unpickling raise their own types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"unreadable weights (tensors and plain values only, nothing else is "
                              f"unpickled): {first}") from None
