"""Torch datasets over one or several readers: random augmented crops for training (each source
drawn by its weight), whole frames for validation.

Frames are resized by the preprocessing policy first (`Preprocess.resize`: the full frame keeps its
aspect ratio; training takes random crops of it, never a squash to a square), with their label
maps and boxes. A training item is a 3 x H x W uint8 image, the H x W uint8 class sets of its
pixels (`playerseg.data.targets`: what the source knows; 0 = nothing) and a MAX_BOXES x 5 float
tensor of the boxes of box-labelled classes (class, x0, y0, x1, y1; unused rows class -1), so the
default collate stacks them, and whether those boxes list every player of the crop (its source labels
players by box: the centre head's targets, `losses.centre_loss`). Normalisation happens on the device
(`Preprocess.normalize`).

A sample that fails to load (DataError naming its file) is skipped and recorded in `failures`;
the rest of the set is used.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from playerseg.classes import TaskClasses
from playerseg.data.errors import DataError, Failures
from playerseg.data.reader import Reader
from playerseg.data.sample import BOX, Sample
from playerseg.data.targets import known_classes
from playerseg.models.segmenter import Preprocess

MAX_BOXES = 96  # boxes per crop carried to the loss (a wide shot has ~25 people)


def scaled_sample(sample: Sample, preprocess: Preprocess) -> Sample:
    """The sample at model resolution: image, label map and boxes resized (instance masks dropped)."""
    image = preprocess.resize(sample.image)
    fy, fx = image.shape[0] / sample.height, image.shape[1] / sample.width
    semantic = None if sample.semantic is None else preprocess.resize_labels(sample.semantic)
    instances = [dataclasses.replace(i, mask=None, box=(i.box[0] * fx, i.box[1] * fy, i.box[2] * fx, i.box[3] * fy))
                 for i in sample.instances]
    return dataclasses.replace(sample, image=image, semantic=semantic, instances=instances,
                               meta=dict(sample.meta, source_size=(sample.height, sample.width)))


class FrameStore:
    """Scaled samples of one or several readers ({source name: reader}), decoded once when `cache`.

    `keys` lists (source name, key) pairs; `get(entry)` gives the scaled Sample."""

    def __init__(self, readers: dict[str, Reader] | Reader, preprocess: Preprocess, cache: bool = True,
                 failures: Failures | None = None):
        self.readers = readers if isinstance(readers, dict) else {"": readers}
        self.preprocess = preprocess
        self.cache = cache
        self.failures = failures if failures is not None else Failures()
        self._frames: dict[tuple[str, str], Sample] = {}
        self.keys: list[tuple[str, str]] = []
        for name, reader in self.readers.items():
            for key in reader.keys():
                if cache:
                    try:
                        self._frames[(name, key)] = self._load((name, key))
                    except (DataError, OSError, ValueError) as e:
                        self.failures.add(f"{name}:{key}" if name else key, e)
                        continue
                self.keys.append((name, key))

    def _load(self, entry: tuple[str, str]) -> Sample:
        return scaled_sample(self.readers[entry[0]].load(entry[1]), self.preprocess)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, entry: tuple[str, str]) -> Sample:
        return self._frames[entry] if self.cache else self._load(entry)

    def sources(self) -> list[str]:
        return list(self.readers)


class CropDataset(Dataset):
    """`length` augmented random crops; item i draws a frame (seeded by the epoch and i) with
    probability weight(source) / frames(source), so each source gets its share of the crops."""

    def __init__(self, store: FrameStore, transform, classes: TaskClasses, length: int = 0,
                 weights: dict[str, float] | None = None, object_crop_p: float = 0.0,
                 crop: tuple[int, int] = (384, 384), pitch: dict[str, bool] | None = None):
        if not len(store):
            raise ValueError("no usable training frames")
        self.store = store
        self.transform = transform
        self.classes = classes
        self.length = length or len(store)
        counts = {s: sum(1 for n, _ in store.keys if n == s) for s in store.sources()}
        w = np.array([(weights or {}).get(n, 1.0) / counts[n] for n, _ in store.keys], np.float64)
        self.p = w / w.sum()
        self.seed = 0
        self.object_crop_p = object_crop_p
        self.crop = crop
        self.pitch = pitch or {}

    def set_epoch_seed(self, seed: int) -> None:
        self.seed = int(seed)
        self.transform.set_random_seed(self.seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, index))
        entry = self.store.keys[int(rng.choice(len(self.p), p=self.p))]
        sample = self.store.get(entry)
        allowed, boxes, box_classes = known_classes(sample, self.classes, self.pitch.get(entry[0], False))
        image = sample.image
        if sample.instances and rng.random() < self.object_crop_p:
            image, allowed, boxes = self._around(rng, sample, image, allowed, boxes)
        h, w = allowed.shape
        boxes = np.clip(boxes, 0, [w, h, w, h]) if len(boxes) else boxes
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1) if len(boxes) else []
        out = self.transform(image=image, mask=allowed, bboxes=boxes[keep] if len(boxes) else boxes,
                             box_classes=box_classes[keep] if len(boxes) else box_classes)
        table = torch.full((MAX_BOXES, 5), -1.0)
        got = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)[:MAX_BOXES]
        if len(got):
            table[: len(got), 0] = torch.as_tensor(np.asarray(out["box_classes"])[: len(got)], dtype=torch.float32)
            table[: len(got), 1:] = torch.from_numpy(got)
        return (torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(out["mask"])), table,
                torch.tensor(sample.label_kind("player") == BOX))


    def _around(self, rng, sample: Sample, image, allowed, boxes):
        """A window 1.25 x the crop size centred (with jitter) on one of the sample's objects; the
        augmentation's zoom and random crop then fall around it."""
        inst = sample.instances[int(rng.integers(len(sample.instances)))]
        h, w = allowed.shape
        wh, ww = int(1.25 * self.crop[0]), int(1.25 * self.crop[1])
        cx = (inst.box[0] + inst.box[2]) / 2 + rng.uniform(-0.2, 0.2) * self.crop[1]
        cy = (inst.box[1] + inst.box[3]) / 2 + rng.uniform(-0.2, 0.2) * self.crop[0]
        x0 = int(np.clip(cx - ww / 2, 0, max(0, w - ww)))
        y0 = int(np.clip(cy - wh / 2, 0, max(0, h - wh)))
        if len(boxes):
            boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
        return image[y0:y0 + wh, x0:x0 + ww], allowed[y0:y0 + wh, x0:x0 + ww], boxes


def box_lists(table: torch.Tensor) -> list[torch.Tensor]:
    """Batch of MAX_BOXES x 5 box tables -> per image the used rows (class, x0, y0, x1, y1)."""
    return [t[t[:, 0] >= 0] for t in table]
