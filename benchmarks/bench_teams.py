"""Team assignment (encoder embedding vs colour-histogram baseline) and segmentation split by the
LED-overlap flag, measured on the real Acme frames (`../shared/data/acme-football-semseg`).

    .venv/bin/python benchmarks/bench_teams.py                        # ImageNet encoder, no seg split
    .venv/bin/python benchmarks/bench_teams.py --set model=models/unet_effl0_acme --set split=val --out teams.json
    .venv/bin/python benchmarks/bench_teams.py --no-frames --gallery teams.png

Both methods run side by side in one run on the same instances. Prints per-frame and overall
tables (see `teams_analysis.py` beside this script); `--out` also writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from playerseg.config import add_config_arguments, from_args, to_dict  # noqa: E402
from playerseg.io import write_json_atomic  # noqa: E402
from teams_analysis import AnalysisConfig, default_root, format_tables, run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser, AnalysisConfig)
    parser.add_argument("--out", help="also write the result as JSON here")
    parser.add_argument("--no-frames", action="store_true", help="overall tables only")
    parser.add_argument("--gallery", help="also draw the worst frames (colour vs encoder teams) as a PNG here")
    args = parser.parse_args(argv)
    cfg = from_args(AnalysisConfig, args)
    cfg.root = cfg.root or default_root()
    start = time.time()
    result = run(cfg, args.gallery or "")
    print(format_tables(result, per_frame=not args.no_frames))
    print(f"\n{result['frames']} frames in {time.time() - start:.1f} s")
    if args.out:
        for m in result["teams"].values():
            m["frames"] = [dict(r) for r in m["frames"]]
        write_json_atomic(args.out, {"config": to_dict(cfg), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
