"""Ray job: batch inference over match archives (videos, frame folders, Parquet) -> instance Parquet + COCO JSON."""
from _entry import run
run("infer")
