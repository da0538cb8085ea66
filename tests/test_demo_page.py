"""The demo's pictures: a contact sheet beside the overlay mp4 and an index.html that opens from disk
(relative paths) with every image loading, checked in headless Chromium where it is installed."""
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from playerseg.demo_page import clip_report, write_index
from playerseg.metrics import rle
from _testclip import write_test_clip

W, H, FRAMES = 96, 64, 10


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A tiny demo run: an 'overlay' clip, per-frame stats and predictions (a board across the top,
    one player over it in the even frames, one on the pitch)."""
    out = tmp_path_factory.mktemp("demo_run")
    (out / "render").mkdir()
    write_test_clip(str(out / "render" / "clip_overlay.mp4"), frames=FRAMES, width=W, height=H)
    board = np.zeros((H, W), bool)
    board[4:16, :] = True
    rows = []
    for i in range(FRAMES):
        players = [(10, 30, 20, 60), (60, 2, 70, 20) if i % 2 == 0 else (60, 40, 70, 62)]
        for k, (x0, y0, x1, y1) in enumerate(players):
            m = np.zeros((H, W), bool)
            m[y0:y1, x0:x1] = True
            rows.append(("player", i, k, m, [x0, y0, x1 - x0, y1 - y0]))
        rows.append(("led_board", i, 9, board, [0, 4, W, 12]))
    preds = [{"video_id": "clip", "frame_index": i, "instance_id": k, "class": c, "score": 0.9,
              "bbox": bbox, "mask_rle_size": [H, W], "mask_rle_counts": rle.encode(m)["counts"]}
             for c, i, k, m, bbox in rows]
    (out / "infer" / "predictions" / "clip").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(preds), str(out / "infer" / "predictions" / "clip" / "000000-000010.parquet"))
    (out / "infer" / "frames" / "clip").mkdir(parents=True)
    frames = [{"video_id": "clip", "frame_index": i, "pts_seconds": i / 25, "num_instances": 3} for i in range(FRAMES)]
    pq.write_table(pa.Table.from_pylist(frames), str(out / "infer" / "frames" / "clip" / "000000-000010.parquet"))
    report = clip_report(str(out), "clip", "render/clip_overlay.mp4", str(out / "infer" / "predictions"),
                         str(out / "infer" / "frames"))
    page = write_index(str(out), [report], ["other.mp4: no such file or folder"], {"model": "tiny"})
    return out, report, page


def test_sheet_beside_the_overlay_and_counts(run_folder):
    out, report, page = run_folder
    assert report.sheet == "render/clip_overlay_sheet.png"
    sheet = cv2.imread(str(out / report.sheet))
    assert sheet is not None and sheet.shape[1] == 4 * 320  # 4 tiles a row, 320 px each
    assert report.players == [2] * FRAMES
    assert report.over_boards == [1 if i % 2 == 0 else 0 for i in range(FRAMES)]
    assert [i for _, i, _ in report.thumbs] == [0, 2, 4, 6, 8] and all((out / p).is_file() for p, _, _ in report.thumbs)


def test_page_links_are_relative_and_exist(run_folder):
    out, report, page = run_folder
    text = open(page).read()
    assert str(out) not in text and "<svg" in text and "other.mp4: no such file or folder" in text
    links = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert links and all(not os.path.isabs(p) and (out / p).is_file() for p in links), links


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_page_images_load_in_headless_chromium(run_folder, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    out, report, page = run_folder
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           f"file://{page}"]
    try:
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not answer within 120 s")
    marker = re.search(r'data-images="([^"]*)"', dom)
    images = 1 + len(report.thumbs)  # the sheet and the board thumbnails
    assert marker and marker.group(1) == f"ok {images}", dom[-2000:]
