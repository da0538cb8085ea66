"""What validation sets cannot see: a model on the three sample clips (other leagues), every 10th
frame, side by side for each model given: player instances per frame and frames with an implausibly
large player blob (over 1.5% of the frame: no wide-shot player is that big; close-ups are rare in
these clips), the failure where a model paints grass as player.

    .venv/bin/python benchmarks/clip_sanity.py models/unet_effl0_broadcast models/unet_effl0_broadcast_v2
"""
import sys

import av

from playerseg.infer.postprocess import PostprocessConfig, postprocess
from playerseg.io import shared_data_dir
from playerseg.models.segmenter import Segmenter

CLIPS = ("bundesliga_478p", "laliga_720p", "seriea_478p_60fps")


def main(models: list[str]) -> None:
    for model in models:
        seg = Segmenter.load(model, device="cpu", runtime="auto")
        out = []
        for clip in CLIPS:
            n = big = frames = 0
            with av.open(str(shared_data_dir() / "videos" / f"{clip}.mp4")) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i % 10:
                        continue
                    im = f.to_ndarray(format="rgb24")
                    frames += 1
                    found, _ = postprocess(seg.predict_proba(im[None])[0], seg.classes, PostprocessConfig(), im)
                    players = [s for s in found if s.class_id == seg.classes.player]
                    n += len(players)
                    big += any(s.mask.sum() > 0.015 * im.shape[0] * im.shape[1] for s in players)
            out.append(f"{clip}: {n / frames:.1f} players/frame, {big}/{frames} frames with a blob")
        print(model, "|", "; ".join(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["models/unet_effl0_broadcast_v2"])
