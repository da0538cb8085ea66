"""SAM training checkpoints: only the trained parameters, plus a reference to the base checkpoint.

A file `sam_trained.pt` holds {"format", "model_type", "base_checkpoint", "mode", "last_n",
"trained": {name: tensor} (Sam parameters the mode trains), "head": head state dict or None,
"head_hidden", "num_classes", "epoch", "optimizer", "scheduler", "config"}. A decoder-only vit_h
checkpoint is ~16 MB instead of 2.5 GB; the base weights come from `base_checkpoint` again.

    sam = load_finetuned_sam("runs/sam/checkpoints/checkpoint_000004/sam_trained.pt")
"""
from __future__ import annotations

import io

import torch
from segment_anything.modeling import Sam

from playerseg.io import write_bytes_atomic
from playerseg.sam.build import SamCheckpointError, build_sam, check_fits, read_state

FORMAT = "playerseg-sam/1"
FILE = "sam_trained.pt"


def save_trained(path: str, sam: Sam, trained: list[str], *, model_type: str, base_checkpoint: str | None,
                 mode: str, last_n: int = 0, head: torch.nn.Module | None = None, **extra) -> None:
    """Write the trained parameters `trained` of `sam` (and the head) atomically to `path`."""
    params = dict(sam.named_parameters())
    state = {
        "format": FORMAT, "model_type": model_type, "base_checkpoint": base_checkpoint or None,
        "mode": mode, "last_n": last_n,
        "trained": {k: params[k].detach().cpu().clone() for k in trained},
        "head": None if head is None else {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "head_hidden": getattr(head, "body", [None])[0].out_channels if head is not None else None,
        "num_classes": getattr(head, "num_classes", None),
        **extra,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_trained(path: str) -> dict:
    """The checkpoint dict at `path` (local or fsspec); SamCheckpointError when it is not one."""
    state = read_state(path, "SAM training checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SamCheckpointError(f"{path}: not a playerseg SAM training checkpoint (format {FORMAT!r}); "
                                 "for official SAM weights use build_sam(model_type, path)")
    return state


def apply_trained(sam: Sam, state: dict, path: str = "checkpoint") -> Sam:
    """Load the trained parameters of a checkpoint dict into `sam` (of the same model type)."""
    check_fits(sam, state["trained"], state["model_type"], path, partial_ok=True)
    sam.load_state_dict(state["trained"], strict=False)
    return sam


def load_finetuned_sam(path: str, device: str | torch.device = "cpu", base_checkpoint: str | None = None) -> Sam:
    """The base SAM of a training checkpoint with its trained parameters; `base_checkpoint`
    overrides the stored reference (e.g. the same weights at another path)."""
    state = load_trained(path)
    sam = build_sam(state["model_type"], base_checkpoint or state["base_checkpoint"])
    return apply_trained(sam, state, path).to(device).eval()
