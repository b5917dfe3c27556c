"""Loss terms, one keras.losses.Loss class each; see segmentation.py and distillation.py."""
