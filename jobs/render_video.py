"""Ray job: render frames (video, image folder or Parquet) with predictions as an H.264 mp4."""
from _entry import run
run("render")
