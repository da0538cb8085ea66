"""Inference inputs as work units: a unit is a run of frames decoded by one task and written as
one part file (so it is also the unit of resume).

Three kinds, a reader each (`READERS`):
- "video": a segment of a video file (`playerseg.video`: probed, cut at keyframes, exact indices);
- "frames": a run of image files of a frame folder (video_id = folder name; frame_index = the
  trailing number of the file name when every file has a distinct one, else the sorted position;
  pts_seconds = frame_index / 25);
- "parquet": one row group of a frame Parquet file (`FRAME_SCHEMA`, as `playerseg extract
  --parquet` writes it); video ids and indices come from its rows.

A folder input holding videos means its videos; else its Parquet files; else every folder in it
that holds images is a frame folder. `plan_units(inputs, ...)` sorts inputs into kinds, plans units and returns what could not be
planned as Failures (each naming the file); `read_unit(unit)` yields frames at source size.
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import cv2
import numpy as np

from playerseg.data.errors import DataError, Failures
from playerseg.io import filesystem, is_local
from playerseg.video.probe import VIDEO_EXTENSIONS
from playerseg.video.segments import Frame, Segment, decode_segment

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Unit:
    kind: str  # a key of READERS
    group: str  # output folder: the video id (or the Parquet file stem)
    name: str  # unique within the group, e.g. "000000-000300"
    num_frames: int  # frames the reader yields for the unit
    spec: dict  # what the reader needs

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Unit":
        return cls(**json.loads(text))


# ---- readers: Unit -> frames (RGB HxWx3 uint8 at source size) --------------------------------
def _read_video(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    yield from decode_segment(Segment.from_json(unit.spec["segment"]), threads=threads)


def _read_image(uri: str) -> np.ndarray:
    from playerseg.data.reader import read_image

    return read_image(uri)


def _read_frames(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    fps = unit.spec.get("fps") or 25.0
    for index, uri in zip(unit.spec["indices"], unit.spec["files"]):
        yield Frame(unit.group, index, index / fps, _read_image(uri))


def _read_parquet(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    import pyarrow.parquet as pq

    uri = unit.spec["uri"]
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            table = pq.ParquetFile(f).read_row_group(
                unit.spec["row_group"], columns=["video_id", "frame_index", "pts_seconds", "image"])
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(uri, f"row group {unit.spec['row_group']} unreadable: {e}") from None
    for row in table.to_pylist():
        buf = np.frombuffer(row["image"] or b"", np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if image is None:
            raise DataError(uri, f"frame {row['video_id']}/{row['frame_index']}: image bytes do not decode")
        yield Frame(row["video_id"], int(row["frame_index"]), float(row["pts_seconds"] or 0.0),
                    cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


READERS: dict[str, Callable[..., Iterator[Frame]]] = {
    "video": _read_video,
    "frames": _read_frames,
    "parquet": _read_parquet,
}


def read_unit(unit: Unit, threads: int = 1) -> Iterator[Frame]:
    if unit.kind not in READERS:
        raise ValueError(f"unknown unit kind {unit.kind!r}; kinds are {sorted(READERS)}")
    yield from READERS[unit.kind](unit, threads)


# ---- planning -------------------------------------------------------------------------------
def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _frame_units(folder: str, files: list[str], size: int, fps: float) -> list[Unit]:
    from playerseg.data.reader import trailing_number

    group = posixpath.basename(folder.rstrip("/")) or "frames"
    numbers = [trailing_number(posixpath.splitext(posixpath.basename(f))[0]) for f in files]
    indices = numbers if None not in numbers and len(set(numbers)) == len(numbers) else list(range(len(files)))
    order = sorted(range(len(files)), key=lambda i: indices[i])
    files, indices = [files[i] for i in order], [indices[i] for i in order]
    return [Unit("frames", group, f"{indices[a]:06d}-{indices[b - 1] + 1:06d}", b - a,
                 {"files": files[a:b], "indices": indices[a:b], "fps": fps})
            for a, b in _ranges(len(files), size)]


def _parquet_units(uri: str) -> list[Unit]:
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
    except Exception as e:
        raise DataError(uri, f"not a readable Parquet file: {e}") from None
    group = posixpath.splitext(posixpath.basename(path))[0]
    return [Unit("parquet", group, f"rg{i:05d}", meta.row_group(i).num_rows, {"uri": uri, "row_group": i})
            for i in range(meta.num_row_groups) if meta.row_group(i).num_rows]


def _classify(inputs: list[str]) -> tuple[list[str], dict[str, list[str]], list[str], list[str]]:
    """(video inputs, frame folder -> image files, parquet files, missing inputs)."""
    videos, folders, parquets, missing = [], {}, [], []
    for item in inputs:
        fs, path = filesystem(item)
        proto = "" if is_local(item) else str(item).split("://", 1)[0] + "://"
        if not fs.exists(path):
            missing.append(str(item))
        elif fs.isdir(path):
            files = sorted(fs.find(path))
            if any(f.lower().endswith(VIDEO_EXTENSIONS) for f in files):
                videos.append(str(item))  # a folder of videos: its videos only
            elif any(f.endswith(".parquet") for f in files):
                parquets += [proto + f for f in files if f.endswith(".parquet")]
            else:  # frame folders: every folder holding images
                by_dir: dict[str, list[str]] = {}
                for f in files:
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        by_dir.setdefault(posixpath.dirname(f), []).append(proto + f)
                folders.update({proto + d: found for d, found in by_dir.items()})
        elif path.endswith(".parquet"):
            parquets.append(str(item))
        else:
            videos.append(str(item))
    return videos, folders, parquets, missing


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
) -> tuple[list[Unit], Failures]:
    """Units of every input (videos probed as Ray tasks); unplannable inputs go to Failures.
    `start_seconds` / `end_seconds` keep a time range of each video (frame folders and Parquet whole)."""
    from playerseg.video.source import plan_all, probe_all

    failures = Failures()
    videos, folders, parquets, missing = _classify(inputs)
    for m in missing:
        failures.add(m, DataError(m, "no such file or folder"))
    units: list[Unit] = []
    if videos:
        infos, probe_failures = probe_all(videos, cache_dir=probe_cache, num_cpus=probe_cpus)
        failures.items += probe_failures.items
        for seg in plan_all(infos, segment_seconds, segment_frames or None, every=every, fps=fps,
                            start_seconds=start_seconds, end_seconds=end_seconds):
            units.append(Unit("video", seg.video_id, seg.name, seg.num_frames, {"segment": seg.to_json()}))
    size = segment_frames or max(1, int(round(segment_seconds * 25)))
    for folder, files in sorted(folders.items()):
        units += _frame_units(folder, files[::max(1, every)], size, 25.0)
    for uri in parquets:
        try:
            units += _parquet_units(uri)
        except DataError as e:
            failures.add(uri, e)
    return units, failures
