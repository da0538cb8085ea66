"""The SAM image-embedding cache: a Ray Data job runs the encoder once per (frame, crop).

Layout under `cache_dir` (local path or fsspec URI):

    _run.json                          what the cache was built from (model, weights, data, crops)
    <image id>/<x0_y0_x1_y1>.npz       one item: embedding (C x h x w, fp16) and its targets
    _done/frames/<image id>.json       written last: the frame is done (its crops listed)
    _lock                              local caches: one builder at a time (the others wait)

The cache is an output folder of `playerseg.ledger`, with its one mismatch rule: a cache built from
other options is refused in one line naming what differs (its folder name hashes them, so that
takes a folder built by hand or damaged), `train sam --overwrite` rebuilds it.

An item (.npz of .npy arrays) holds `embedding`, `boxes` (N x 4, model input frame), `masks`
(N x L x L bool, bit-packed), `class_ids`, `semantic` (L x L), `input_size`, `original_size`.
Decoder-only training reads these and never runs the encoder. Re-running skips frames with a done
marker; every file is written atomically; a frame that fails is reported and skipped.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import fsspec
import numpy as np
import torch

from playerseg.classes import TaskClasses
from playerseg.config import from_dict, path_field, to_dict
from playerseg.data.errors import Failures
from playerseg.data.registry import DataConfig, build_reader
from playerseg.io import sha256_file, write_bytes_atomic
from playerseg.ledger import Ledger
from playerseg.sam.inputs import Geometry, prepare_item, to_model_input
from playerseg.sam.prompts import CropConfig, crop_sample, player_crops

log = logging.getLogger(__name__)
VERSION = 2  # 2: the ledger's layout (_run.json, _done/)
FRAMES = "frames"  # the done markers' group
SPLIT_KEYS = ("val_fraction", "split_block", "seed")  # a cache serves every split of a dataset


@dataclass
class CacheConfig:
    dir: str = path_field(may_not_exist=True)  # caches root; "" = <run.out_dir>/sam_cache (each cache: <model_type>-<spec hash>/)
    actors: int = 1  # encoder actors (Ray Data ActorPoolStrategy size)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    encoder_batch: int = 4  # crops per encoder call
    dtype: str = "float16"  # of the stored embeddings


def safe_id(key: str) -> str:
    return key.replace("\\", "/").replace("/", "__")


@dataclass(frozen=True)
class CacheFrame:
    """A frame of the cache as a unit of its ledger (`playerseg.ledger`)."""

    image: str  # the reader's key (image id)
    group: str = FRAMES
    uri: str = ""
    source: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return safe_id(self.image)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


def cache_spec(data: DataConfig, crops: CropConfig, model_type: str, checkpoint: str | None,
               prompt_classes: list[str], img_size: int, dtype: str) -> dict:
    """What a cache is built from, the base weights by content (replaced in place: another cache)."""
    d = {k: v for k, v in to_dict(data).items() if k not in SPLIT_KEYS}
    return {"version": VERSION, "model_type": model_type, "checkpoint": checkpoint or None,
            "checkpoint_sha256": sha256_file(checkpoint) if checkpoint else None, "img_size": img_size,
            "data": d, "crops": to_dict(crops), "prompt_classes": list(prompt_classes), "dtype": dtype}


def save_item(path: str, item: dict, embedding: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, embedding=embedding, boxes=item["boxes"], masks=np.packbits(item["masks"], axis=-1),
             mask_shape=np.array(item["masks"].shape, np.int64), class_ids=item["class_ids"],
             semantic=item["semantic"], input_size=item["input_size"], original_size=item["original_size"])
    write_bytes_atomic(path, buf.getvalue())


def load_item(path: str) -> dict:
    """A cached item: numpy arrays, masks unpacked to N x L x L bool."""
    with fsspec.open(path, "rb") as f:
        z = np.load(io.BytesIO(f.read()))
        item = {k: z[k] for k in z.files}
    shape = tuple(item.pop("mask_shape"))
    item["masks"] = np.unpackbits(item["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return item


def embed_frame(sam, sample, classes, crops: CropConfig, prompt_ids: tuple[int, ...], cache_dir: str,
                encoder_batch: int = 4, dtype: str = "float16") -> list[str]:
    """Encode every crop of one frame, write its items then its done marker; returns the item paths."""
    geo = Geometry.of(sam)
    frame_dir = f"{cache_dir}/{safe_id(sample.id)}"
    windows = player_crops(sample, classes, crops)
    items = [prepare_item(crop_sample(sample, c, crops.min_pixels), geo, prompt_ids) for c in windows]
    paths = []
    for s in range(0, len(items), encoder_batch):
        chunk = items[s:s + encoder_batch]
        with torch.no_grad():
            emb = sam.image_encoder(to_model_input(sam, [it["image"] for it in chunk]))
        emb = emb.to(getattr(torch, dtype)).cpu().numpy()
        for k, it in enumerate(chunk):
            path = f"{frame_dir}/{windows[s + k].key}.npz"
            save_item(path, it, emb[k])
            paths.append(path)
    Ledger(cache_dir, {}).mark(CacheFrame(sample.id), crops=[c.key for c in windows],
                               size=[sample.height, sample.width])
    return paths


class EmbedFrame:
    """Embeds one frame into the cache (`map_items(..., actors=N)`: one per actor, holding SAM and
    the reader); returns how many items it wrote."""

    def __init__(self, spec: dict, cache_dir: str, encoder_batch: int):
        from playerseg.sam.build import build_sam

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.sam = build_sam(spec["model_type"], spec["checkpoint"], device)
        self.data = from_dict(DataConfig, spec["data"])
        self.reader = build_reader(self.data)
        self.classes = TaskClasses(tuple(self.data.classes))
        self.prompt_ids = tuple(self.classes.id(n) for n in spec["prompt_classes"])
        self.crops = from_dict(CropConfig, spec["crops"])
        self.spec, self.cache_dir, self.encoder_batch = spec, cache_dir, encoder_batch

    def __call__(self, key: str) -> int:
        try:
            return len(embed_frame(self.sam, self.reader.load(key), self.classes, self.crops, self.prompt_ids,
                                   self.cache_dir, self.encoder_batch, self.spec["dtype"]))
        except Exception as e:  # noqa: BLE001 - one bad frame must not stop the job (named by map_items)
            log.warning("embedding %s failed: %s", key, e)
            raise


def build_cache(spec: dict, cache_dir: str, keys: list[str], cfg: CacheConfig, overwrite: bool = False) -> Failures:
    """Embed the frames `keys` not cached yet, on a pool of `cfg.actors` Ray Data actors. One builder
    at a time for a local cache: sweep trials sharing it wait, then skip what is done (remote caches
    get no lock: concurrent builders only repeat work, every file being written atomically).
    ConfigError when the cache was built from another `spec`; `overwrite` rebuilds it.

    Returns the failures (frames that could not be embedded: their error, per key)."""
    from playerseg.ray_cluster import map_items

    with Ledger(cache_dir, spec, overwrite, elsewhere="another cache.dir", wait=True) as ledger:
        todo = [f.image for f in ledger.pending([CacheFrame(k) for k in keys])]
        failures = Failures()
        log.info("embedding cache %s: %d of %d frames to embed", cache_dir, len(todo), len(keys))
        if not todo:
            return failures
        _, failures = map_items(todo, EmbedFrame, fn_kwargs={"spec": spec, "cache_dir": cache_dir,
                                                             "encoder_batch": cfg.encoder_batch},
                                actors=max(1, cfg.actors), num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor,
                                errors=(Exception,))
        return failures


def list_items(cache_dir: str, keys: list[str]) -> list[str]:
    """The cached item paths of the frames `keys` (those done), in a fixed order."""
    done = Ledger(cache_dir, {}).markers({FRAMES})
    out = []
    for k in keys:
        marker = done.get(CacheFrame(k).key)
        if marker:
            out += [f"{cache_dir}/{safe_id(k)}/{c}.npz" for c in marker["crops"]]
    return out
