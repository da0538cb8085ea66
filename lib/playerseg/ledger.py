"""The ledger of a job's output folder: what its outputs were made from, which units are finished,
and one writer at a time. `extract`, `infer`, `evaluate`, `cluster` and the SAM embedding cache keep
theirs with it.

    <out>/_run.json                    the run signature: the options outputs depend on and content
                                       fingerprints (the model's weights sha256)
    <out>/_done/<group>/<unit>.json    a unit's done marker, written after its outputs: the content
                                       fingerprint of its input (`Unit.source`) and its stats
    <out>/_lock                        held while a job writes (local folders; the holder is named)

A unit is anything with `group`, `name`, `key` (`group/name`), `uri` and `source`: a
`video.frames.Unit`, a frame of the SAM cache (`sam.embeddings.CacheFrame`).

One mismatch rule: outputs made with other options, other weights or another version of an input
are neither mixed with new ones nor silently redone. The run is refused before any work with one
line naming what differs (ConfigError: exit status 2); `--overwrite` removes the outputs and starts
over. A second run into a folder another run holds is refused the same way (`wait=True`: it waits
instead, for a shared cache whose users agree on its signature: SAM sweep trials).

    with Ledger(out, signature, overwrite) as ledger:
        todo = ledger.pending(units)        # ConfigError when an input changed under its outputs
        ... write a unit's outputs (ledger.path(...), io.write_table_atomic) ...
        ledger.mark(unit, frames=n)
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import socket
import time

from playerseg.config import ConfigError
from playerseg.io import exists, filesystem, is_local, is_temporary, read_json, write_json_atomic
from playerseg.video.frames import Unit, under

log = logging.getLogger(__name__)
RUN_FILE = "_run.json"
DONE_DIR = "_done"
LOCK_FILE = "_lock"


def differences(old, new, prefix: str = "") -> list[str]:
    """`key old -> new` for every leaf that differs between two JSON-like dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if old == new:
        return []
    short = lambda v: (v[:12] + "..") if isinstance(v, str) and len(v) > 14 else v  # noqa: E731
    return [f"{prefix or 'value'} {short(old)!r} -> {short(new)!r}"]


def _said(diffs: list[str]) -> str:
    return ", ".join(diffs[:3]) + (f" and {len(diffs) - 3} more" if len(diffs) > 3 else "")


def acquire_lock(root: str, wait: bool = False):
    """Hold `<root>/_lock` (local folders; None elsewhere: object stores have no locks, every file is
    still written atomically). ConfigError naming the holder when another process holds it (`wait`:
    block until it is released)."""
    if not is_local(root):
        return None
    import fcntl

    folder = filesystem(root)[1]
    os.makedirs(folder, exist_ok=True)
    f = open(os.path.join(folder, LOCK_FILE), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ConfigError(f"{root}: another run is writing here ({holder}); wait for it to end, "
                          "or use another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    return f


def release_lock(lock) -> None:
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.close()  # closing releases the flock


class Ledger:
    """Signature, done markers and lock of the output folder `root` (local path or URI).

    `outputs`: what `--overwrite` removes, relative to `root`, glob patterns allowed (None: everything
    but the lock). `elsewhere`: the other place a refused run could write to, as the user names it.
    `wait`: wait for another holder of the lock instead of refusing."""

    def __init__(self, root: str, signature: dict, overwrite: bool = False, outputs: tuple[str, ...] | None = None,
                 elsewhere: str = "another --out", wait: bool = False):
        self.root = str(root).rstrip("/")
        self.signature = json.loads(json.dumps(signature, default=str))
        self.overwrite = overwrite
        self.outputs = outputs
        self.elsewhere = elsewhere
        self.wait = wait
        self._lock_file = None

    def __getstate__(self) -> dict:  # sent to Ray tasks that mark units: the lock stays with the driver
        return {**self.__dict__, "_lock_file": None}

    # ---- the run ---------------------------------------------------------------------------
    def __enter__(self) -> "Ledger":
        self._lock_file = acquire_lock(self.root, self.wait)
        try:
            self._check_signature()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _unlock(self) -> None:
        release_lock(self._lock_file)
        self._lock_file = None

    def _check_signature(self) -> None:
        path = self.path(RUN_FILE)
        if self.overwrite:
            self._clear()
        elif exists(path):
            try:
                old = read_json(path)
            except (OSError, ValueError):
                old = {}
            diffs = differences(old, self.signature)
            if diffs:
                raise ConfigError(f"{self.root} holds outputs made with other options or inputs ({_said(diffs)}); "
                                  f"use {self.elsewhere}, or --overwrite to redo them")
        write_json_atomic(path, self.signature)

    def _clear(self) -> None:
        fs, folder = filesystem(self.root)
        if not fs.exists(folder):
            return
        present = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
        patterns = {*(self.outputs if self.outputs is not None else ["*"]), DONE_DIR, RUN_FILE}
        for name in present:
            if name != LOCK_FILE and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                fs.rm(f"{folder}/{name}", recursive=True)
        log.info("--overwrite: removed the outputs in %s", self.root)

    # ---- units -----------------------------------------------------------------------------
    def path(self, *relative: str) -> str:
        """A path inside the output folder (never outside it, whatever the names)."""
        return under(self.root, "/".join(relative))

    def marker_path(self, unit: Unit) -> str:
        return self.path(DONE_DIR, unit.group, f"{unit.name}.json")

    def markers(self, groups: set[str] | None = None) -> dict[str, dict]:
        """unit key -> done marker, of `groups` (None: all)."""
        fs, folder = filesystem(self.path(DONE_DIR))
        out: dict[str, dict] = {}
        if not fs.isdir(folder):
            return out
        for f in sorted(fs.find(folder)):
            rel = f[len(folder) + 1:]
            if not rel.endswith(".json") or is_temporary(rel) or "/" not in rel:
                continue
            group = rel.rsplit("/", 1)[0]
            if groups is not None and group not in groups:
                continue
            with contextlib.suppress(OSError, ValueError):
                with fs.open(f, "r") as fh:
                    out[rel[: -len(".json")]] = json.load(fh)
        return out

    def pending(self, units: list[Unit]) -> list[Unit]:
        """The units without a done marker. ConfigError when an input's outputs were made from
        other content than the input has now (replaced, truncated, another file of the same id)."""
        groups = {u.group: u for u in units}
        markers = self.markers(set(groups))
        for key, marker in markers.items():
            unit = groups[key.rsplit("/", 1)[0]]
            if marker.get("source") != unit.source:
                diffs = differences(marker.get("source") or {}, unit.source)
                was = marker.get("uri")
                what = ("an input it did not record (an older playerseg)" if not was else
                        f"another file, {was}" if was != unit.uri else f"another version of {unit.uri}")
                raise ConfigError(f"{self.root}: the outputs of {unit.group!r} were made from {what} ({_said(diffs)}); "
                                  f"use {self.elsewhere}, or --overwrite to redo them")
        return [u for u in units if u.key not in markers]

    def mark(self, unit: Unit, **stats) -> None:
        """Record `unit` as finished (after its outputs are written)."""
        write_json_atomic(self.marker_path(unit), {"unit": unit.key, "uri": unit.uri, "source": unit.source, **stats})

    def is_done(self, unit: Unit) -> bool:
        return exists(self.marker_path(unit))
