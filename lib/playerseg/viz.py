"""Pictures of segmentations, and the palettes they use: class-colour overlays, error maps,
image|prediction|truth|error panels stacked into galleries, outlined boxes, instances of
prediction rows drawn per team / track (`draw_instances`, the frames of `playerseg render`), saved
as PNG (atomically, local paths or fsspec URIs).

All images are HxWx3 uint8 RGB; class maps are HxW task class ids (IGNORE_INDEX = unlabelled).

Error map colours (over a dimmed grey copy of the frame):
    green   correct foreground          red     false positive (predicted object on background)
    blue    missed (object predicted as background)
    yellow  wrong foreground class (e.g. a player predicted as LED board: merged with the board)
    grey    ignored (unlabelled) pixels; correct background stays the dimmed frame
"""
from __future__ import annotations

import cv2
import numpy as np

from playerseg.classes import IGNORE_INDEX, TaskClasses

# named colours first, then a fixed cycle for other class names
NAMED_COLOURS = {"player": (230, 40, 40), "led_board": (40, 200, 230), "ball": (250, 250, 250),
                 "goal_bar": (240, 130, 20)}
CYCLE = [(160, 60, 220), (60, 200, 80), (240, 200, 40), (220, 90, 160), (90, 120, 250), (150, 150, 60)]
IGNORE_COLOUR = (128, 128, 128)
ERROR_COLOURS = {"correct": (40, 190, 60), "false_positive": (235, 40, 40), "missed": (40, 90, 255),
                 "confused": (250, 220, 30), "ignore": IGNORE_COLOUR}
# instances (`draw_instances`): players per team, else per track / instance; LED boards one tint
TEAM_COLOURS = {0: (230, 57, 70), 1: (69, 123, 237), 2: (255, 209, 102), 3: (6, 214, 160)}  # RGB
INSTANCE_COLOURS = [(230, 57, 70), (69, 123, 237), (255, 209, 102), (6, 214, 160), (155, 93, 229),
                    (241, 91, 181), (0, 187, 249), (254, 228, 64), (0, 245, 212), (255, 127, 80)]
LED_TINT = (255, 0, 255)


