"""The frame source: every job's frames come from here. `plan_units(inputs)` turns inputs into work
units, `read_unit(unit)` yields a unit's frames; extract, infer, render and cluster call them.

A unit is a run of frames decoded by one task and written as one part (so it is also the unit of
resume, `playerseg.ledger`). Three kinds, a reader each (`UNIT_READERS`):
- "video": a segment of a video file (`playerseg.video.segments`: probed, cut at keyframes, exact
  indices);
- "frames": a run of image files of a frame folder (frame_index = the trailing number of the file
  name when every file has a distinct one, else the sorted position; pts_seconds = frame_index /
  fps, fps from the folder's `_video.json` as `playerseg extract` writes it, else 25);
- "parquet": one row group of a frame Parquet file (`FRAME_SCHEMA`, as `playerseg extract
  --parquet` writes it); video ids and indices come from its rows.

A folder input holding videos means its videos; else its Parquet files; else every folder in it
that holds images is a frame folder. Names starting with `_` (ledgers, probes, summaries) and
`.tmp-` (files being written) inside a folder input are bookkeeping, not inputs.

Ids. Each video, frame folder or Parquet file gets an id (`Unit.group`, the `video_id` of its
frames and the folder its outputs go to): its path without extension, shortened to the last
components that keep it unique among the run's inputs (`match` alone, `2024/half1` and
`2023/half1` side by side), every component made safe as a file name (`safe_name`: `..` can never
climb out of an output folder). Two inputs with the same id are an error (ConfigError), never a
skip. Each unit carries `source`, a content fingerprint of its input (`playerseg.io.fingerprint`:
size, mtime, head/tail hash; for a frame folder, its files' names, sizes and mtimes), which the
ledger compares with the one its outputs were made from.

A bad frame of a frame folder (corrupt, or over the image size limit) is yielded as a `Frame`
with `error` set and no image: the job reports it and keeps the unit's other frames.

`frames_dataset(inputs)` is the same as a Ray Data dataset of rows {video_id, frame_index,
pts_seconds, width, height, image}, in (video, frame) order (a unit per block, `preserve_order`).
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import fsspec

from playerseg.config import ConfigError
from playerseg.data.errors import DataError, Failures
from playerseg.io import TEMP_PREFIX, filesystem, fingerprint, is_local, listing_fingerprint, read_json
from playerseg.video.probe import VIDEO_EXTENSIONS, VideoInfo, load_or_probe
from playerseg.video.segments import Frame, Segment, decode_segment, plan_segments, select_frames

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FPS = 25.0


@dataclass
class Unit:
    kind: str  # a key of UNIT_READERS
    group: str  # the input's id: output folder and video_id (the Parquet file's id for Parquet input)
    name: str  # unique within the group, e.g. "000000-000300"
    num_frames: int  # frames the reader yields for the unit (bad ones included, as error frames)
    spec: dict  # what the reader needs
    source: dict = field(default_factory=dict)  # content fingerprint of the input
    start: int = 0  # first frame index of the unit
    end: int = 0  # past its last frame index (Parquet: unknown before reading, 2**62)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def uri(self) -> str:
        """The input file or folder the unit reads."""
        return self.spec.get("uri") or self.spec.get("folder") or self.spec.get("segment", {}).get("uri", "")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Unit":
        return cls(**json.loads(text))


# ---- ids and safe names ----------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def safe_name(text: str) -> str:
    """One path component that is safe as a file name: other characters become `_`; leading dots
    and underscores (`..`, hidden, names Parquet readers skip) become `-`."""
    text = _UNSAFE.sub("_", text)
    lead = len(text) - len(text.lstrip("._"))
    return ("-" * lead + text[lead:]) or "-"


def under(root: str, relative: str) -> str:
    """`root/relative`, refusing anything that would leave `root` (ValueError)."""
    norm = posixpath.normpath(relative)
    if norm.startswith(("/", "..")) or norm == ".":
        raise ValueError(f"{relative!r} is not a path inside {root}")
    return f"{str(root).rstrip('/')}/{norm}"


def input_ids(paths: dict[str, str]) -> dict[str, str]:
    """uri -> id: the last components of its path (without extension) that are unique among
    `paths` (uri -> path), each `safe_name`d. ConfigError when two inputs cannot be told apart."""
    parts = {u: [safe_name(c) for c in p.split("://", 1)[-1].split("/") if c] or ["-"] for u, p in paths.items()}
    depth = dict.fromkeys(parts, 1)
    while True:
        ids = {u: "/".join(parts[u][-depth[u]:]) for u in parts}
        by_id: dict[str, list[str]] = {}
        for u, i in ids.items():
            by_id.setdefault(i, []).append(u)
        clashes = [us for us in by_id.values() if len(us) > 1]
        if not clashes:
            return ids
        grown = False
        for us in clashes:
            for u in us:
                if depth[u] < len(parts[u]):
                    depth[u] += 1
                    grown = True
        if not grown:
            us = sorted(clashes[0])
            raise ConfigError(f"inputs {us[0]} and {us[1]} would both have the id {ids[us[0]]!r} (outputs would mix): "
                              "rename one, or run them into separate --out folders")


def video_ids(videos: list[str]) -> dict[str, str]:
    """uri -> id of video files given together (the ids a run over them gives)."""
    return input_ids({v: _id_path(v, True) for v in videos})


def _id_path(uri: str, is_file: bool) -> str:
    """The path an id is made from: absolute, without protocol, a file without its extension."""
    path = os.path.abspath(uri.removeprefix("file://")) if is_local(uri) else uri.split("://", 1)[-1]
    path = path.rstrip("/")
    ext = posixpath.basename(path).rsplit(".", 1)[-1] if is_file and "." in posixpath.basename(path) else ""
    return path[: -len(ext) - 1] if ext else path  # `...mp4` -> `..` (then made safe)


# ---- readers: Unit -> frames (RGB HxWx3 uint8 at source size) --------------------------------
def _read_video(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    yield from decode_segment(Segment.from_json(unit.spec["segment"]), threads=threads)


def _read_frames(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    from playerseg.data.reader import read_image

    fps = unit.spec.get("fps") or DEFAULT_FPS
    for index, uri in zip(unit.spec["indices"], unit.spec["files"]):
        try:
            yield Frame(unit.group, index, index / fps, read_image(uri))
        except (DataError, OSError) as e:  # this frame is reported and skipped; the others go on
            yield Frame(unit.group, index, index / fps, None, error=str(e))


def _read_parquet(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    import pyarrow.parquet as pq

    from playerseg.data.reader import decode_image

    uri = unit.spec["uri"]
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            table = pq.ParquetFile(f).read_row_group(
                unit.spec["row_group"], columns=["video_id", "frame_index", "pts_seconds", "image"])
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(uri, f"row group {unit.spec['row_group']} unreadable: {e}") from None
    for row in table.to_pylist():
        what = f"{uri} frame {row['video_id']}/{row['frame_index']}"
        try:
            image = decode_image(row["image"] or b"", what)
            yield Frame(row["video_id"], int(row["frame_index"]), float(row["pts_seconds"] or 0.0), image)
        except DataError as e:
            yield Frame(row["video_id"], int(row["frame_index"]), float(row["pts_seconds"] or 0.0), None, error=str(e))


UNIT_READERS: dict[str, Callable[..., Iterator[Frame]]] = {
    "video": _read_video,
    "frames": _read_frames,
    "parquet": _read_parquet,
}


def read_unit(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    """The unit's frames in order; a frame that could not be read has `error` set (no image)."""
    if unit.kind not in UNIT_READERS:
        raise ValueError(f"unknown unit kind {unit.kind!r}; kinds are {sorted(UNIT_READERS)}")
    yield from UNIT_READERS[unit.kind](unit, threads)


