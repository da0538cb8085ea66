"""Ray job: fine-tune SAM or a head on its embeddings: `python jobs/train_sam.py --data ... --model-type vit_b --sam-checkpoint ...`."""
import sys; from _entry import run  # noqa: E702
sys.argv[1:1] = ["sam"]; run("train")  # noqa: E702  (= `playerseg train sam ...`)
