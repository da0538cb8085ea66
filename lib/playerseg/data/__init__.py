"""Data layer: one Sample record, streaming readers by name, leak-free splits, synthetic scenes."""