# ---- planning -------------------------------------------------------------------------------
def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def frame_numbers(files: list[str]) -> list[int]:
    """Frame indices of image files: their trailing numbers when all are distinct, else positions."""
    from playerseg.data.reader import trailing_number

    numbers = [trailing_number(posixpath.splitext(posixpath.basename(f))[0]) for f in files]
    return numbers if None not in numbers and len(set(numbers)) == len(numbers) else list(range(len(files)))


def folder_rate(folder: str) -> tuple[float, str]:
    """(fps, rate as a fraction) that `playerseg extract` recorded beside its frames (`_video.json`),
    else 25."""
    try:
        meta = read_json(f"{folder.rstrip('/')}/_video.json")
        return float(meta["fps"]), str(meta.get("rate") or meta["fps"])
    except (OSError, KeyError, ValueError, TypeError):
        return DEFAULT_FPS, "25"


def _frame_units(folder: str, group: str, files: list[tuple[str, dict]], every: int, size: int) -> list[Unit]:
    source = {"files_sha256": listing_fingerprint(files), "files": len(files)}
    names = [f for f, _ in files]
    indices = frame_numbers(names)
    order = sorted(range(len(names)), key=lambda i: indices[i])[:: max(1, every)]
    names, indices = [names[i] for i in order], [indices[i] for i in order]
    fps, rate = folder_rate(folder)
    return [Unit("frames", group, f"{indices[a]:06d}-{indices[b - 1] + 1:06d}", b - a,
                 {"folder": folder, "files": names[a:b], "indices": indices[a:b], "fps": fps, "rate": rate},
                 source, indices[a], indices[b - 1] + 1)
            for a, b in _ranges(len(names), size)]


