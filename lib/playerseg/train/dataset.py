"""Torch datasets over a reader: random augmented crops for training, whole frames for validation.

Frames are resized by the preprocessing scale first (`Preprocess.resize`: the full frame keeps its
aspect ratio; training takes random crops of it, never a squash to a square). Images come out as
3 x H x W uint8 tensors and labels as H x W int64 (255 = ignore); normalisation happens on the
device (`Preprocess.normalize`), so the data path stays uint8.

A sample that fails to load (DataError naming its file) is skipped and recorded in `failures`;
the rest of the set is used.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from playerseg.classes import IGNORE_INDEX
from playerseg.data.errors import DataError, Failures
from playerseg.data.reader import Reader
from playerseg.models.segmenter import Preprocess


class FrameStore:
    """Scaled (image, labels) of a reader's keys, decoded once when `cache` (else on each access)."""

    def __init__(self, reader: Reader, preprocess: Preprocess, cache: bool = True,
                 failures: Failures | None = None, keys: list[str] | None = None):
        self.reader = reader
        self.preprocess = preprocess
        self.cache = cache
        self.failures = failures if failures is not None else Failures()
        self._frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.keys = []
        for key in keys if keys is not None else reader.keys():
            if cache:
                try:
                    self._frames[key] = self._load(key)
                except (DataError, OSError, ValueError) as e:
                    self.failures.add(key, e)
                    continue
            self.keys.append(key)

    def _load(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        sample = self.reader.load(key)
        if sample.semantic is None:
            raise DataError(sample.path or key, "no semantic labels (training needs a label map)")
        return self.preprocess.resize(sample.image), self.preprocess.resize_labels(sample.semantic)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self._frames[key] if self.cache else self._load(key)


class CropDataset(Dataset):
    """`length` augmented random crops, cycling over the frames (index i -> frame i mod n)."""

    def __init__(self, store: FrameStore, transform, length: int = 0):
        if not len(store):
            raise ValueError("no usable training frames")
        self.store = store
        self.transform = transform
        self.length = length or len(store)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        image, labels = self.store.get(self.store.keys[index % len(self.store)])
        out = self.transform(image=image, mask=labels)
        return (torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(out["mask"])).long())


class FrameDataset(Dataset):
    """Whole scaled frames (validation), labels padded like the images with IGNORE_INDEX."""

    def __init__(self, store: FrameStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int):
        key = self.store.keys[index]
        image, labels = self.store.get(key)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        y = torch.from_numpy(np.ascontiguousarray(labels)).long()
        return self.store.preprocess.pad(x), self.store.preprocess.pad(y, value=IGNORE_INDEX), key
