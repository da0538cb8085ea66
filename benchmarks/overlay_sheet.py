"""Overlay sheet of a model on two frames of each sample clip (players red, boards teal, player boxes
yellow): the README picture docs/broadcast_overlays.jpg.

    .venv/bin/python benchmarks/overlay_sheet.py models/unet_effl0_broadcast_v2 sheet.png [target_height]
"""
import sys, av, cv2, numpy as np
from playerseg.models.segmenter import Segmenter
from playerseg.infer.postprocess import postprocess, PostprocessConfig
from playerseg.viz import overlay
model, out = sys.argv[1], sys.argv[2]
th = int(sys.argv[3]) if len(sys.argv) > 3 else -1
seg = Segmenter.load(model, device="cpu")
if th >= 0:
    import dataclasses; seg.preprocess = dataclasses.replace(seg.preprocess, target_height=th)
rows = []
for clip, idx in [("bundesliga_478p", (20, 120)), ("laliga_720p", (100, 450)), ("seriea_478p_60fps", (150, 600))]:
    c = av.open(f"../shared/data/videos/{clip}.mp4"); frames = {}
    for i, f in enumerate(c.decode(video=0)):
        if i in idx: frames[i] = f.to_ndarray(format="rgb24")
        if i > max(idx): break
    for i in idx:
        im = frames[i]; proba = seg.predict_proba(im[None])[0]
        inst, sem = postprocess(proba, seg.classes, PostprocessConfig(), im)
        ov = overlay(im, sem, seg.classes)
        for s in inst:
            if s.class_id == seg.classes.player:
                x0, y0, x1, y1 = map(int, s.box); cv2.rectangle(ov, (x0, y0), (x1, y1), (255, 255, 0), 1)
        n = sum(1 for s in inst if s.class_id == seg.classes.player)
        cv2.putText(ov, f"{clip} {i}: {n} players", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        rows.append(cv2.resize(ov, (960, int(960 * im.shape[0] / im.shape[1]))))
cv2.imwrite(out, cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
