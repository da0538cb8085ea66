"""Batch inference over match archives: decode -> model (actor pool) -> post-processing -> Parquet."""
