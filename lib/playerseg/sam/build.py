"""SAM models by name, built with `segment_anything` and loaded from a checkpoint path or fsspec URI.

    sam = build_sam("vit_b", "s3://models/sam_vit_b_01ec64.pth")   # the user's weights, never downloaded
    sam = build_sam("tiny_untrained")                              # tests only: random, tiny, useless

`vit_b` / `vit_l` / `vit_h` are `segment_anything.sam_model_registry`'s builders (1024 input,
64x64x256 embeddings). `tiny_untrained` is built from the same `segment_anything.modeling` parts
(a 2-block ViT on 256 px inputs, the standard prompt encoder and mask decoder): it is untrained,
for unit tests and benchmarks of the machinery; nothing it predicts means anything.

Every build is deterministic (fixed seed), so a model without a checkpoint is the same model in
every process; a checkpoint that does not fit raises `SamCheckpointError` naming the model type.
"""
from __future__ import annotations

import logging
from functools import partial

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from playerseg.data.errors import DataError
from playerseg.io import read_weights

log = logging.getLogger(__name__)

PROMPT_EMBED_DIM = 256  # what SAM's prompt encoder and mask decoder take; the encoder neck outputs it


class SamCheckpointError(ValueError):
    pass


def _tiny_untrained() -> Sam:
    """A tiny SAM from segment_anything.modeling: 256 px input, 16x16x256 embeddings, UNTRAINED."""
    img_size, patch = 256, 16
    grid = img_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=patch, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=(1,), window_size=8, out_chans=PROMPT_EMBED_DIM),
        prompt_encoder=PromptEncoder(embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(  # the standard SAM mask decoder
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


# name -> (builder of a Sam with random weights, encoder embed dim (how a checkpoint is
# recognised), encoder input side img_size)
SAM_MODELS: dict[str, tuple] = {
    "vit_b": (partial(sam_model_registry["vit_b"], checkpoint=None), 768, 1024),
    "vit_l": (partial(sam_model_registry["vit_l"], checkpoint=None), 1024, 1024),
    "vit_h": (partial(sam_model_registry["vit_h"], checkpoint=None), 1280, 1024),
    "tiny_untrained": (_tiny_untrained, 64, 256),
}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"


def read_state(path: str, what: str = "SAM checkpoint") -> dict:
    """A torch state dict (or our own checkpoint dict) from a local path or fsspec URI;
    SamCheckpointError naming the file as `what` when it is missing or unreadable."""
    try:
        return read_weights(path)
    except FileNotFoundError:
        raise SamCheckpointError(f"{path}: {what} not found (nothing is downloaded: bring the file)") from None
    except DataError as e:
        raise SamCheckpointError(f"{path}: not a readable {what}: {e.problem}") from None


def guess_model_type(state: dict) -> str | None:
    """The SAM_MODELS name whose encoder width matches the state dict, if any."""
    w = state.get(_PATCH_KEY)
    if w is None:
        return None
    return next((name for name, (_, dim, _s) in SAM_MODELS.items() if dim == w.shape[0]), None)


def check_fits(model: torch.nn.Module, state: dict, model_type: str, path: str, partial_ok: bool = False) -> None:
    """Raise SamCheckpointError (naming `model_type` and what the file looks like) when `state` does
    not fit `model`: unexpected or (unless `partial_ok`) missing keys, or tensors of another shape."""
    own = model.state_dict()
    missing = [] if partial_ok else sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
              for k in sorted(set(state) & set(own)) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        guess = guess_model_type(state)
        looks = f"; it looks like a {guess!r} checkpoint" if guess and guess != model_type else ""
        raise SamCheckpointError(
            f"{path}: checkpoint does not fit SAM model type {model_type!r} (expected the state dict of "
            f"{model_type!r}){looks}: {len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} "
            f"unexpected {unexpected[:3]}, {len(shapes)} shape mismatch(es) {shapes[:3]}")


def build_sam(model_type: str, checkpoint: str | None = None, device: str | torch.device = "cpu") -> Sam:
    """SAM `model_type` (a key of SAM_MODELS) in eval mode, with the weights at `checkpoint`.

    `checkpoint`: local path or fsspec URI of the official state dict (`.pth`) or `.safetensors`;
    None = the deterministic random initialisation (with a warning unless `tiny_untrained`).
    """
    if model_type not in SAM_MODELS:
        raise ValueError(f"unknown SAM model type {model_type!r}; types are {sorted(SAM_MODELS)}")
    builder = SAM_MODELS[model_type][0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sam = builder()
    if checkpoint:
        state = read_state(checkpoint, f"SAM {model_type!r} checkpoint")
        check_fits(sam, state, model_type, checkpoint)
        sam.load_state_dict(state)
    elif model_type != "tiny_untrained":
        log.warning("SAM %s built WITHOUT a checkpoint: random weights, untrained", model_type)
    return sam.eval().to(device)


def embedding_shape(sam: Sam) -> tuple[int, int, int]:
    """(channels, h, w) of one image embedding of `sam`."""
    h, w = sam.prompt_encoder.image_embedding_size
    return PROMPT_EMBED_DIM, int(h), int(w)
