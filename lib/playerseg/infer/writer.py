"""Output of `playerseg infer`: one part file per work unit, written whole, then its done marker.

    <output>/
      predictions/<group>/<unit>.parquet   one row per instance (video.schema.PREDICTION_SCHEMA)
      frames/<group>/<unit>.parquet        one row per frame (schema.frame_summary_schema): class pixel
                                           fractions, instance count (frames without players too)
      _done/<group>/<unit>.json            written last: the unit is finished (resume skips it)
      _run.json, _lock                     the run signature and the lock (`playerseg.ledger`)
      coco_results.json, summary.json      written at the end of the job

The outputs are a dataset of part files (no per-video merge): `pyarrow.parquet.read_table(
"<output>/predictions")` or `ray.data.read_parquet(...)` read them as one table. `<group>` is the
input's id (`playerseg.video.frames`). A unit is written only when every one of its frames arrived,
each exactly once (rows are keyed by frame index, so a retried task that sends a frame twice cannot
duplicate it); a unit that reported an error is not written, and a re-run tries it again. A bad
frame of a frame folder is reported and left out; the unit is written with its other frames (and
left without done marker, so a re-run reports it again).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from playerseg.data.errors import DataError, Failures
from playerseg.io import write_table_atomic
from playerseg.ledger import Ledger
from playerseg.video.frames import Unit
from playerseg.video.schema import PREDICTION_SCHEMA, frame_summary_schema, prediction_row

log = logging.getLogger(__name__)


# what --overwrite removes: the outputs and what later passes made from them (tracks, `playerseg cluster`)
OUTPUTS = ("predictions", "frames", "coco_results.json", "summary.json", "_tracks", "_cluster")


def part_paths(ledger: Ledger, unit: Unit) -> dict[str, str]:
    return {
        "predictions": ledger.path("predictions", unit.group, f"{unit.name}.parquet"),
        "frames": ledger.path("frames", unit.group, f"{unit.name}.parquet"),
    }


@dataclass
class UnitWriter:
    """Collects frame results (rows of `pipeline.frame_result`) per unit and writes finished units."""

    ledger: Ledger
    units: dict[str, Unit]
    class_names: tuple[str, ...]
    failures: Failures = field(default_factory=Failures)
    pending: dict[str, dict[int, dict]] = field(default_factory=dict)
    failed: set = field(default_factory=set)
    written: list[str] = field(default_factory=list)
    frames: int = 0
    instances: int = 0
    duplicates: int = 0

    def add(self, row: dict) -> None:
        key = row["unit"]
        if key in self.failed or key in self.written:
            self.duplicates += key in self.written
            return
        if row["error"] and row["frame_index"] < 0:  # the unit failed
            self.failed.add(key)
            self.pending.pop(key, None)
            self.failures.add(key, DataError(self.units[key].uri, row["error"]))
            return
        frames = self.pending.setdefault(key, {})
        if row["frame_index"] in frames:
            self.duplicates += 1
        frames[row["frame_index"]] = row
        if len(frames) == self.units[key].num_frames:
            self._write(self.units[key], [frames[i] for i in sorted(frames)])
            del self.pending[key]

    def _write(self, unit: Unit, rows: list[dict]) -> None:
        paths = part_paths(self.ledger, unit)
        bad = [r for r in rows if r["error"]]
        for r in bad:  # one bad frame: reported, left out; the unit's other frames are written
            self.failures.add(f"{unit.key} frame {r['frame_index']}", RuntimeError(r["error"]))
        rows = [r for r in rows if not r["error"]]
        instances = [prediction_row(r["video_id"], r["frame_index"], r["pts_seconds"], inst)
                     for r in rows for inst in r["instances"]]
        write_table_atomic(paths["predictions"], pa.Table.from_pylist(instances, schema=PREDICTION_SCHEMA))
        schema = frame_summary_schema(self.class_names)
        summary = []
        for r in rows:
            fractions = json.loads(r["fractions"])
            summary.append({"video_id": r["video_id"], "frame_index": r["frame_index"],
                            "pts_seconds": r["pts_seconds"], "width": r["width"], "height": r["height"],
                            "num_instances": r["num_instances"],
                            **{f"{n}_fraction": fractions[n] for n in self.class_names}})
        write_table_atomic(paths["frames"], pa.Table.from_pylist(summary, schema=schema))
        if not bad:  # a unit with bad frames stays unmarked: a re-run tries it again and reports them again
            self.ledger.mark(unit, frames=len(rows), instances=len(instances))
        self.written.append(unit.key)
        self.frames += len(rows)
        self.instances += len(instances)

    def finish(self) -> None:
        """Units that ended without all their frames become failures (never silently missing)."""
        for key, unit in self.units.items():
            if key in self.written or key in self.failed:
                continue
            got = len(self.pending.get(key, {}))
            self.failed.add(key)
            self.failures.add(key, DataError(key, f"incomplete: {got} of {unit.num_frames} frames arrived"))
        self.pending.clear()
