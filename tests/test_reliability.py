"""Nothing lost, nothing mixed, nothing run (issue 13): ids and safe names of the frame source, the
ledger's content-checked resume and lock, truncated videos, bad frames, header bombs, early checks.

Most cases need no Ray (planning frame folders, the ledger, the decoders); the few that run a job
share one local Ray.
"""
import json
import os
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from playerseg.cli import main
from playerseg.config import ConfigError
from playerseg.data.errors import DataError
from playerseg.ledger import Ledger
from playerseg.video.frames import input_ids, plan_units, read_unit, safe_name, under
from _testclip import write_test_clip


def _frames(folder, n=3, size=(32, 24)):
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full((size[1], size[0], 3), 40 * i, np.uint8)
        cv2.imwrite(str(folder / f"frame_{i:04d}.jpg"), img)
    return folder


def _faststart_truncated(tmp_path, frames=100):
    """A clip whose index (moov, at the front) names `frames` frames, cut in half: the container
    opens and demuxes up to the cut, as a download that stopped does."""
    clip = write_test_clip(str(tmp_path / "full.mp4"), frames=frames, gop=8, bframes=2)
    out = tmp_path / "faststart.mp4"
    with av.open(clip) as src, av.open(str(out), "w", format="mp4", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = out.read_bytes()
    cut = tmp_path / "cut" / "match.mp4"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    return cut


# ---- 1. ids: same stems in two folders, collisions, `...mp4` --------------------------------------
def test_same_stems_in_two_folders_get_distinct_ids(tmp_path):
    _frames(tmp_path / "dup" / "a" / "clip")
    _frames(tmp_path / "dup" / "b" / "clip")
    units, failures = plan_units([str(tmp_path / "dup" / "a"), str(tmp_path / "dup" / "b")], segment_frames=10)
    assert not failures and sorted(u.group for u in units) == ["a/clip", "b/clip"]
    frames = [f for u in units for f in read_unit(u)]
    assert sorted({f.video_id for f in frames}) == ["a/clip", "b/clip"] and len(frames) == 6
    # alone, an input keeps its short id
    assert {u.group for u in plan_units([str(tmp_path / "dup" / "a" / "clip")])[0]} == {"clip"}


def test_inputs_that_cannot_be_told_apart_are_an_error():
    assert input_ids({"x/a.mp4": "/v/x/a", "y/a.mp4": "/v/y/a", "b.mp4": "/v/b"}) == \
        {"x/a.mp4": "x/a", "y/a.mp4": "y/a", "b.mp4": "b"}
    with pytest.raises(ConfigError, match="x a.mp4 and .*x_a.mp4 would both have the id 'v/x_a'"):
        input_ids({"/v/x a.mp4": "/v/x a", "/v/x_a.mp4": "/v/x_a"})


def test_names_are_safe_and_stay_under_the_output():
    assert safe_name("..") == "--" and safe_name("_done") == "-done" and safe_name("a b/c") == "a_b_c"
    assert input_ids({"/v/...mp4": "/v/.."}) == {"/v/...mp4": "--"}
    assert under("/out", "--/000000.jpg") == "/out/--/000000.jpg"
    for bad in ("../x", "/etc/passwd", "a/../../x", "."):
        with pytest.raises(ValueError):
            under("/out", bad)


def test_dot_named_video_outputs_stay_apart(tmp_path):
    """`...mp4` into infer: its parts go to `predictions/--/`, never onto another output."""
    from playerseg.classes import TaskClasses
    from playerseg.infer.writer import UnitWriter
    from playerseg.video.frames import Unit, video_ids

    video = str(tmp_path / "...mp4")
    unit = Unit("video", video_ids([video])[video], "000000-000001", 1, {"segment": {"uri": video}})
    row = {"unit": unit.key, "video_id": unit.group, "frame_index": 0, "pts_seconds": 0.0, "width": 4,
           "height": 4, "error": "", "instances": [], "num_instances": 0,
           "fractions": json.dumps({"background": 1.0, "player": 0.0, "led_board": 0.0})}
    with Ledger(str(tmp_path / "out"), {}) as ledger:
        UnitWriter(ledger, {unit.key: unit}, TaskClasses().names).add(row)
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["_done/--/000000-000001.json", "_lock", "_run.json", "frames/--/000000-000001.parquet",
                       "predictions/--/000000-000001.parquet"]


# ---- 3. resume checks content: weights swapped in place, another file of the same id ---------------
def test_weights_swapped_in_place_are_refused(tmp_path):
    from test_infer import make_model

    from playerseg.infer.pipeline import InferConfig, run_signature

    model = make_model(tmp_path / "model")
    cfg = InferConfig(model=model, inputs=["x"], output=str(tmp_path / "out"))
    with Ledger(cfg.output, run_signature(cfg)):
        pass
    with Ledger(cfg.output, run_signature(cfg)):  # same model, same options: resumes
        pass
    weights = tmp_path / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8) if data[-8:] != bytes(8) else b"\x01" * 8  # other weights, same path and size
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"model_sha256 .* --overwrite to redo them"):
        Ledger(cfg.output, run_signature(cfg)).__enter__()
    with Ledger(cfg.output, run_signature(cfg), overwrite=True):
        pass


