"""Segmentation models: smp architectures by name (`registry`), the EfficientNet-Lite0 ImageNet
encoder weights (`effnet_lite0`) and the inference wrapper every job shares (`segmenter`)."""
from playerseg.models.registry import MODELS, ModelConfig, build_model

__all__ = ["MODELS", "ModelConfig", "build_model"]
