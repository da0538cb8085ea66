"""Ray job: train a U-Net (any smp arch) with Ray Train: `python jobs/train_unet.py --config configs/unet_acme.yaml`."""
from _entry import run

run("train", "unet")
