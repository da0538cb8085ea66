"""Synthetic broadcast frames with exact labels: for unit tests and scale benchmarks ONLY.

Never a stand-in for real results: no accuracy measured on these scenes says anything about real
football footage. They exist so that tests have exact ground truth at any size and benchmarks can
generate as many frames as they need.

A scene: audience above an LED board band whose bright content (text-like blocks in changing
colours) scrolls; a striped green pitch with white lines; people as articulated shapes (head,
torso, shorts, legs, arms) in two kits plus a referee, overlapping each other and the board, and
a ball; the camera pans across a wider world. People keep their identity from frame to frame
(`render_objects` gives each its track id, 1 + its index in the scene; `generate` writes it as
`track_id` in the COCO annotations): they run at their own speeds, cross and pass each other. Source classes use the Acme palette names and
colours (`PALETTE`), so `generate` writes a folder `AcmeReader` and `CocoReader` read unchanged.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from playerseg.classes import IGNORE_INDEX, TaskClasses
from playerseg.data.reader import ClassMapping, mask_box
from playerseg.data.sample import PIXEL, Instance, Sample
from playerseg.io import atomic_path, write_bytes_atomic, write_json_atomic
from playerseg.metrics import rle as rle_utils

PALETTE = [  # (name, rgb): a subset of the Acme palette, same colours
    ("ground", (137, 126, 126)),
    ("audience", (111, 48, 253)),
    ("advertisement", (27, 71, 151)),
    ("team_a", (254, 233, 3)),
    ("team_b", (255, 160, 1)),
    ("referee", (238, 171, 171)),
    ("ball", (201, 19, 223)),
]
SOURCE = {name: i for i, (name, _) in enumerate(PALETTE)}
OBJECTS = ("team_a", "team_b", "referee", "advertisement", "ball")  # what gets COCO annotations
KITS = {  # shirt, shorts, socks (RGB)
    "team_a": ((200, 30, 45), (240, 240, 240), (200, 30, 45)),
    "team_b": ((35, 70, 200), (20, 25, 60), (240, 240, 240)),
    "referee": ((25, 25, 25), (25, 25, 25), (230, 220, 40)),
}
SKINS = ((233, 190, 160), (200, 150, 110), (140, 95, 65), (95, 65, 45))
BOARD = (0.22, 0.30)  # LED band, fraction of frame height
WORLD = 2.5  # world width / frame width: room for the camera to pan


@functools.lru_cache(maxsize=2)
def _world(seed: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The static world (audience, pitch, lines) as an RGB image and a source-class map."""
    rng = np.random.default_rng([seed, 1])
    ww = int(w * WORLD)
    top, bottom = (int(f * h) for f in BOARD)
    img = np.zeros((h, ww, 3), dtype=np.uint8)
    src = np.full((h, ww), SOURCE["ground"], dtype=np.uint8)
    cell = max(2, h // 90)
    crowd = rng.integers(30, 200, size=(top // cell + 1, ww // cell + 1, 3), dtype=np.uint8)
    img[:top] = np.repeat(np.repeat(crowd, cell, 0), cell, 1)[:top, :ww]
    src[:top] = SOURCE["audience"]
    stripe = max(8, w // 12)
    shade = np.where((np.arange(ww) // stripe) % 2 == 0, 0, 1)
    greens = np.array([[52, 128, 50], [64, 148, 60]], dtype=np.uint8)
    img[top:] = greens[shade][None]
    lw = max(1, h // 180)
    white = (235, 235, 235)
    line_y = bottom + max(2, h // 30)
    cv2.line(img, (0, line_y), (ww - 1, line_y), white, lw)
    cv2.line(img, (ww // 2, line_y), (ww // 2 + w // 8, h - 1), white, lw)
    cv2.ellipse(img, (ww // 2 + w // 16, int(0.72 * h)), (w // 4, h // 8), 0, 0, 360, white, lw)
    cv2.line(img, (ww // 10, line_y), (0, int(0.8 * h)), white, lw)
    return img, src


def _board(seed: int, index: int, cam_x: int, w: int, h: int) -> np.ndarray:
    """RGB pixels of the LED band: scrolling text-like blocks, colours changing over time."""
    top, bottom = (int(f * h) for f in BOARD)
    bh = bottom - top
    rng = np.random.default_rng([seed, 2])
    glyphs = rng.random((4096, 5)) < 0.55  # 5 rows of "letter" bits per column cell
    colours = rng.integers(0, 256, size=(16, 3)).astype(np.uint8) | np.array([64, 64, 64], np.uint8)
    grounds = (rng.integers(0, 60, size=(16, 3))).astype(np.uint8)
    cell = max(1, bh // 7)
    u = np.arange(w) + cam_x + index * max(1, w // 160)  # the content scrolls to the left
    seg = u // cell
    ad = (seg // 24 + index // 25) % 16  # one advert per 24 cells; the adverts change every 25 frames
    rows = (np.arange(bh) * 7) // bh - 1  # -1 and 5 are margins
    inside = (rows >= 0) & (rows < 5)
    bits = glyphs[seg[None, :] % 4096, np.clip(rows, 0, 4)[:, None]] & inside[:, None] & ((seg % 6) != 5)[None, :]
    band = np.where(bits[..., None], colours[ad][None], grounds[ad][None])
    return band.astype(np.uint8)


def _people(seed: int, w: int, h: int, count: int) -> list[dict]:
    rng = np.random.default_rng([seed, 3])
    ww = int(w * WORLD)
    roles = ["referee"] + [("team_a", "team_b")[i % 2] for i in range(count - 1)]
    people = []
    for i, role in enumerate(roles):
        near_board = i % 4 == 1  # a quarter stand at the touchline, their bodies over the board
        foot = rng.uniform(0.36, 0.44) if near_board else rng.uniform(0.45, 1.02)
        x, vx = rng.uniform(0, ww), rng.uniform(-2.5, 2.5) * w / 640
        if i % 3 == 2:  # every third one runs in a duel with the one before: they overlap
            x, vx = people[-1]["x"] + rng.uniform(-0.05, 0.05) * w, people[-1]["vx"]
            foot = people[-1]["foot"] / h + rng.uniform(0.02, 0.08)
        people.append({"role": role, "x": x, "vx": vx, "foot": foot * h, "phase": rng.uniform(0, 2 * math.pi),
                       "skin": SKINS[rng.integers(len(SKINS))], "track": i + 1})
    return people


def _draw_person(p: dict, x: float, index: int, h: int):
    """(x0, y0, colour crop, mask crop) of one articulated person with feet at (x, p['foot'])."""
    H = h * (0.16 + 0.22 * p["foot"] / h)  # nearer (lower) people are taller
    pad = int(0.1 * H) + 2
    cw, ch = int(0.9 * H) + 2 * pad, int(H) + 2 * pad
    x0, y0 = int(x) - cw // 2, int(p["foot"] - H) - pad
    img = np.zeros((ch, cw, 3), np.uint8)
    mask = np.zeros((ch, cw), np.uint8)
    cx, fy = cw / 2, ch - pad
    shirt, shorts, socks = KITS[p["role"]]
    swing = math.sin(p["phase"] + 0.45 * index)

    def pt(dx, dy):
        return int(round(cx + dx * H)), int(round(fy + dy * H))

    def limb(points, colour, width):
        t = max(1, int(width * H))
        for a, b in zip(points, points[1:]):
            for canvas, c in ((img, colour), (mask, 1)):
                cv2.line(canvas, pt(*a), pt(*b), c, t)

    def blob(centre, axes, colour):
        ax = (max(1, int(axes[0] * H)), max(1, int(axes[1] * H)))
        for canvas, c in ((img, colour), (mask, 1)):
            cv2.ellipse(canvas, pt(*centre), ax, 0, 0, 360, c, -1)

    for side in (-1, 1):  # legs: hip, knee, foot
        s = swing * side
        limb([(0.05 * side, -0.47), (0.05 * side + 0.12 * s, -0.25), (0.04 * side + 0.2 * s, -0.02)], socks, 0.06)
    blob((0, -0.47), (0.11, 0.07), shorts)
    blob((0, -0.66), (0.12, 0.17), shirt)
    for side in (-1, 1):  # arms: shoulder, elbow, hand
        s = -swing * side
        limb([(0.11 * side, -0.78), (0.15 * side + 0.08 * s, -0.62), (0.16 * side + 0.14 * s, -0.5)], p["skin"], 0.045)
    blob((0, -0.91), (0.065, 0.08), p["skin"])
    return x0, y0, img, mask.astype(bool)


def render_source(seed: int, index: int, size=(640, 360), people: int = 22):
    """(RGB image, source-class map over PALETTE, per-object visible masks [(name, HxW bool)])."""
    image, src, objects = render_objects(seed, index, size, people)
    return image, src, [(name, mask) for name, _, mask in objects]


def render_objects(seed: int, index: int, size=(640, 360), people: int = 22):
    """`render_source` with each object's ground-truth track id: (image, source map,
    [(name, track_id, visible mask)]), track_id 1, 2, ... per person of the scene, 0 for the
    board and the ball."""
    w, h = int(size[0]), int(size[1])
    world_img, world_src = _world(seed, w, h)
    ww = world_img.shape[1]
    cam_x = int(round((ww - w) * 0.5 * (1 - math.cos(2 * math.pi * index / 200))))
    img = world_img[:, cam_x:cam_x + w].copy()
    src = world_src[:, cam_x:cam_x + w].copy()
    top, bottom = (int(f * h) for f in BOARD)
    img[top:bottom] = _board(seed, index, cam_x, w, h)
    src[top:bottom] = SOURCE["advertisement"]
    owner = np.full((h, w), -1, dtype=np.int16)  # which object (index into `objects`) owns a pixel
    objects = ["advertisement"]  # source class of each object, by owner id
    tracks = [0]  # its track id
    owner[top:bottom] = 0
    crowd = sorted(_people(seed, w, h, people), key=lambda p: p["foot"])  # far first, near on top
    lead, lead_x = crowd[-1], -h  # the nearest person on screen
    for p in crowd:
        x = (p["x"] + p["vx"] * index) % ww - cam_x
        if p["role"] == "referee":  # the referee follows play: always in the picture
            x = w * (0.55 + 0.25 * math.sin(p["phase"] + 0.05 * index))
        x0, y0, pimg, pmask = _draw_person(p, x, index, h)
        ys, xs = slice(max(0, y0), min(h, y0 + pmask.shape[0])), slice(max(0, x0), min(w, x0 + pmask.shape[1]))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        m = pmask[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        img[ys, xs][m] = pimg[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0][m]
        src[ys, xs][m] = SOURCE[p["role"]]
        owner[ys, xs][m] = len(objects)
        lead, lead_x = p, x
        objects.append(p["role"])
        tracks.append(p["track"])
    bx, by = int(lead_x + 0.12 * h), int(min(h - 3, lead["foot"] - 2))  # at the feet of the nearest one
    ball = np.zeros((h, w), np.uint8)
    cv2.circle(ball, (bx, by), max(2, h // 110), 1, -1)
    ball = ball.astype(bool)
    img[ball], src[ball], owner[ball] = (245, 245, 245), SOURCE["ball"], len(objects)
    objects.append("ball")
    tracks.append(0)
    img = cv2.GaussianBlur(img, (3, 3), 0)  # soften the drawn edges a little, like a camera
    masks = [(name, t, owner == i) for i, (name, t) in enumerate(zip(objects, tracks))]
    return img, src, [(name, t, m) for name, t, m in masks if m.any()]


def render_frame(seed: int, index: int, size=(640, 360), classes: TaskClasses = TaskClasses(),
                 people: int = 22, mapping: str = "", min_instance_pixels: int = 16) -> Sample:
    """Frame `index` of the scene `seed` in memory, labelled like AcmeReader labels the written set.

    Unlike AcmeReader (connected components per class), each person is its own instance here,
    masked by what is visible of it; labels are team_a / team_b / referee / advertisement / ball.
    """
    image, src, objects = render_source(seed, index, size, people)
    m = ClassMapping.load(mapping, classes, "acme")
    lut = np.zeros(256, np.uint8)
    for name, i in SOURCE.items():
        t = m.target(name)
        lut[i] = 0 if t is None else t
    instances = []
    for name, mask in objects:
        t = m.target(name)
        if t not in (None, 0, IGNORE_INDEX) and mask.sum() >= min_instance_pixels:
            instances.append(Instance(class_id=t, box=mask_box(mask), mask=mask, label=name))
    return Sample(id=f"frame_{index:05d}", image=image, semantic=lut[src], instances=instances,
                  path="", group=f"synthetic-{seed}", frame_index=index, meta={"format": "synthetic"},
                  labels={name: PIXEL for name in classes.names})


def generate(out_dir: str, num_frames: int, size=(640, 360), fps: float = 25.0, seed: int = 0,
             people: int = 22, progress: bool = True) -> dict[str, str]:
    """Write a synthetic broadcast set; returns its paths {images, masks, classes, annotations, video}.

    images/frame_NNNNN.jpg, masks/frame_NNNNN.png (RGBA palette colours), classes.json (Acme
    format), annotations.json (COCO instances, compressed RLE), video.mp4 (H.264). Deterministic
    for a seed; each file is written atomically, so a re-run rewrites the same bytes of images/masks.
    """
    import av

    w, h = int(size[0]), int(size[1])
    if w % 2 or h % 2:
        raise ValueError(f"width and height must be even for H.264, got {w}x{h}")
    out = Path(out_dir)
    paths = {"images": str(out / "images"), "masks": str(out / "masks"), "classes": str(out / "classes.json"),
             "annotations": str(out / "annotations.json"), "video": str(out / "video.mp4")}
    write_json_atomic(paths["classes"], {
        "format": "colour-coded semantic masks: masks/<stem>.png (RGBA) pairs with images/<stem>.jpg "
                  "(playerseg synth: synthetic, for tests and benchmarks only)",
        "classes": [{"name": n, "rgb": list(c)} for n, c in PALETTE]})
    colours = np.zeros((256, 4), np.uint8)
    colours[: len(PALETTE), :3] = [c for _, c in PALETTE]
    colours[:, 3] = 255
    categories = [{"id": i + 1, "name": n, "supercategory": "synthetic"} for i, n in enumerate(OBJECTS)]
    images, annotations = [], []
    with atomic_path(paths["video"]) as tmp_video:
        with av.open(tmp_video, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(str(fps)).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for index in tqdm(range(num_frames), desc="synth", disable=not progress):
                image, src, objects = render_objects(seed, index, (w, h), people)
                stem = f"frame_{index:05d}"
                jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
                write_bytes_atomic(f"{paths['images']}/{stem}.jpg", jpg.tobytes())
                png = cv2.imencode(".png", cv2.cvtColor(colours[src], cv2.COLOR_RGBA2BGRA))[1]
                write_bytes_atomic(f"{paths['masks']}/{stem}.png", png.tobytes())
                images.append({"id": index + 1, "file_name": f"{stem}.jpg", "width": w, "height": h,
                               "frame_index": index})
                for name, track, mask in objects:
                    rle = rle_utils.encode(mask)
                    annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                        "category_id": OBJECTS.index(name) + 1, "segmentation": rle,
                                        "area": rle_utils.area(rle), "bbox": rle_utils.to_bbox(rle), "iscrowd": 0,
                                        **({"track_id": track} if track else {})})
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    write_json_atomic(paths["annotations"], {
        "info": {"description": f"playerseg synthetic broadcast, seed {seed} (tests and benchmarks only)"},
        "images": images, "annotations": annotations, "categories": categories})
    return paths
