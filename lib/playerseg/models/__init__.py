"""Segmentation models: smp architectures by name (`registry`), the EfficientNet-Lite0/1/2 ImageNet
encoder weights (`effnet_lite`), the preprocessing stored with every model (`preprocess`, no torch)
and the inference wrapper every job shares (`segmenter`).

The registry names below load lazily, so `import playerseg.models.preprocess` (inference decode
workers) does not import torch.
"""
__all__ = ["MODELS", "ModelConfig", "build_model"]


def __getattr__(name: str):
    if name in __all__:
        from playerseg.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
