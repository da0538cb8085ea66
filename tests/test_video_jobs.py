"""The extract and render jobs on Ray: outputs, resumption, bad files reported, mp4 properties."""
import hashlib
import json
import os

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from playerseg.metrics import rle
from playerseg.video import decode_sequential, frames_dataset
from playerseg.video.encode import video_stats
from playerseg.video.extract import ExtractConfig, run_extract
from playerseg.video.render import RenderConfig, run_render
from playerseg.video.schema import PREDICTION_SCHEMA
from _testclip import write_test_clip

pytestmark = pytest.mark.usefixtures("ray_local")  # conftest: a local Ray of its own for this module


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    clip = write_test_clip(str(d / "clip.mp4"), frames=48, gop=8, bframes=2)
    data = open(clip, "rb").read()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    (d / "readme.mp4").write_text("this is text, not a video\n")
    return d


def test_extract_files_reports_bad_videos_and_resumes(videos, tmp_path):
    cfg = ExtractConfig(inputs=[str(videos)], out=str(tmp_path / "out"), segment_seconds=0.4, quality=95)
    summary = run_extract(cfg)
    assert summary["videos"] == 1 and summary["frames"] == 48
    failed = " ".join(f["what"] + f["error"] for f in summary["failures"])
    assert "truncated.mp4" in failed and "readme.mp4" in failed
    out = tmp_path / "out" / "clip"
    files = sorted(p for p in os.listdir(out) if p.endswith(".jpg"))
    assert files == [f"{i:06d}.jpg" for i in range(48)]
    seq = {f.frame_index: f.image for f in decode_sequential(str(videos / "clip.mp4"))}
    jpg = cv2.cvtColor(cv2.imread(str(out / "000017.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(jpg.astype(int) - seq[17]).mean() < 4  # the right frame, JPEG-close
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]
    per = summary["per_video"]["clip"]
    assert per["segments"] > 3 and per["skipped"] == 0

    mtime = os.path.getmtime(out / "000000.jpg")
    again = run_extract(cfg)
    assert again["per_video"]["clip"]["skipped"] == per["segments"]
    assert again["frames"] == 48 and os.path.getmtime(out / "000000.jpg") == mtime

    done = sorted(os.listdir(tmp_path / "out" / "_done" / "clip"))
    os.remove(tmp_path / "out" / "_done" / "clip" / done[1])  # as if the job died during this segment
    os.remove(out / "000020.jpg") if done[1].startswith("000020") else None
    third = run_extract(cfg)
    assert third["per_video"]["clip"]["skipped"] == per["segments"] - 1
    assert sorted(p for p in os.listdir(out) if p.endswith(".jpg")) == files


def test_extract_parquet_with_selection_and_resize(videos, tmp_path):
    cfg = ExtractConfig(inputs=[str(videos / "clip.mp4")], out=str(tmp_path / "pq"), output="parquet",
                        every=3, width=48, segment_seconds=0.5)
    assert run_extract(cfg)["frames"] == 16
    t = pq.read_table(str(tmp_path / "pq" / "clip"))
    assert sorted(t.column("frame_index").to_pylist()) == list(range(0, 48, 3))
    assert set(t.column("width").to_pylist()) == {48} and set(t.column("height").to_pylist()) == {32}
    img = cv2.imdecode(np.frombuffer(t.column("image")[0].as_py(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (32, 48, 3)


def test_frames_dataset_rows_in_order_and_exact(videos):
    ds = frames_dataset([str(videos / "clip.mp4")], segment_seconds=0.3)
    rows = ds.take_all()
    assert [r["frame_index"] for r in rows] == list(range(48))
    seq = list(decode_sequential(str(videos / "clip.mp4")))
    for i in (0, 7, 8, 31, 47):
        assert np.array_equal(rows[i]["image"], seq[i].image)


def _predictions(path, video_id, n, h=64, w=96, team=0, shift=0):
    rows = []
    for i in range(n):
        player = np.zeros((h, w), bool)
        player[10:40, 20 + shift + i % 10 : 35 + shift + i % 10] = True
        board = np.zeros((h, w), bool)
        board[50:58, :] = True
        for k, (cls, m) in enumerate((("player", player), ("led_board", board))):
            r = rle.encode(m)
            rows.append({"video_id": video_id, "frame_index": i, "pts_seconds": i / 25, "instance_id": k,
                         "class": cls, "score": 0.9, "bbox": rle.to_bbox(r), "area": int(m.sum()),
                         "mask_rle_size": r["size"], "mask_rle_counts": r["counts"], "team": team if k == 0 else -1})
    pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), path)
    return path


def test_render_overlay_and_side_by_side(videos, tmp_path):
    clip = str(videos / "clip.mp4")
    preds = _predictions(str(tmp_path / "pred.parquet"), "clip", 48)
    out = str(tmp_path / "render.mp4")
    run_render(RenderConfig(source=clip, out=out, predictions=preds, labels=True, segment_seconds=0.5))
    assert video_stats(out) == {"frames": 48, "fps": 25.0, "width": 96, "height": 64, "codec": "h264"}
    import av

    with av.open(out) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    seq = list(decode_sequential(clip))
    diff = np.abs(frames[30].astype(int) - seq[30].image).sum(-1)
    assert diff[20:30, 23:35].mean() > 60 and diff[54, 2:90].mean() > 60  # player filled, board tinted
    assert diff[20:35, 60:90].mean() < 25  # elsewhere (no mask, outline or label): the frame
    assert not os.path.exists(out + ".parts")

    gt = _predictions(str(tmp_path / "gt.parquet"), "clip", 48, team=1, shift=10)
    out2 = str(tmp_path / "grid.mp4")
    run_render(RenderConfig(source=clip, out=out2, predictions=preds, ground_truth=gt, mode="side-by-side", segment_seconds=0.7))
    assert video_stats(out2)["frames"] == 48 and video_stats(out2)["width"] == 3 * 96


def test_render_a_time_range(videos, tmp_path):
    """--start/--end keep the frames with start <= pts < end (the demo's first seconds of a clip)."""
    out = str(tmp_path / "range.mp4")
    run_render(RenderConfig(source=str(videos / "clip.mp4"), out=out, start=0.4, end=1.2, segment_seconds=0.5))
    assert video_stats(out)["frames"] == 20  # frames 10..29 at 25 fps


def test_render_keeps_the_frames_infer_kept(videos, tmp_path):
    """keep_fps draws the frames `infer --set fps=X` kept (the demo's quick look), at that rate."""
    import av

    clip = str(videos / "clip.mp4")
    preds = _predictions(str(tmp_path / "pred.parquet"), "clip", 48)
    out = str(tmp_path / "half.mp4")
    run_render(RenderConfig(source=clip, out=out, predictions=preds, keep_fps=12.5, segment_seconds=0.5))
    assert video_stats(out)["frames"] == 24 and video_stats(out)["fps"] == 12.5
    with av.open(out) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    seq = list(decode_sequential(clip))
    assert np.abs(frames[15].astype(int) - seq[30].image).sum(-1)[20:35, 60:90].mean() < 25  # frame 30 drawn 15th
    assert np.abs(frames[15].astype(int) - seq[31].image).sum(-1)[20:35, 60:90].mean() > \
        np.abs(frames[15].astype(int) - seq[30].image).sum(-1)[20:35, 60:90].mean()


def test_render_from_extracted_images(videos, tmp_path):
    run_extract(ExtractConfig(inputs=[str(videos / "clip.mp4")], out=str(tmp_path / "fr"), segment_seconds=1.0))
    out = str(tmp_path / "from_images.mp4")
    run_render(RenderConfig(source=str(tmp_path / "fr" / "clip"), out=out, segment_seconds=0.6))
    stats = video_stats(out)
    assert (stats["frames"], stats["fps"], stats["width"], stats["height"]) == (48, 25.0, 96, 64)
    info = json.load(open(tmp_path / "fr" / "clip" / "_video.json"))
    assert info["frame_count"] == 48 and hashlib.sha1(open(out, "rb").read()).hexdigest()
