"""Training of segmentation models as Ray Train jobs (`playerseg train unet`)."""
