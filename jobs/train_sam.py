"""Ray job: fine-tune SAM or a head on its embeddings: `python jobs/train_sam.py --data ... --model-type vit_b --sam-checkpoint ...`."""
from _entry import run

run("train", "sam")