def class_colours(classes: TaskClasses) -> np.ndarray:
    """256 x 3 uint8 lookup: RGB colour per class id (background black, IGNORE_INDEX grey)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    extra = iter(CYCLE * 8)
    for i, name in enumerate(classes.names):
        if i:
            lut[i] = NAMED_COLOURS.get(name) or next(extra)
    lut[IGNORE_INDEX] = IGNORE_COLOUR
    return lut


def blend(out: np.ndarray, where: np.ndarray, colour, alpha: float) -> None:
    """In place: the pixels of `out` at `where` blended (`alpha`) towards `colour` (one RGB, or one per pixel)."""
    out[where] = (out[where] * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)


def colorize(class_map: np.ndarray, classes: TaskClasses) -> np.ndarray:
    """HxW class ids -> HxWx3 RGB colour image."""
    return class_colours(classes)[np.asarray(class_map, dtype=np.uint8)]


def overlay(image: np.ndarray, class_map: np.ndarray, classes: TaskClasses, alpha: float = 0.5) -> np.ndarray:
    """The frame with every non-background pixel blended (`alpha`) towards its class colour."""
    _check(image, class_map)
    colours = colorize(class_map, classes)
    out = image.copy()
    fg = np.asarray(class_map) != 0
    blend(out, fg, colours[fg], alpha)
    return out


def error_map(image: np.ndarray, pred: np.ndarray, target: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """Where the prediction is right and wrong, coloured over a dimmed grey frame (see module doc)."""
    _check(image, target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) // 2
    out = np.repeat(grey[..., None], 3, axis=2)
    ignore = target == IGNORE_INDEX
    kinds = {
        "correct": (pred == target) & (target != 0) & ~ignore,
        "false_positive": (pred != 0) & (target == 0),
        "missed": (pred == 0) & (target != 0) & ~ignore,
        "confused": (pred != 0) & (target != 0) & (pred != target) & ~ignore,
        "ignore": ignore,
    }
    for kind, where in kinds.items():
        blend(out, where, np.array(ERROR_COLOURS[kind], dtype=np.float32), alpha)
    return out


def instance_colour(inst: dict, color_by: str) -> tuple[int, int, int]:
    team = inst.get("team")
    if color_by == "team" and team is not None and team >= 0:
        return TEAM_COLOURS.get(int(team), INSTANCE_COLOURS[int(team) % len(INSTANCE_COLOURS)])
    track = inst.get("track_id")
    if track is not None and track >= 0:  # one colour along the track, whatever the frame's instance id
        return INSTANCE_COLOURS[int(track) % len(INSTANCE_COLOURS)]
    return INSTANCE_COLOURS[int(inst.get("instance_id") or 0) % len(INSTANCE_COLOURS)]


def draw_instances(image: np.ndarray, instances: list[dict], color_by: str = "team", labels: bool = False,
                   alpha: float = 0.45, track_ids: bool = True) -> np.ndarray:
    """RGB image with instances (prediction rows) drawn: players filled + outlined, boards tinted."""
    from playerseg.metrics import rle
    from playerseg.video.schema import prediction_rle

    out = image.copy()
    h, w = out.shape[:2]
    for inst in sorted(instances, key=lambda r: r.get("class") != "led_board"):  # boards under players
        mask = rle.decode(prediction_rle(inst))
        if mask.shape != (h, w):
            mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        board = inst.get("class") == "led_board"
        colour = LED_TINT if board else instance_colour(inst, color_by)
        a = alpha * 0.7 if board else alpha
        blend(out, mask, colour, a)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1 if board else 2, cv2.LINE_AA)
        track = inst.get("track_id")
        track = f"#{track}" if track is not None and track >= 0 and (track_ids or labels) else ""
        if (labels or track) and contours:
            x, y, _, _ = cv2.boundingRect(np.concatenate(contours))
            text = track
            if labels:
                text = str(inst.get("class", ""))[:6]
                if inst.get("instance_id") is not None:
                    text += f" {inst['instance_id']}"
                if inst.get("score") is not None:
                    text += f" {inst['score']:.2f}"
                text += f" {track}" if track else ""
            cv2.putText(out, text, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out


def draw_boxes(image: np.ndarray, boxes, colour=(255, 255, 255)) -> np.ndarray:
    """A copy of `image` with the (x0, y0, x1, y1) `boxes` outlined (1 px per 540 rows)."""
    out = image.copy()
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, max(1, out.shape[0] // 540))
    return out


def label(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` on a dark strip at the top left."""
    out = image.copy()
    scale = max(0.4, image.shape[0] / 600)
    thick = max(1, int(round(scale * 1.5)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (min(w + 8, out.shape[1]), h + base + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def resize_width(image: np.ndarray, width: int, nearest: bool = False) -> np.ndarray:
    if image.shape[1] == width:
        return image
    height = max(1, int(round(image.shape[0] * width / image.shape[1])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def panel(image: np.ndarray, pred: np.ndarray, target: np.ndarray, classes: TaskClasses,
          title: str = "", tile_width: int = 480) -> np.ndarray:
    """One row: image | prediction overlay | truth overlay | error map, each `tile_width` wide."""
    if image.shape[1] != tile_width:  # draw at tile size: maps by nearest neighbour
        image = resize_width(image, tile_width)
        size = (image.shape[1], image.shape[0])
        pred = cv2.resize(np.asarray(pred, np.uint8), size, interpolation=cv2.INTER_NEAREST)
        target = cv2.resize(np.asarray(target, np.uint8), size, interpolation=cv2.INTER_NEAREST)
    tiles = [
        label(image, title or "image"),
        label(overlay(image, pred, classes), "prediction"),
        label(overlay(image, target, classes), "truth"),
        label(error_map(image, pred, target), "error"),
    ]
    return np.concatenate(tiles, axis=1)


def grid(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack rows vertically (padded to the widest) with a `gap` px dark line between them."""
    if not rows:
        raise ValueError("no rows to stack")
    width = max(r.shape[1] for r in rows)
    parts = []
    for i, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)))
        parts.append(r)
        if gap and i < len(rows) - 1:
            parts.append(np.full((gap, width, 3), 32, dtype=np.uint8))
    return np.concatenate(parts, axis=0)


def save_png(path: str, image: np.ndarray) -> None:
    """Write an RGB image as PNG, atomically (a killed writer leaves no half file)."""
    from playerseg.io import write_bytes_atomic

    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def _check(image: np.ndarray, class_map: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != np.shape(class_map):
        raise ValueError(f"expected an HxWx3 image and an HxW map of one size, got {image.shape} "
                         f"and {np.shape(class_map)}")
