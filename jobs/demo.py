"""Ray job: the end-to-end demo (sample clips or a synthetic clip -> model -> inference -> overlay video)."""
from _entry import run
run("demo")
