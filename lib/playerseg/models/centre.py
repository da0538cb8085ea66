"""The centre head: P(a person's centre) beside a segmentation model's class logits.

    model = CentreModel(smp_model)          # build_model does this for ModelConfig(centre_head=True)
    out = model(x)                          # N x (C + 1) x H x W: the class logits, then the centre logit

A small head on the decoder's last features, run at half their resolution (dilated 3 x 3 convolutions,
a view ~60 px wide at input resolution, a player's size in a wide shot) and upsampled back. With
`freeze_base` (the default) the segmentation model is fixed: its parameters take no gradient and its
BatchNorm statistics stay as trained, so the class outputs are exactly the base model's and only the
head learns (`losses.centre_loss`, from person boxes). The post-processing reads the channel to cut a
blob between its centre peaks (`infer.postprocess.split_on_centres`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIOR_BIAS = -2.19  # CenterNet's start: P(centre) = 0.1 everywhere


class CentreModel(nn.Module):
    def __init__(self, base: nn.Module, width: int = 16, freeze_base: bool = True):
        super().__init__()
        self.base = base
        self.freeze_base = freeze_base
        channels = base.segmentation_head[0].in_channels  # smp: the decoder's last features
        layers: list[nn.Module] = []
        for i, dilation in enumerate((1, 2, 4, 8)):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 3, padding=dilation, dilation=dilation),
                       nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))
        nn.init.constant_(self.head[-1].bias, PRIOR_BIAS)
        if freeze_base:
            self.base.requires_grad_(False)
            self.base.eval()

    def train(self, mode: bool = True) -> "CentreModel":
        super().train(mode)
        if self.freeze_base:
            self.base.eval()  # BatchNorm statistics stay the base model's
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.base.decoder(self.base.encoder(x))
        logits = self.base.segmentation_head(features)
        if self.freeze_base:
            features = features.detach()
        half = F.avg_pool2d(features, 2)
        centre = F.interpolate(self.head(half), size=features.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([logits, centre], 1)
