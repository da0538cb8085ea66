"""Hyperparameter sweeps (`playerseg tune`): YAML search spaces (space.py) run on Ray Tune (sweep.py)."""
