"""Segment Anything in playerseg: models by name (`build`), prompts and crops, the embedding
cache (Ray Data), fine-tuning (Ray Train), a semantic head on its embeddings, box refinement."""
from playerseg.sam.build import SAM_MODELS, SamCheckpointError, build_sam

__all__ = ["SAM_MODELS", "SamCheckpointError", "build_sam"]
