"""Ray job: a Ray Tune sweep over `playerseg train <family>` (YAML search space, ASHA/PBT)."""
from _entry import run
run("tune")
