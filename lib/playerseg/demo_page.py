"""The pictures a demo run ends with: per clip a contact sheet PNG beside its overlay mp4, and one
`index.html` for the run that opens from disk (relative paths, no server, no script needed).

    clips = [clip_report(out, "bundesliga_478p", "render/bundesliga_478p_overlay.mp4", predictions, frames)]
    write_index(out, clips, failures=[...], facts={"model": ...})

The pictures are frames of the overlay video `playerseg render` drew (`viz.draw_instances`),
so nothing is drawn twice; sheets are laid out with `viz.label` / `viz.grid`. Per clip the page
shows the sheet, players per frame over time (inline SVG, with the players over LED boards, the
frames where segmentation is hardest), thumbnails of the frames with the most players over boards,
and the run's failures.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field

import numpy as np

SHEET_TILES = 12  # frames on a contact sheet (3 rows of 4)
SHEET_COLUMNS = 4
TILE_WIDTH = 320
BOARD_THUMBS = 6  # thumbnails of the frames with the most players over boards


@dataclass
class ClipReport:
    video_id: str
    overlay: str  # paths relative to the run folder
    sheet: str
    frames: int
    seconds: list[float] = field(default_factory=list)  # per frame (kept order)
    players: list[int] = field(default_factory=list)
    over_boards: list[int] = field(default_factory=list)
    thumbs: list[tuple[str, int, int]] = field(default_factory=list)  # (path, frame_index, players over boards)


def frame_counts(predictions: str, frames: str, video_id: str) -> tuple[list[int], list[float], list[int], list[int]]:
    """(frame indices, seconds, players, players over LED boards) of each inferred frame of a video.

    A player is over a board when `players.flags.led_overlap` of its box on the frame's board pixels
    reaches `FlagsConfig.led_overlap_min` (the `led` flag of `playerseg cluster`)."""
    import pyarrow.dataset as pads

    from playerseg.metrics import rle
    from playerseg.players.flags import FlagsConfig, led_overlap
    from playerseg.video.schema import prediction_rle, prediction_xyxy

    where = pads.field("video_id") == video_id
    rows = pads.dataset(frames, format="parquet").to_table(columns=["frame_index", "pts_seconds"], filter=where)
    order = sorted(zip(rows.column("frame_index").to_pylist(), rows.column("pts_seconds").to_pylist()))
    index = [int(i) for i, _ in order]
    seconds = [float(t or 0.0) for _, t in order]
    players = dict.fromkeys(index, 0)
    over = dict.fromkeys(index, 0)
    if os.path.isdir(predictions):
        table = pads.dataset(predictions, format="parquet").to_table(
            columns=["frame_index", "class", "bbox", "mask_rle_size", "mask_rle_counts"], filter=where)
        by_frame: dict[int, list[dict]] = {}
        for r in table.to_pylist():
            by_frame.setdefault(int(r["frame_index"]), []).append(r)
        threshold = FlagsConfig().led_overlap_min
        for i, inst in by_frame.items():
            people = [r for r in inst if r["class"] == "player"]
            players[i] = len(people)
            boards = [rle.decode(prediction_rle(r)) for r in inst if r["class"] == "led_board"]
            if boards and people:
                led = np.logical_or.reduce(boards)
                over[i] = sum(led_overlap(prediction_xyxy(r), led) >= threshold for r in people)
    return index, seconds, [players[i] for i in index], [over[i] for i in index]


def read_frames(video: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """RGB frames of a video at the `wanted` positions (0 = its first frame), in one decode pass
    that stops after the last of them (`video.segments.decode_sequential`)."""
    from playerseg.video.segments import decode_sequential

    out: dict[int, np.ndarray] = {}
    for f in decode_sequential(video, keep=wanted) if wanted else ():
        out[f.frame_index] = f.image
        if f.frame_index >= max(wanted):
            break
    return out


def evenly(n: int, k: int) -> list[int]:
    """`k` positions spread over 0..n-1 (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def contact_sheet(tiles: list[np.ndarray], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """Labelled tiles in rows of `columns` (the last row padded), stacked by `viz.grid`."""
    from playerseg.viz import grid

    return grid([np.concatenate(tiles[a:a + columns], axis=1) for a in range(0, len(tiles), columns)])


def clip_report(out: str, video_id: str, overlay: str, predictions: str, frames: str,
                tile_width: int = TILE_WIDTH) -> ClipReport:
    """Sheet PNG `<overlay stem>_sheet.png` beside the overlay mp4 and board thumbnails under
    `thumbs/`, from the overlay video's own frames; paths in the report are relative to `out`."""
    import cv2

    from playerseg.viz import label, resize_width, save_png

    index, seconds, players, over = frame_counts(predictions, frames, video_id)
    position = {fi: j for j, fi in enumerate(index)}
    # the overlay has one frame per source frame from the first inferred one on
    first = index[0] if index else 0
    sheet_at = [index[j] for j in evenly(len(index), SHEET_TILES)]
    hardest = sorted((i for i in index if over[position[i]]), key=lambda i: (-over[position[i]], i))[:BOARD_THUMBS]
    pictures = read_frames(os.path.join(out, overlay), {i - first for i in sheet_at + hardest})
    tiles = []
    for i in sheet_at:
        if i - first in pictures:
            j = position[i]
            text = f"frame {i}  {players[j]} players, {over[j]} over boards"
            tiles.append(label(resize_width(pictures[i - first], tile_width), text))
    sheet = os.path.splitext(overlay)[0] + "_sheet.png"
    if tiles:
        while len(tiles) % SHEET_COLUMNS and len(tiles) > SHEET_COLUMNS:
            tiles.append(np.zeros_like(tiles[0]))
        save_png(os.path.join(out, sheet), contact_sheet(tiles))
    thumbs = []
    for i in sorted(hardest):
        if i - first in pictures:
            path = f"thumbs/{video_id}_{i:06d}.jpg"
            os.makedirs(os.path.join(out, "thumbs"), exist_ok=True)
            image = cv2.cvtColor(resize_width(pictures[i - first], tile_width), cv2.COLOR_RGB2BGR)
            cv2.imwrite(os.path.join(out, path), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            thumbs.append((path, i, over[position[i]]))
    return ClipReport(video_id, overlay, sheet if tiles else "", len(index), seconds, players, over, thumbs)


# ---- the page -------------------------------------------------------------------------------
def chart_svg(seconds: list[float], series: dict[str, tuple[list[int], str]], width: int = 640,
              height: int = 160) -> str:
    """An inline SVG line chart: one polyline per series (values per frame) over `seconds`."""
    pad_l, pad_b, pad_t, pad_r = 36, 22, 8, 24
    if not seconds:
        return "<p>no frames</p>"
    t0, t1 = min(seconds), max(seconds)
    top = max([max(v) for v, _ in series.values() if v] + [1])
    sx = (width - pad_l - pad_r) / max(t1 - t0, 1e-9)
    sy = (height - pad_t - pad_b) / top

    def xy(t, v):
        return f"{pad_l + (t - t0) * sx:.1f},{height - pad_b - v * sy:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="players per frame">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
             'fill="#fafafa" stroke="#ccc"/>']
    for v in sorted({0, top // 2, top}):
        y = height - pad_b - v * sy
        parts.append(f'<text x="{pad_l - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{v}</text>')
    for t in (t0, (t0 + t1) / 2, t1):
        parts.append(f'<text x="{pad_l + (t - t0) * sx:.1f}" y="{height - 6}" font-size="10" '
                     f'text-anchor="middle">{t:.1f} s</text>')
    for name, (values, colour) in series.items():
        points = " ".join(xy(t, v) for t, v in zip(seconds, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
                     f'<title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


# once loaded, the page says on <body data-images="..."> whether every picture decoded (`ok N` or
# `broken: <names>`): what tests/test_demo_page.py reads back from headless Chromium
CHECK_IMAGES = ("<script>addEventListener('load',function(){var i=Array.from(document.images),"
                "b=i.filter(function(x){return !(x.complete&&x.naturalWidth>0)}).map(function(x){return x.src});"
                "document.body.dataset.images=b.length?'broken: '+b.join(' '):'ok '+i.length})</script>")


def write_index(out: str, clips: list[ClipReport], failures: list[str], facts: dict[str, str]) -> str:
    """`<out>/index.html`; every link relative to `out`. Returns its path."""
    e = html.escape
    body = ["<h1>playerseg demo</h1>",
            "<table class=facts>" + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
            + "</table>"]
    body.append("<h2>Failures</h2>")
    body.append("<ul>" + "".join(f"<li>{e(f)}</li>" for f in failures) + "</ul>" if failures else "<p>none</p>")
    for c in clips:
        total = sum(c.players)
        with_over = sum(1 for v in c.over_boards if v)
        body.append(f'<section><h2 id="{e(c.video_id)}">{e(c.video_id)}</h2>')
        body.append(f"<p>{c.frames} frames, {total / max(1, c.frames):.1f} players per frame; "
                    f"{with_over} frames with players over LED boards. "
                    f'Overlay video: <a href="{e(c.overlay)}">{e(c.overlay)}</a>'
                    + (f', contact sheet: <a href="{e(c.sheet)}">{e(c.sheet)}</a>' if c.sheet else "") + "</p>")
        if c.sheet:
            body.append(f'<a href="{e(c.sheet)}"><img class=sheet src="{e(c.sheet)}" alt="contact sheet of {e(c.video_id)}"></a>')
        body.append("<h3>Players per frame</h3>")
        body.append(chart_svg(c.seconds, {"players": (c.players, "#e63946"),
                                          "players over LED boards": (c.over_boards, "#9b5de5")}))
        body.append('<p class=legend><span style="color:#e63946">&#9632; players</span> '
                    '<span style="color:#9b5de5">&#9632; players over LED boards</span></p>')
        body.append("<h3>Frames with the most players over LED boards</h3>")
        if c.thumbs:
            body.append("<div class=thumbs>" + "".join(
                f'<figure><a href="{e(p)}"><img src="{e(p)}" alt="frame {i}"></a>'
                f"<figcaption>frame {i}: {n} over boards</figcaption></figure>" for p, i, n in c.thumbs) + "</div>")
        else:
            body.append("<p>none</p>")
        body.append("</section>")
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>playerseg demo</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1320px}img.sheet{max-width:100%}"
            ".thumbs{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figure img{width:320px}"
            "figcaption{font-size:12px}table.facts th{text-align:left;padding-right:1em}"
            "</style></head><body>" + "\n".join(body) + CHECK_IMAGES + "</body></html>\n")
    path = os.path.join(out, "index.html")
    from playerseg.io import write_bytes_atomic

    write_bytes_atomic(path, page.encode())
    return path
