"""What a sample knows about each pixel, as training targets: a class *set* per pixel, and boxes.

    allowed, boxes = known_classes(sample, classes)
    allowed   H x W uint8: bit c set = task class c is possible at that pixel (0 = nothing known)
    boxes     N x 4 float32 (x0, y0, x1, y1) of the objects a source labels only by box, and their class

From `Sample.labels` (PIXEL / BOX / NONE per class):
- a label map value v (v labelled per pixel, not background): exactly {v};
- `background` in the label map: "none of the pixel-labelled classes": background plus every class
  the source does not label per pixel (EPL boards: outside a board polygon = background or player);
- IGNORE_INDEX, or no label map: every class, then
- a class labelled by BOX is removed outside all of its boxes (detection set: outside every person
  box a pixel is not player, but may be background or board);
- with `pitch=True` (a source's `pitch_prior`), `player` is removed on the sure grass of the pitch
  (`pitch_mask`) wherever the source does not label players per pixel: the EPL board set says only
  "background or player" off its boards and a person box holds grass around the player, so without
  it nothing tells a model that open grass is never a player.
A single bit is a full label (cross-entropy, Dice); several bits a partial one (-log sum p over the
set, `losses.PartialLabelLoss`); all bits or none say nothing.
"""
from __future__ import annotations

import numpy as np

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.sample import BOX, PIXEL, Sample
from playerseg.pitch import pitch_mask

MAX_CLASSES = 8  # bits of a uint8


def known_classes(sample: Sample, classes: TaskClasses, pitch: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed H x W uint8 bit sets, boxes N x 4 float32, box class ids N int64) of a sample;
    `pitch`: player is not possible on sure grass (`pitch_mask`) unless labelled per pixel."""
    k = len(classes)
    if k > MAX_CLASSES:
        raise ValueError(f"partial labels take at most {MAX_CLASSES} task classes, got {k}")
    h, w = sample.height, sample.width
    everything = (1 << k) - 1  # every class allowed
    pixel = [c for c, n in enumerate(classes.names) if sample.label_kind(n) == PIXEL]
    if sample.semantic is not None and pixel:
        unlabelled = everything & ~sum(1 << c for c in pixel if c != 0)
        lut = np.full(256, everything, np.uint8)
        for c in range(k):
            lut[c] = (1 << c) if c in pixel and c != 0 else everything
        lut[0] = unlabelled if 0 in pixel else everything
        lut[IGNORE_INDEX] = everything
        allowed = lut[sample.semantic]
    else:
        allowed = np.full((h, w), everything, np.uint8)
    boxes, box_classes = [], []
    for c, name in enumerate(classes.names):
        if c == 0 or sample.label_kind(name) != BOX:
            continue
        inside = np.zeros((h, w), bool)
        for inst in sample.instances:
            if inst.class_id != c:
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
            inside[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
            boxes.append(inst.box)
            box_classes.append(c)
        allowed[~inside] &= np.uint8(everything & ~(1 << c))
    player = classes.player
    if pitch and player and sample.label_kind("player") != PIXEL:
        allowed[pitch_mask(sample.image)] &= np.uint8(everything & ~(1 << player))
    return (allowed, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(box_classes, np.int64))
