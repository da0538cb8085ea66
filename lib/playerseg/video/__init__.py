"""Video on Ray: probe a video, split it into exact time segments, decode them in parallel
(extraction and inference), draw predictions and encode H.264 segments joined without re-encoding.

    from playerseg.video import probe, plan_segments, decode_segment, frames_dataset
"""
from playerseg.video.frames import frames_dataset
from playerseg.video.probe import VideoInfo, probe, video_id_for
from playerseg.video.segments import (
    Frame,
    Segment,
    decode_segment,
    decode_sequential,
    plan_segments,
    select_frames,
)

__all__ = [
    "Frame",
    "Segment",
    "VideoInfo",
    "decode_segment",
    "decode_sequential",
    "frames_dataset",
    "plan_segments",
    "probe",
    "select_frames",
    "video_id_for",
]
