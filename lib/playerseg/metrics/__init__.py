"""Metrics: semantic (IoU, Dice, boundary F, players-over-LED), instance (COCO AP), RLE."""
