"""Shared by the job files: make `lib/` importable (e.g. under `ray job submit --working-dir .`)
and run one `playerseg` command with the job's arguments."""
import sys
from pathlib import Path

_LIB = Path(__file__).resolve().parents[1] / "lib"
if _LIB.is_dir() and str(_LIB) not in sys.path:
    sys.path.insert(0, str(_LIB))


def run(*command: str) -> None:
    """`run("train", "unet")` runs `playerseg train unet <the job's arguments>`."""
    from playerseg.cli import main

    raise SystemExit(main([*command, *sys.argv[1:]]))
