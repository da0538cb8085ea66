"""playerseg: segmentation of football players and LED boards in broadcast video, on Ray."""

__version__ = "0.1.0"
