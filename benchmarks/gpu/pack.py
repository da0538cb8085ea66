"""The training pack of the GPU bundle: every labelled frame of a training config's sources, already
at the model's resolution, in one zip file a bare GPU machine reads without the source readers.

    python benchmarks/gpu/pack.py --config configs/unet_broadcast_v2.yaml --out dist/pack.zip
    pack = Pack("dist/pack.zip"); reader = pack.reader("acme", "val")    # a playerseg Reader

What it holds, per frame of each source and split (the split the config says: `val_groups`,
`val_fraction` / `split_block`, cut by the project's own `data.splits`):
- the frame scaled by the config's resolution policy (`train.dataset.scaled_sample`: 720 px high for
  configs/unet_broadcast_v2.yaml) as JPEG (`--quality`, default 50: the whole pack of 530 frames is ~40 MB,
  so that code, wheels, two models and the pack stay under 64 MiB);
- its label map (task class ids, IGNORE_INDEX where unlabelled) as PNG, where the source has one;
- its boxes (class, x0, y0, x1, y1 at pack resolution) and `Sample.labels` (how the source labels
  each class), in index.json.
The class set of each pixel (`data.targets.known_classes`) is not stored: it is computed from these,
on the GPU machine, by the same call the Ray training makes (`train.dataset.CropDataset`), and the
label maps are what validation (`metrics.sources.SourceMeter`) scores. Instance masks are not kept
(training drops them too). Frames a reader refuses are listed in index.json's `failures`.

JPEG and PNG members are stored as they are (already compressed); index.json is deflated.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _lib in (HERE / "lib", HERE.parents[1] / "lib"):  # the bundle's copy, else the repository's
    if (_lib / "playerseg").is_dir():
        sys.path.insert(0, str(_lib))
        break

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from playerseg.data.reader import Reader  # noqa: E402
from playerseg.data.sample import Instance, Sample  # noqa: E402

FORMAT = "playerseg-gpu-pack/1"
INDEX = "index.json"


def build_pack(config: str, out: str, quality: int = 50, max_per_split: int = 0, target_height: int = 0,
               data_root: str = "", overrides=()) -> dict:
    """Write the pack of training config `config` to `out` (zip); returns its index (without entries).

    `max_per_split` > 0 keeps the first N frames of each source and split (a dry run's tiny pack);
    `target_height` > 0 replaces the config's resolution policy; `data_root` replaces a leading
    `../shared/data` of the sources' roots."""
    from playerseg.config import load, to_dict
    from playerseg.data.errors import Failures
    from playerseg.data.registry import build_reader
    from playerseg.train.config import TrainConfig
    from playerseg.train.dataset import scaled_sample
    from playerseg.train.unet import preprocess_of

    cfg = load(TrainConfig, config, list(overrides))
    if target_height:
        cfg.input.target_height = int(target_height)
    if data_root:
        for s in cfg.data.sources:
            if s.root.startswith("../shared/data"):
                s.root = str(Path(data_root) / s.root.removeprefix("../shared/data").lstrip("/"))
    preprocess = preprocess_of(cfg)
    failures = Failures()
    entries = []
    started = time.perf_counter()
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".tmp-{out_path.name}-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for source in cfg.data.source_list():
            for split in ("train", "val"):
                reader = build_reader(source, split)
                keys = reader.keys()[: max_per_split or None]
                for key in keys:
                    try:
                        sample = scaled_sample(reader.load(key), preprocess)
                    except (OSError, ValueError) as e:  # DataError is a ValueError
                        failures.add(f"{source.name}:{key}", e)
                        continue
                    n = len(entries)
                    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                            cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
                    z.writestr(f"img/{n:05d}.jpg", jpg.tobytes())
                    semantic = None
                    if sample.semantic is not None:
                        ok, png = cv2.imencode(".png", sample.semantic, [cv2.IMWRITE_PNG_COMPRESSION, 9])
                        semantic = f"sem/{n:05d}.png"
                        z.writestr(semantic, png.tobytes())
                    entries.append({
                        "source": source.name, "split": split, "key": key, "id": sample.id, "path": sample.path,
                        "group": sample.group, "frame_index": sample.frame_index, "labels": sample.labels,
                        "size": [sample.height, sample.width], "source_size": list(sample.meta["source_size"]),
                        "image": f"img/{n:05d}.jpg", "semantic": semantic,
                        "instances": [[i.class_id, *[round(float(v), 2) for v in i.box], i.label]
                                      for i in sample.instances]})
        index = {"format": FORMAT, "config": to_dict(cfg), "classes": list(cfg.data.classes),
                 "preprocess": dataclasses.asdict(preprocess), "quality": int(quality),
                 "max_per_split": int(max_per_split), "failures": [list(f) for f in failures.items],
                 "counts": _counts(entries), "seconds": round(time.perf_counter() - started, 1)}
        z.writestr(zipfile.ZipInfo(INDEX), json.dumps({**index, "entries": entries}), zipfile.ZIP_DEFLATED)
    os.replace(tmp, out_path)
    index["bytes"] = out_path.stat().st_size
    return index


def _counts(entries: list[dict]) -> dict:
    out: dict = {}
    for e in entries:
        out.setdefault(e["source"], {}).setdefault(e["split"], 0)
        out[e["source"]][e["split"]] += 1
    return out


class Pack:
    """A pack file: `index` (config, classes, preprocessing, counts) and a Reader per source and split."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.zip = zipfile.ZipFile(self.path)
        data = json.loads(self.zip.read(INDEX))
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file (format {data.get('format')!r})")
        self.entries = data.pop("entries")
        self.index = data

    def reader(self, source: str, split: str) -> "PackReader":
        return PackReader(self, source, split)

    def read(self, source_cfg, split: str) -> "PackReader":
        """`train.unet.build_training(read=...)`: the reader of a source config's split."""
        return self.reader(source_cfg.name, split)


class PackReader(Reader):
    """The frames of one source and split of a pack, as the project's `Sample` records."""

    def __init__(self, pack: Pack, source: str, split: str):
        self.pack = pack
        self._entries = {e["key"]: e for e in pack.entries if e["source"] == source and e["split"] == split}

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def load(self, key: str) -> Sample:
        e = self._entries[key]
        image = cv2.imdecode(np.frombuffer(self.pack.zip.read(e["image"]), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{self.pack.path}:{e['image']}: not a decodable JPEG")
        semantic = None
        if e["semantic"]:
            semantic = cv2.imdecode(np.frombuffer(self.pack.zip.read(e["semantic"]), np.uint8), cv2.IMREAD_UNCHANGED)
        instances = [Instance(int(c), (x0, y0, x1, y1), label=label) for c, x0, y0, x1, y1, label in e["instances"]]
        return Sample(id=e["id"], image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB), semantic=semantic,
                      instances=instances, path=e["path"], group=e["group"], frame_index=e["frame_index"],
                      meta={"pack_source_size": tuple(e["source_size"])}, labels=dict(e["labels"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/unet_broadcast_v2.yaml", help="training config whose sources are packed")
    p.add_argument("--out", required=True, help="pack file (.zip)")
    p.add_argument("--quality", type=int, default=50, help="JPEG quality of the frames (optimised, progressive)")
    p.add_argument("--max-per-split", type=int, default=0, help="first N frames per source and split (0 = all)")
    p.add_argument("--target-height", type=int, default=0, help="frame height (0 = the config's resolution policy)")
    p.add_argument("--data-root", default="", help="replaces ../shared/data in the sources' roots")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    index = build_pack(args.config, args.out, args.quality, args.max_per_split, args.target_height,
                       args.data_root, args.overrides)
    print(json.dumps({k: index[k] for k in ("counts", "bytes", "quality", "seconds", "failures")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
