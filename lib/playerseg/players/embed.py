"""Per-instance embeddings of players: masked colour histogram (cheap baseline) and masked pooled
encoder features (the segmentation model's encoder, or any CNN encoder giving a feature pyramid).

    hist = colour_histograms(image, masks, boxes)                # N x D, rows sum to 1
    embedder = EncoderEmbedder.from_segmenter(segmenter)         # or EncoderEmbedder(encoder, mean, std)
    feats = embedder(image, masks, boxes)                        # N x D, rows of unit norm
    feats = SamEmbedder(build_sam("vit_b", checkpoint))(image, masks)   # SAM image encoder, optional

Colour histogram: only the instance mask's pixels count (no pitch green, no board, no other
player), and only its kit band (rows `band` of the box, from the top: the shirt and shorts, not
the head and the socks). HSV pixels split into achromatic ones (saturation or value below
`achromatic_s` / `achromatic_v`: black, grey, white kits, where hue is noise), binned by value,
and chromatic ones, binned by hue x saturation x value. The histogram is L1-normalised; its
square root (Hellinger) is what the clustering sees (`hellinger`).

Encoder features, mode `crop` (default): each instance's box (grown by `pad`) is cropped, resized
to `crop_size` (so a far player and a near one get the same resolution), normalised like the
model's training input and run through the encoder in batches; each stage in `stages` is averaged
inside the instance mask resized to that stage (area interpolation: soft weights), L2-normalised,
and the stages are concatenated (then L2-normalised again). The default stages are the early ones
(strides 2 and 4: colour and texture, which is what tells kits apart); deep stages describe pose
and body shape, which both teams share (on the Acme frames with the ImageNet encoder, stages 2-5
cluster teams no better than chance). Mode `frame`: the encoder runs once on
the whole frame (resized to `frame_width`) and the same masked pooling happens per instance; this
is cheaper with many players but small far players get few feature pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class ColourConfig:
    band: tuple[float, float] = (0.1, 0.65)  # box rows used, as fractions of its height from the top
    hue_bins: int = 12
    sat_bins: int = 2
    val_bins: int = 2
    grey_bins: int = 4  # value bins of achromatic pixels
    achromatic_s: int = 50  # OpenCV HSV units (0..255)
    achromatic_v: int = 45


@dataclass
class EncoderConfig:
    mode: str = "crop"  # crop | frame
    crop_size: tuple[int, int] = (96, 192)  # width, height (multiples of 32)
    pad: float = 0.1  # crop box growth, fraction of its size on each side
    frame_width: int = 1024  # mode frame: the frame is resized to this width (height keeps aspect)
    stages: list[int] = field(default_factory=lambda: [1, 2])  # encoder outputs pooled (1 = stride 2)
    batch_size: int = 32


def hist_dim(cfg: ColourConfig = ColourConfig()) -> int:
    return cfg.grey_bins + cfg.hue_bins * cfg.sat_bins * cfg.val_bins


def band_mask(mask: np.ndarray, box, band: tuple[float, float]) -> np.ndarray:
    """The mask restricted to rows [y0 + band[0] * h, y0 + band[1] * h) of its box."""
    y0, y1 = float(box[1]), float(box[3])
    h = y1 - y0
    top, bottom = int(np.floor(y0 + band[0] * h)), int(np.ceil(y0 + band[1] * h))
    out = np.zeros_like(mask, dtype=bool)
    out[max(0, top):max(0, bottom)] = mask[max(0, top):max(0, bottom)]
    return out


def colour_histogram(hsv: np.ndarray, mask: np.ndarray, cfg: ColourConfig = ColourConfig()) -> np.ndarray:
    """Histogram (float32, sums to 1; zeros for an empty mask) of the HSV pixels under `mask`."""
    px = hsv[mask.astype(bool)].astype(np.int32)
    out = np.zeros(hist_dim(cfg), dtype=np.float32)
    if not len(px):
        return out
    h, s, v = px[:, 0], px[:, 1], px[:, 2]
    grey = (s < cfg.achromatic_s) | (v < cfg.achromatic_v)
    gbin = np.minimum(v[grey] * cfg.grey_bins // 256, cfg.grey_bins - 1)
    out[: cfg.grey_bins] = np.bincount(gbin, minlength=cfg.grey_bins)
    c = ~grey
    hb = np.minimum(h[c] * cfg.hue_bins // 180, cfg.hue_bins - 1)  # OpenCV hue is 0..179
    lo_s, lo_v = cfg.achromatic_s, cfg.achromatic_v
    sb = np.minimum((s[c] - lo_s) * cfg.sat_bins // (256 - lo_s), cfg.sat_bins - 1)
    vb = np.minimum((v[c] - lo_v) * cfg.val_bins // (256 - lo_v), cfg.val_bins - 1)
    idx = (hb * cfg.sat_bins + sb) * cfg.val_bins + vb
    out[cfg.grey_bins:] = np.bincount(idx, minlength=cfg.hue_bins * cfg.sat_bins * cfg.val_bins)
    return out / len(px)


def colour_histograms(image: np.ndarray, masks, boxes, cfg: ColourConfig = ColourConfig()) -> np.ndarray:
    """N x D histograms of the kit band of each instance of an RGB frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros((0, hist_dim(cfg)), dtype=np.float32)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return np.stack([colour_histogram(hsv, band_mask(m, b, cfg.band), cfg) for m, b in zip(masks, boxes)])


