"""Ray job: evaluate a checkpoint on a dataset split (metrics, report.md, worst-frame gallery)."""
from _entry import run
run("evaluate")
