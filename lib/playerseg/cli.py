"""`playerseg <command>`: one console script, one subcommand per job.

Each command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their command runs, so `playerseg --help` stays fast.
Adding a job is adding a module and a line here.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)  -- keep one line per command
    "demo": ("playerseg.demo", "the whole pipeline on this machine: local Ray, sample clips, model, inference, overlay video"),
    "infer": ("playerseg.infer.infer_cmd", "segment players / LED boards in videos on Ray: instances to Parquet + COCO JSON"),
    "cluster": ("playerseg.players.cluster_cmd", "team assignment (k-means on player embeddings) and LED / truncated / merged flags, written into inference outputs"),
    "extract": ("playerseg.video.extract", "frames of videos as JPEG/PNG files or Parquet rows (Ray, sharded)"),
    "render": ("playerseg.video.render", "H.264 mp4 of frames with predicted players/LED boards drawn (Ray)"),
    "synth": ("playerseg.synth_cmd", "write a synthetic broadcast set (tests, benchmarks)"),
    "export": ("playerseg.export_cmd", "export a trained model: ONNX / torch.export .pt2 (dynamic sizes, classes + preprocessing inside), TorchScript, safetensors"),
    "evaluate": ("playerseg.evaluate", "evaluate a checkpoint on a dataset split: metrics, report, worst-frame gallery"),
    "train": ("playerseg.train_cmd", "train a segmentation model as a Ray Train job (`playerseg train unet ...`)"),
    "tune": ("playerseg.tune.tune_cmd", "hyperparameter sweep (Ray Tune, ASHA/PBT) over `playerseg train`: results table, best config + checkpoint"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (so one command imports only its own module)."""
    parser = argparse.ArgumentParser(prog="playerseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = [a for a in argv if not a.startswith("-")]
    only = names[0] if names and names[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
