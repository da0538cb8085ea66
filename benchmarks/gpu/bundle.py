"""Build the GPU bundle: one folder (<= 64 MiB) that `run.py` runs from on a bare CUDA PyTorch machine.

    python benchmarks/gpu/bundle.py --out dist/gpu_bundle      # needs PyPI once (wheels), then offline
    # on the GPU machine (Python 3.12, torch, timm, opencv-headless, numpy, safetensors):
    cd gpu_bundle && python run.py --out /path/to/figures

What goes in:
  run.py, pack.py, augment.py    benchmarks/gpu/
  lib/playerseg/                 the package (no install; run.py puts lib/ on sys.path)
  configs/unet_broadcast_v2.yaml    the committed model's training config
  models/unet_effl0_broadcast_v2/ the committed model (infer phase)
  models/unet_effl0_broadcast/   the config's run.init_weights (train phase)
  pack.zip                       the training pack (pack.py; --pack reuses a built one)
  wheels/                        cp312 manylinux wheels of what such a machine lacks: pinned in
                                 constraints.txt, `pip download --only-binary=:all: --no-deps`, cached
                                 in dist/wheels/ (git-ignored); run.py unpacks only those whose module
                                 is not importable there
  manifest.json                  every file with its size and sha256, and the total

scipy (35 MB) is not carried by default: it only serves the validation of the box-labelled detection
set (`infer.postprocess`), and with both models and the pack it would pass 64 MiB (`--with-scipy`
adds it; the build fails when the total passes --max-mib).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WHEELS = ["segmentation_models_pytorch", "pycocotools", "PyYAML", "fsspec"]  # names as in constraints.txt
MODELS = ["unet_effl0_broadcast_v2", "unet_effl0_broadcast"]
SKIP = {"__pycache__", "model.onnx"}  # the GPU phases run torch: a model folder's ONNX (21 MB) stays home


def pinned(name: str, constraints: Path = ROOT / "constraints.txt") -> str:
    """`name==version` of a package in constraints.txt (names compared as pip does: - _ . alike)."""
    norm = lambda s: s.lower().replace("_", "-").replace(".", "-")  # noqa: E731
    for line in constraints.read_text().splitlines():
        if "==" in line and norm(line.split("==")[0].strip()) == norm(name):
            return line.strip()
    raise ValueError(f"{name} is not pinned in {constraints}")


def fetch_wheels(names: list[str], cache: Path, python: str = "3.12") -> list[Path]:
    """The cp`python` manylinux x86-64 wheels of the pinned `names`, downloaded into `cache` once."""
    cache.mkdir(parents=True, exist_ok=True)
    specs = [pinned(n) for n in names]

    def have(spec: str) -> Path | None:
        name, version = spec.split("==")
        stem = name.lower().replace("-", "_").replace(".", "_")
        for w in cache.glob("*.whl"):
            parts = w.name.split("-")
            if parts[0].lower() == stem and parts[1] == version:
                return w
        return None

    missing = [s for s in specs if have(s) is None]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--python-version", python,
               "--implementation", "cp", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
               "--platform", "manylinux_2_28_x86_64", "-d", str(cache), *missing]
        subprocess.run(cmd, check=True)
    out = [have(s) for s in specs]
    if any(w is None for w in out):
        raise RuntimeError(f"wheels not found in {cache} after download: {[s for s, w in zip(specs, out) if w is None]}")
    return out


def _copytree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".pyc")])


def build(out: Path, pack: Path | None, quality: int, with_scipy: bool, max_mib: float, wheel_cache: Path) -> dict:
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("run.py", "pack.py", "augment.py"):
        shutil.copy2(HERE / name, tmp / name)
    _copytree(ROOT / "lib" / "playerseg", tmp / "lib" / "playerseg")
    (tmp / "configs").mkdir()
    shutil.copy2(ROOT / "configs" / "unet_broadcast_v2.yaml", tmp / "configs" / "unet_broadcast_v2.yaml")
    for m in MODELS:
        _copytree(ROOT / "models" / m, tmp / "models" / m)
    (tmp / "wheels").mkdir()
    for w in fetch_wheels(WHEELS + (["scipy"] if with_scipy else []), wheel_cache):
        shutil.copy2(w, tmp / "wheels" / w.name)
    if pack is None:
        sys.path.insert(0, str(HERE))
        from pack import build_pack

        from playerseg.io import shared_data_dir

        build_pack(str(ROOT / "configs" / "unet_broadcast_v2.yaml"), str(tmp / "pack.zip"), quality=quality,
                   data_root=str(shared_data_dir()))
    else:
        shutil.copy2(pack, tmp / "pack.zip")
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(tmp))] = {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    total = sum(f["bytes"] for f in files.values())
    groups = {}
    for name, f in files.items():
        top = name.split("/")[0] if "/" in name else name
        groups[top] = groups.get(top, 0) + f["bytes"]
    manifest = {"total_bytes": total, "total_mib": round(total / 2**20, 2), "max_mib": max_mib,
                "by_part_mib": {k: round(v / 2**20, 2) for k, v in sorted(groups.items())}, "files": files}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if total > max_mib * 2**20:
        raise SystemExit(f"bundle is {total / 2**20:.1f} MiB, over {max_mib} MiB ({manifest['by_part_mib']}): "
                         f"lower --quality of the pack or leave out --with-scipy; the partial bundle is in {tmp}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "dist" / "gpu_bundle"), help="bundle folder (replaced)")
    p.add_argument("--pack", help="a pack built before (pack.py); default: build one from configs/unet_broadcast_v2.yaml")
    p.add_argument("--quality", type=int, default=50, help="JPEG quality of the pack's frames (when built here)")
    p.add_argument("--with-scipy", action="store_true", help="carry scipy (detection validation on the GPU machine)")
    p.add_argument("--max-mib", type=float, default=64.0)
    p.add_argument("--wheel-cache", default=str(ROOT / "dist" / "wheels"))
    args = p.parse_args(argv)
    manifest = build(Path(args.out), Path(args.pack) if args.pack else None, args.quality, args.with_scipy,
                     args.max_mib, Path(args.wheel_cache))
    print(json.dumps({k: manifest[k] for k in ("total_mib", "by_part_mib")}, indent=1))
    print(f"bundle: {args.out}\nrun it on a CUDA machine: cd {args.out} && python run.py --out <figures folder>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