def test_an_input_replaced_under_its_outputs_is_refused(tmp_path):
    _frames(tmp_path / "a" / "clip")
    _frames(tmp_path / "b" / "clip", n=4)
    out = str(tmp_path / "out")
    with Ledger(out, {"v": 1}) as ledger:
        units, _ = plan_units([str(tmp_path / "a" / "clip")])
        assert ledger.pending(units) == units
        for u in units:
            ledger.mark(u, frames=u.num_frames)
        assert ledger.pending(units) == []  # finished: skipped
        other, _ = plan_units([str(tmp_path / "b" / "clip")])  # also "clip": a collision across runs
        with pytest.raises(ConfigError, match=r"outputs of 'clip' were made from another file, .*a/clip"):
            ledger.pending(other)
        (tmp_path / "a" / "clip" / "frame_0003.jpg").write_bytes((tmp_path / "a" / "clip" / "frame_0000.jpg").read_bytes())
        changed, _ = plan_units([str(tmp_path / "a" / "clip")])
        with pytest.raises(ConfigError, match="another version of .*files"):
            ledger.pending(changed)


def test_probe_cache_follows_the_file_content(tmp_path):
    from playerseg.video.probe import load_or_probe

    path = tmp_path / "clip.mp4"
    write_test_clip(str(path), frames=20)
    cache = str(tmp_path / "_probe.json")
    assert load_or_probe(str(path), "clip", cache).frame_count == 20
    write_test_clip(str(path), frames=30)  # replaced in place by a longer file
    assert load_or_probe(str(path), "clip", cache).frame_count == 30


# ---- 4. truncated video: frames expected vs got, nothing partial ----------------------------------
def test_truncated_video_is_reported_with_frames_expected_and_got(tmp_path):
    from playerseg.video.probe import probe

    cut = _faststart_truncated(tmp_path)
    with pytest.raises(DataError, match=r"truncated: the container declares 100 frames, \d+ are readable"):
        probe(str(cut))


# ---- 5. a corrupt frame in a folder: that frame reported, the rest read ---------------------------
def test_corrupt_frame_is_reported_and_the_others_read(tmp_path):
    folder = _frames(tmp_path / "clip", n=4)
    (folder / "frame_0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (unit,), _ = plan_units([str(folder)])
    frames = list(read_unit(unit))
    assert [f.frame_index for f in frames] == [0, 1, 2, 3]
    assert [f.frame_index for f in frames if f.error] == [2] and "frame_0002.jpg" in frames[2].error
    assert all(f.image is not None for f in frames if not f.error)


# ---- 8. header bomb: the size is read from the header, nothing decoded ---------------------------
def test_header_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    from playerseg.data.reader import read_image

    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) height(2) width(2)
    data[sof + 5: sof + 9] = (12000).to_bytes(2, "big") + (12000).to_bytes(2, "big")
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bomb.jpg: image of 12000x12000 pixels is over the limit"):
        read_image(str(bomb))
    small = tmp_path / "small.jpg"
    small.write_bytes(buf.tobytes())
    assert read_image(str(small)).shape == (16, 16, 3)
    monkeypatch.setenv("PLAYERSEG_MAX_IMAGE_PIXELS", "100")  # the limit is configurable
    with pytest.raises(DataError, match="small.jpg: image of 16x16 pixels is over the limit of 100"):
        read_image(str(small))


# ---- 10. concurrent runs: the second one is refused, naming the holder -----------------------------
def test_a_second_run_into_a_held_output_is_refused(tmp_path, capsys):
    clip = write_test_clip(str(tmp_path / "clip.mp4"), frames=8)
    out = str(tmp_path / "out")
    with Ledger(out, {"other": "run"}):
        with pytest.raises(ConfigError, match=f"another run is writing here \\(pid {os.getpid()}"):
            Ledger(out, {"other": "run"}).__enter__()
        assert main(["extract", clip, "--out", out]) == 2  # before any Ray work
        err = capsys.readouterr().err
        assert "another run is writing here" in err and len(err.strip().splitlines()) == 1
    with Ledger(out, {"other": "run"}):  # released with the first run
        pass