def _parquet_units(uri: str, group: str) -> list[Unit]:
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
    except Exception as e:
        raise DataError(uri, f"not a readable Parquet file: {e}") from None
    source = fingerprint(uri)
    return [Unit("parquet", group, f"rg{i:05d}", meta.row_group(i).num_rows, {"uri": uri, "row_group": i},
                 source, 0, 2**62)
            for i in range(meta.num_row_groups) if meta.row_group(i).num_rows]


@dataclass
class Inputs:
    """What the inputs hold, listed (nothing decoded)."""

    videos: list[str] = field(default_factory=list)
    folders: dict[str, list[tuple[str, dict]]] = field(default_factory=dict)  # folder -> (image, info)
    parquets: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def ids(self) -> dict[str, str]:
        """uri -> id of every video, frame folder and Parquet file (`input_ids`)."""
        paths = {u: _id_path(u, True) for u in self.videos + self.parquets}
        paths.update({d: _id_path(d, False) for d in self.folders})
        return input_ids(paths)


def list_inputs(inputs: list[str]) -> Inputs:
    """Sort files, folders and globs (local or URIs) into videos, frame folders and Parquet files."""
    found = Inputs()
    for item in inputs:
        fs, _, paths = fsspec.get_fs_token_paths(str(item))  # a file, folder or glob, local or URI
        proto = "" if is_local(item) else str(item).split("://", 1)[0] + "://"
        if not paths:
            found.missing.append(str(item))
        for path in paths:
            if not fs.exists(path):
                found.missing.append(str(item))
            elif fs.isdir(path):
                listing = {f: i for f, i in sorted(fs.find(path, detail=True).items())
                           if not any(c.startswith(("_", TEMP_PREFIX)) for c in f[len(path):].split("/"))}
                if any(f.lower().endswith(VIDEO_EXTENSIONS) for f in listing):
                    found.videos += [proto + f for f in listing if f.lower().endswith(VIDEO_EXTENSIONS)]
                elif any(f.endswith(".parquet") for f in listing):
                    found.parquets += [proto + f for f in listing if f.endswith(".parquet")]
                else:  # frame folders: every folder holding images
                    for f, i in listing.items():
                        if f.lower().endswith(IMAGE_EXTENSIONS):
                            found.folders.setdefault(proto + posixpath.dirname(f), []).append((proto + f, i))
            elif path.endswith(".parquet"):
                found.parquets.append(proto + path)
            else:
                found.videos.append(proto + path)
    found.videos = sorted(dict.fromkeys(found.videos))
    found.parquets = sorted(dict.fromkeys(found.parquets))
    return found


