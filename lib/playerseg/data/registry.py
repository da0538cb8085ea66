"""Readers by name, the data config, and streaming with skip-and-report.

Every reader (see `playerseg.data.reader.Reader`) offers:

    keys() -> list[str]          sorted, listing only
    load(key) -> Sample          DataError naming the file (and line) on bad input
    iter(reader), len(reader)    streams load(k) over keys(); nothing holds the whole set
    frame_index(key) -> int|None, group(key) -> str   (for leak-free splits)

    reader = build_reader(DataConfig(format="acme", root="../shared/data/acme-football-semseg"), "train")
    failures = Failures()
    for sample in iter_samples(reader, failures): ...
    print(failures.summary())
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

from playerseg.classes import DEFAULT_CLASSES
from playerseg.data.acme import AcmeReader
from playerseg.data.coco import CocoReader
from playerseg.data.errors import Failures, skip_bad
from playerseg.data.labelme import LabelmeReader
from playerseg.data.reader import Reader, Subset
from playerseg.data.sample import Sample
from playerseg.data.yolo import YoloReader
from playerseg.config import path_field

READERS: dict[str, type[Reader]] = {"acme": AcmeReader, "coco": CocoReader, "yolo": YoloReader,
                                    "labelme": LabelmeReader}
SPLITS = ("train", "val")


@dataclass
class SourceConfig:
    """One labelled set: its reader, its split and its share of the training crops."""

    format: str = "acme"  # a key of READERS
    root: str = path_field()  # dataset folder (local path or fsspec URI)
    annotations: str = path_field()  # COCO: the instances JSON (default <root>/annotations.json)
    split_dir: str = ""  # YOLO: one subfolder (train, valid, test); empty = all of them
    mapping: str = path_field()  # class-mapping YAML; empty = the built-in mappings/<format>.yaml
    val_fraction: float = 0.2
    split_block: int = 10  # frames per contiguous block assigned whole to train or val
    # groups (videos / matches) held out whole for validation, by prefix (`08fd33` holds out every
    # `08fd33_*` clip); when given, they are the whole val split and val_fraction is not used
    val_groups: list[str] = field(default_factory=list)
    name: str = ""  # how reports and metrics name the source (default: its format)
    weight: float = 1.0  # share of training crops drawn from this source (relative)
    # training only: sure pitch grass is "not player" where the source does not label players per
    # pixel (`playerseg.data.targets.pitch_mask`; board polygons, person boxes)
    pitch_prior: bool = False


@dataclass
class DataConfig(SourceConfig):
    """The data of a job: one source (the fields above) or several (`sources`, training and evaluate)."""

    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    seed: int = 0
    min_instance_pixels: int = 16  # smaller mask components / instances are dropped
    sources: list[SourceConfig] = field(default_factory=list)  # several sets; replaces the fields above

    def source_list(self) -> list["DataConfig"]:
        """One single-source DataConfig per source (`classes`, `seed`... shared), or [self]."""
        if not self.sources:
            return [self]
        out = [dataclasses.replace(self, sources=[], **dataclasses.asdict(s)) for s in self.sources]
        for s in out:
            s.name = s.name or s.format
        names = [s.name for s in out]
        if len(set(names)) != len(names):
            raise ValueError(f"data.sources need distinct names, got {names}")
        return out


def build_reader(cfg: DataConfig, split: str | None = None) -> Reader:
    """The reader `cfg.format` over `cfg.root`, restricted to `split` ("train", "val" or None = all).

    Splits are cut by `playerseg.data.splits.split_keys` (whole blocks of neighbouring frames).
    """
    if cfg.format not in READERS:
        raise ValueError(f"unknown data format {cfg.format!r}; formats are {sorted(READERS)}")
    if split not in (None, *SPLITS):
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS} or None")
    reader = READERS[cfg.format].from_config(cfg)
    if split is None:
        return reader
    from playerseg.data.splits import split_keys

    return Subset(reader, split_keys(reader, cfg.val_fraction, cfg.split_block, cfg.seed, cfg.val_groups)[split],
                  split)


def iter_samples(reader: Reader, failures: Failures) -> Iterator[Sample]:
    """Stream the reader's samples; a bad one is recorded in `failures` and skipped."""
    return skip_bad(reader.keys(), reader.load, failures)


__all__ = ["READERS", "DataConfig", "SourceConfig", "Reader", "Subset", "build_reader", "iter_samples"]
