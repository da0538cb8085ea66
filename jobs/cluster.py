"""Ray job: team assignment and player flags written back into `playerseg infer` outputs."""
from _entry import run
run("cluster")