def plan_units(
    inputs: list[str],
    segment_seconds: float = 10.0,
    segment_frames: int = 0,
    every: int = 1,
    fps: float | None = None,
    probe_cache: str | None = None,
    probe_cpus: float = 0.25,
    start_seconds: float | None = None,
    end_seconds: float | None = None,
    videos_only: bool = False,
) -> tuple[list[Unit], Failures]:
    """Units of every input (videos probed as Ray tasks); unplannable inputs go to Failures.
    `start_seconds` / `end_seconds` keep a time range of each video (frame folders and Parquet
    whole). ConfigError when two inputs would have one id."""
    failures = Failures()
    found = list_inputs(inputs)
    ids = found.ids()
    for m in found.missing:
        failures.add(m, DataError(m, "no such file or folder"))
    units: list[Unit] = []
    if found.videos:
        infos, probe_failures = probe_all({u: ids[u] for u in found.videos}, cache_dir=probe_cache, num_cpus=probe_cpus)
        failures.items += probe_failures.items
        for info in infos:
            keep = select_frames(info, every, fps, start_seconds, end_seconds)
            units += [Unit("video", seg.video_id, seg.name, seg.num_frames, {"segment": seg.to_json()},
                           info.fingerprint, seg.start, seg.end)
                      for seg in plan_segments(info, segment_seconds, segment_frames or None, keep)]
    if videos_only:
        for what in sorted(found.folders) + found.parquets:
            failures.add(what, DataError(what, "not a video"))
        return units, failures
    size = segment_frames or max(1, int(round(segment_seconds * DEFAULT_FPS)))
    for folder, files in sorted(found.folders.items()):
        units += _frame_units(folder, ids[folder], files, every, size)
    for uri in found.parquets:
        try:
            units += _parquet_units(uri, ids[uri])
        except DataError as e:
            failures.add(uri, e)
    return units, failures


def probe_all(videos: dict[str, str], cache_dir: str | None = None, num_cpus: float = 0.5) -> tuple[list[VideoInfo], Failures]:
    """Probe `videos` (uri -> video id) as Ray tasks. Unreadable videos go to the returned Failures,
    named; probes are cached as `<cache_dir>/<video_id>/_video.json` (used again only while the
    file's content fingerprint is unchanged)."""
    from playerseg.ray_cluster import map_items

    def _probe(item: dict) -> dict:
        cache = under(cache_dir, f"{item['video_id']}/_video.json") if cache_dir else None
        return load_or_probe(item["uri"], item["video_id"], cache).to_json()

    items = [{"uri": u, "video_id": i} for u, i in sorted(videos.items())]
    done, failures = map_items(items, _probe, name=lambda item: item["uri"], num_cpus=num_cpus)
    return [VideoInfo.from_json(info) for _, info in done], failures


def frames_dataset(inputs: list[str], segment_seconds: float = 10.0, every: int = 1, fps: float | None = None,
                   num_cpus: float = 1.0, concurrency: int | None = None, decode_threads: int = 1,
                   errors: str = "raise"):
    """A Ray Data dataset of the frames of `inputs` (module doc). `errors="skip"` logs a unit that
    fails to decode (naming the file) and goes on; unplannable inputs are always logged and left out."""
    import ray

    units, failures = plan_units(list(inputs), segment_seconds, every=every, fps=fps)
    if failures:
        log.warning("%s", failures.summary())

    def _decode(row: dict) -> Iterator[dict]:
        unit = Unit.from_json(row["unit"])
        try:
            for f in read_unit(unit, decode_threads):
                if f.error:
                    raise DataError(unit.uri, f.error)
                h, w = f.image.shape[:2]
                yield {"video_id": f.video_id, "frame_index": f.frame_index, "pts_seconds": f.pts_seconds,
                       "width": w, "height": h, "image": f.image}
        except DataError as e:
            if errors != "skip":
                raise
            log.error("skipped unit %s: %s", unit.key, e)

    ds = ray.data.from_items([{"unit": u.to_json()} for u in units], override_num_blocks=max(1, len(units)))
    ds.context.execution_options.preserve_order = True  # this dataset's order, not the global default
    return ds.flat_map(_decode, num_cpus=num_cpus, concurrency=concurrency)
