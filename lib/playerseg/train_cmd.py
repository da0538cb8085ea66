"""`playerseg train <family> ...`: train a model family as a Ray Train job.

Each family is a `*_cmd.py` module (`train/unet_cmd.py`, `sam/train_cmd.py`) exposing
`add_arguments(parser)` and `run(args) -> int`; adding a family is adding a line to FAMILIES.
"""
from __future__ import annotations

import argparse
import importlib
import sys

FAMILIES: dict[str, tuple[str, str]] = {
    # family: (module, one-line help)
    "unet": ("playerseg.train.unet_cmd", "smp encoder-decoder (Unet, Unet++, FPN, DeepLabV3+) with Ray Train DDP"),
    "sam": ("playerseg.sam.train_cmd", "Segment Anything fine-tuning (decoder / prompt / last blocks / full) or a head on its embeddings"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    argv = sys.argv[1:]
    chosen = next((a for a in argv if a in FAMILIES), None)  # import only the family being run
    from playerseg.cli import examples, flag_names

    for family, (module, help_text) in FAMILIES.items():
        load = chosen is None or family == chosen
        mod = importlib.import_module(module) if load else None
        p = sub.add_parser(family, help=help_text, description=help_text, epilog=examples(getattr(mod, "__doc__", "")),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if mod is not None:
            mod.add_arguments(p)
        p.set_defaults(_family_module=module, _flag_names=flag_names(p))


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._family_module).run(args) or 0)