# ---- input checked early, in one line ---------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["extract", "{clip}", "--out", "{out}", "--every", "0"], "--every 0 is out of range (at least 1)"),
    (["extract", "{clip}", "--out", "{out}", "--every", "-2"], "--every -2 is out of range (at least 1)"),
    (["infer", "{clip}", "--out", "{out}", "--set", "resources.batch_size=-1"], "resources.batch_size: -1 is out of range"),
    (["infer", "{clip}", "--out", "{out}", "--set", "every=0"], "every: 0 is out of range"),
    (["render", "{clip}", "--out", "{out}.mp4", "--segment-seconds", "0"], "--segment-seconds 0.0 is out of range"),
])
def test_config_ranges_are_checked_at_load(tmp_path, capsys, argv, says):
    clip = str(tmp_path / "clip.mp4")
    open(clip, "wb").close()
    assert main([a.format(clip=clip, out=tmp_path / "out") for a in argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_corrupt_model_files_are_named(tmp_path, capsys):
    from test_infer import make_model

    model = tmp_path / "model"
    make_model(model)
    clip = write_test_clip(str(tmp_path / "clip.mp4"), frames=4)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["infer", clip, "--model", str(model), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: unreadable weights" in err and len(err.strip().splitlines()) == 1
    make_model(model)
    (model / "model.json").write_text("{ not json")
    assert main(["infer", clip, "--model", str(model), "--out", str(tmp_path / "out")]) == 2
    assert f"{model / 'model.json'}: not a model description" in capsys.readouterr().err


# ---- jobs on Ray: `...mp4`, truncated video in extract, embedded Ray on loopback -----------------
def test_extract_keeps_dot_names_inside_and_writes_nothing_of_a_truncated_video(ray_local, tmp_path):
    from playerseg.video.extract import ExtractConfig, run_extract

    videos = tmp_path / "videos"
    videos.mkdir()
    write_test_clip(str(videos / "...mp4"), frames=10)
    cut = _faststart_truncated(tmp_path)
    os.replace(cut, videos / "match.mp4")
    out = tmp_path / "archive" / "out"
    summary = run_extract(ExtractConfig(inputs=[str(videos)], out=str(out), every=5))
    assert summary["frames"] == 2 and sorted(os.listdir(out / "--")) == ["000000.jpg", "000005.jpg", "_video.json"]
    assert os.listdir(tmp_path / "archive") == ["out"]  # nothing written beside the output
    [failure] = summary["failures"]
    assert "match.mp4" in failure["what"] and "declares 100 frames" in failure["error"]
    assert not (out / "match").exists()  # no partial output of the truncated video
    with pytest.raises(ConfigError, match=r"every 5 -> 2.*--overwrite"):  # other options: refused, not mixed
        run_extract(ExtractConfig(inputs=[str(videos)], out=str(out), every=2))


def test_map_items_names_a_failing_item_and_completes_the_others(ray_local):
    from playerseg.ray_cluster import map_items

    def halve(item, offset):
        if item["n"] == 3:
            raise DataError(item["file"], "cannot decode")
        if item["n"] == 5:
            raise KeyError("not a user error")
        return {"half": item["n"] / 2 + offset}

    items = [{"n": n, "file": f"f{n}.mp4"} for n in range(6)]
    done, failures = map_items(items, halve, name=lambda i: i["file"], num_cpus=0.5, fn_kwargs={"offset": 10},
                               errors=(DataError, KeyError))
    assert done == [(i, {"half": i["n"] / 2 + 10}) for i in items if i["n"] not in (3, 5)]  # in item order
    assert failures.items == [("f3.mp4", "cannot decode"), ("f5.mp4", "KeyError: 'not a user error'")]
    with pytest.raises(Exception, match="not a user error"):  # an error not among `errors` stops the batch
        map_items(items, halve, num_cpus=0.5, fn_kwargs={"offset": 0}, errors=(DataError,))


def test_embedded_ray_listens_on_loopback_only(tmp_path):
    """`playerseg` with its own local Ray: Ray's node address, and so its metrics exporters, agents
    and services, are 127.0.0.1 (a fresh process: the setting is read when ray is imported)."""
    code = ("import sys; from playerseg.cli import local_ray_on_loopback; local_ray_on_loopback([]); "
            "from playerseg.ray_cluster import init_ray; init_ray(); import ray; "
            "print('NODE', ray.util.get_node_ip_address()); ray.shutdown()")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "NODE 127.0.0.1" in run.stdout, run.stderr[-2000:]


def test_a_second_render_into_the_same_output_is_refused(ray_local, tmp_path):
    from playerseg.ledger import acquire_lock, release_lock
    from playerseg.video.encode import video_stats
    from playerseg.video.render import RenderConfig, run_render

    clip = write_test_clip(str(tmp_path / "clip.mp4"), frames=10)
    out = str(tmp_path / "overlay.mp4")
    lock = acquire_lock(out + ".parts")
    try:
        with pytest.raises(ConfigError, match="another run is writing here"):
            run_render(RenderConfig(source=clip, out=out, segment_seconds=0.2))
    finally:
        release_lock(lock)
    run_render(RenderConfig(source=clip, out=out, segment_seconds=0.2))
    assert video_stats(out)["frames"] == 10 and not os.path.exists(out + ".parts")
