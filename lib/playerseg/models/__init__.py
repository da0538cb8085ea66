"""Segmentation models: smp architectures by name (`registry`), the EfficientNet-Lite0/1/2 ImageNet
encoder weights (`effnet_lite`), the preprocessing stored with every model (`preprocess`, no torch)
and the inference wrapper every job shares (`segmenter`).

Nothing here imports torch, so `import playerseg.models.preprocess` (inference decode workers) does
not either.
"""
from pathlib import Path

# The committed model every job uses when none is named (`infer`, `evaluate`, `cluster`, `render`,
# `demo`): the one place that names it, relative to the checkout (lib/playerseg/models -> repo root).
DEFAULT_MODEL = Path(__file__).resolve().parents[3] / "models" / "unet_effl0_broadcast_v2"


def model_or_default(model: str | None, flag: str = "--model") -> str:
    """`model` when one is named (checked to exist when local), else DEFAULT_MODEL, saying so;
    ConfigError when the named or the default model is missing."""
    from playerseg.config import ConfigError, require_path

    if model:
        require_path(model, "model", f"check {flag} (a model folder, checkpoint, run folder or model.ts)")
        return str(model)
    if not DEFAULT_MODEL.is_dir():
        raise ConfigError(f"no model given and the default model {DEFAULT_MODEL} is missing: pass {flag} <model folder>")
    print(f"model: {DEFAULT_MODEL} (the default; {flag} to use another)", flush=True)
    return str(DEFAULT_MODEL)
