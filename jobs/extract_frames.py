"""Ray job: extract frames of videos (files/folders/globs, local or s3://) as images or Parquet."""
from _entry import run
run("extract")
