"""Sharded decoding equals one sequential decode: frame count, indices, timestamps and pixels."""
import hashlib

import pytest

from playerseg.data.errors import DataError
from playerseg.io import shared_data_dir
from playerseg.video import decode_segment, decode_sequential, plan_segments, probe, select_frames
from playerseg.video.segments import output_size
from _testclip import write_test_clip

VIDEOS = shared_data_dir() / "videos"
realdata = pytest.mark.skipif(not VIDEOS.is_dir(), reason="../shared/data/videos absent")


def _digest(frames):
    return [(f.frame_index, round(f.pts_seconds, 6), hashlib.md5(f.image.tobytes()).hexdigest()) for f in frames]


def _sharded(info, **kw):
    return _digest(f for s in plan_segments(info, **kw) for f in decode_segment(s))


@pytest.fixture(scope="module", params=[False, True], ids=["cfr", "vfr"])
def clip(request, tmp_path_factory):
    return write_test_clip(str(tmp_path_factory.mktemp("clip") / "clip.mp4"), frames=48, gop=8, bframes=2, vfr=request.param)


@pytest.mark.parametrize("segment_frames", [5, 7, 13])
def test_sharded_equals_sequential_synthetic(clip, segment_frames):
    info = probe(clip)
    assert info.exact and info.frame_count == 48 and len(info.keyframes) == 6
    segments = plan_segments(info, segment_frames=segment_frames)
    assert len(segments) > 3 and any(s.start % 8 for s in segments)  # some start mid-GOP
    assert [s.start for s in segments[1:]] == [s.end for s in segments[:-1]]
    seq = _digest(decode_sequential(clip))
    assert [i for i, _, _ in seq] == list(range(48))
    assert _sharded(info, segment_frames=segment_frames) == seq


def test_selection_every_fps_and_range(clip):
    info = probe(clip)
    assert select_frames(info) is None
    assert select_frames(info, every=4) == list(range(0, 48, 4))
    if info.time_base == "1/12800":  # the constant-rate clip: 25 fps -> 5 fps is every 5th frame
        assert select_frames(info, fps=5) == list(range(0, 48, 5))
        assert select_frames(info, start_seconds=0.4, end_seconds=1.0) == list(range(10, 25))
    keep = select_frames(info, every=3, start_seconds=0.5)
    segments = plan_segments(info, segment_frames=6, keep=keep)
    got = [f.frame_index for s in segments for f in decode_segment(s)]
    assert got == keep
    seq = {f.frame_index: f.image.tobytes() for f in decode_sequential(clip)}
    for s in segments[:2]:
        for f in decode_segment(s):
            assert f.image.tobytes() == seq[f.frame_index]


def test_resize_keeps_aspect(clip):
    assert output_size(1920, 1080, None, 720) == (1280, 720)
    assert output_size(1920, 1080, 640, 640) == (640, 360)
    s = plan_segments(probe(clip), segment_frames=10)[1]
    f = next(decode_segment(s, width=48))
    assert f.image.shape == (32, 48, 3)


def test_unreadable_files_raise_data_error_naming_them(tmp_path, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(DataError, match="notes.mp4"):
        probe(str(text))
    data = open(clip, "rb").read()
    cut = tmp_path / "cut.mp4"  # PyAV writes the index (moov) last: a cut file has none
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.mp4"):
        probe(str(cut))


@pytest.mark.realdata
@realdata
def test_sharded_equals_sequential_smallest_real_clip():
    path = str(VIDEOS / "bundesliga_478p.mp4")
    info = probe(path)
    seq = _digest(decode_sequential(path))
    assert len(seq) == info.frame_count == 169
    assert _sharded(info, segment_frames=40) == seq


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("name,frames", [("laliga_720p.mp4", 630), ("seriea_478p_60fps.mp4", 794)])
def test_real_clips_index_and_chosen_frames(name, frames):
    """29.97 fps with B-frames and an edit list (laliga), 60 fps variable timestamps (seriea)."""
    path = str(VIDEOS / name)
    info = probe(path)
    assert info.exact and info.frame_count == frames
    segments = plan_segments(info, segment_frames=60)
    # the first frame of every other segment (mid-GOP seeks), the frame before one, and the last
    keep = sorted({s.start for s in segments[1::2]} | {segments[2].start - 1, frames - 1})
    sharded = _digest(f for s in plan_segments(info, segment_frames=60, keep=keep) for f in decode_segment(s))
    seq = _digest(decode_sequential(path, keep=set(keep)))
    assert len(sharded) == len(keep)
    assert sharded == seq