def hellinger(hist: np.ndarray) -> np.ndarray:
    """Square root of L1-normalised histograms: Euclidean distance becomes the Hellinger distance."""
    return np.sqrt(np.clip(hist, 0, None))


def _crop_box(box, pad: float, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = pad * (x1 - x0), pad * (y1 - y0)
    x0, y0 = max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy)))
    x1, y1 = min(width, int(np.ceil(x1 + dx))), min(height, int(np.ceil(y1 + dy)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def masked_pool(feature: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """N x C x h x w features averaged under N x h x w soft weights (plain mean where weights are 0)."""
    import torch

    total = weights.sum(dim=(1, 2))
    plain = feature.mean(dim=(2, 3))
    pooled = (feature * weights[:, None]).sum(dim=(2, 3)) / total.clamp_min(1e-6)[:, None]
    return torch.where((total > 1e-6)[:, None], pooled, plain)


class EncoderEmbedder:
    """Masked pooled features of an encoder returning a list of stage outputs (smp encoders do)."""

    def __init__(self, encoder, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 cfg: EncoderConfig = EncoderConfig(), device: str | None = None):
        import torch

        if cfg.mode not in ("crop", "frame"):
            raise ValueError(f"encoder embedding mode must be 'crop' or 'frame', got {cfg.mode!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = encoder.eval().to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.cfg = cfg

    @classmethod
    def from_segmenter(cls, segmenter, cfg: EncoderConfig = EncoderConfig(), device: str | None = None):
        """The encoder of a `playerseg.models.segmenter.Segmenter` (its smp model's `.encoder`),
        with the segmenter's input normalisation (`segmenter.preprocess.mean / std`)."""
        pre = segmenter.preprocess
        return cls(segmenter.model.encoder, tuple(pre.mean), tuple(pre.std), cfg, device or str(segmenter.device))

    @classmethod
    def imagenet(cls, cfg: EncoderConfig = EncoderConfig(), device: str | None = None):
        """The model registry's default encoder init (ImageNet EfficientNet-Lite0), untrained for
        segmentation: a generic embedding when no trained segmenter is at hand."""
        from playerseg.models.registry import ModelConfig, build_model, normalisation

        model_cfg = ModelConfig()
        mean, std = normalisation(model_cfg)
        return cls(build_model(model_cfg).encoder, mean, std, cfg, device)

    def _features(self, batch: np.ndarray) -> list:
        import torch

        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            feats = self.encoder((x - self.mean) / self.std)
        return [feats[s] for s in self.cfg.stages]

    @staticmethod
    def _combine(pooled: list) -> np.ndarray:
        import torch.nn.functional as F

        parts = [F.normalize(p.float(), dim=1) for p in pooled]
        import torch

        return F.normalize(torch.cat(parts, dim=1), dim=1).cpu().numpy().astype(np.float32)

    def dim(self) -> int:
        channels = getattr(self.encoder, "out_channels", None)
        if channels is None:
            raise ValueError("encoder has no `out_channels`; embed a frame to learn the dimension")
        return int(sum(channels[s] for s in self.cfg.stages))

    def __call__(self, image: np.ndarray, masks, boxes) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, self.dim()), dtype=np.float32)
        if self.cfg.mode == "frame":
            return self._embed_frame(image, masks)
        return self._embed_crops(image, masks, boxes)

    def _embed_crops(self, image: np.ndarray, masks, boxes: np.ndarray) -> np.ndarray:
        import torch

        cw, ch = self.cfg.crop_size
        height, width = image.shape[:2]
        out = []
        for start in range(0, len(boxes), self.cfg.batch_size):
            crops, weights = [], []
            for mask, box in zip(masks[start:start + self.cfg.batch_size], boxes[start:start + self.cfg.batch_size]):
                x0, y0, x1, y1 = _crop_box(box, self.cfg.pad, height, width)
                crops.append(cv2.resize(image[y0:y1, x0:x1], (cw, ch), interpolation=cv2.INTER_AREA))
                weights.append(cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA))
            feats = self._features(np.stack(crops))
            w = torch.from_numpy(np.stack(weights)).to(self.device)
            out.append(self._combine([masked_pool(f, _resize_weights(w, f.shape[-2:])) for f in feats]))
        return np.concatenate(out)

    def _embed_frame(self, image: np.ndarray, masks) -> np.ndarray:
        import torch

        height, width = image.shape[:2]
        fw = max(32, int(round(self.cfg.frame_width / 32)) * 32)
        fh = max(32, int(round(height * fw / width / 32)) * 32)
        feats = self._features(cv2.resize(image, (fw, fh), interpolation=cv2.INTER_AREA)[None])
        out = []
        for start in range(0, len(masks), self.cfg.batch_size):
            chunk = masks[start:start + self.cfg.batch_size]
            w = np.stack([cv2.resize(m.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA) for m in chunk])
            w = torch.from_numpy(w).to(self.device)
            out.append(self._combine([masked_pool(f.expand(len(chunk), -1, -1, -1), _resize_weights(w, f.shape[-2:]))
                                      for f in feats]))
        return np.concatenate(out)


def _resize_weights(weights: "torch.Tensor", size) -> "torch.Tensor":
    """N x H x W soft mask -> N x h x w by area averaging (fraction of each cell inside the mask)."""
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(weights[:, None], tuple(int(s) for s in size))[:, 0]


class SamEmbedder:
    """Masked pooled SAM image embeddings (the 256-channel neck output, 1/16 of SAM's input).

        embedder = SamEmbedder(build_sam("vit_b", "sam_vit_b_01ec64.pth"))   # playerseg.sam.build

    The frame goes through SAM's own preprocessing (`playerseg.sam.inputs`: longest side =
    `img_size`, normalised, padded); each instance mask is resized the same way, area-pooled to
    the embedding grid, and the embedding is averaged under it (L2-normalised). One encoder pass
    per frame, whatever the number of players.
    """

    def __init__(self, sam):
        self.sam = sam.eval()

    def dim(self) -> int:
        from playerseg.sam.build import embedding_shape

        return embedding_shape(self.sam)[0]

    def __call__(self, image: np.ndarray, masks, boxes=None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from playerseg.sam.inputs import Geometry, resize_image, to_model_input
        from playerseg.sam.model import encode

        if not len(masks):
            return np.zeros((0, self.dim()), dtype=np.float32)
        geo = Geometry.of(self.sam)
        h, w = geo.input_size(*image.shape[:2])
        with torch.inference_mode():
            feature = encode(self.sam, to_model_input(self.sam, [resize_image(image, geo)]))  # 1 x C x g x g
            weights = np.zeros((len(masks), geo.img_size, geo.img_size), np.float32)
            for i, m in enumerate(masks):
                weights[i, :h, :w] = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            wt = _resize_weights(torch.from_numpy(weights).to(feature.device), feature.shape[-2:])
            pooled = masked_pool(feature.expand(len(masks), -1, -1, -1), wt)
            return F.normalize(pooled.float(), dim=1).cpu().numpy().astype(np.float32)
