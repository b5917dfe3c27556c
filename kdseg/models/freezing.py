"""Encoder freezing of the KD paper (§4.3, Fig. 2), applied from step 1 on, and frozen BN
statistics (--batch_norm=frozen).

  none       everything trains;
  encoder    EF: the whole backbone is frozen;
  first-two  E2LF: "the first two layers of the ResNet": the stem convolution block (conv1: 7x7
             convolution + BN) and the first residual stage (conv2_x), i.e. every backbone layer
             whose keras.applications name starts with conv1_ or conv2_ (spec §6; the choice is
             recorded here because the paper does not name the layers).
Frozen layers get trainable=False: their variables leave model.trainable_variables, so they
receive no update and no weight decay, and their BatchNormalization layers run in inference
mode (Keras 3 uses batch statistics only when training and trainable), so statistics stay put.
"""
from __future__ import annotations

import keras

from kdseg.models.recompute import BatchNormalization

FREEZE_MODES = ("none", "encoder", "first-two")
FIRST_TWO_PREFIXES = ("conv1_", "conv2_")


def frozen_layers(model, mode: str) -> list[keras.layers.Layer]:
  if mode not in FREEZE_MODES:
    raise ValueError(f"--freeze={mode!r} is unknown; choose one of {', '.join(FREEZE_MODES)}.")
  if mode == "encoder":
    return [model.backbone]
  if mode == "first-two":
    return [layer for layer in model.backbone.layers if layer.name.startswith(FIRST_TWO_PREFIXES)]
  return []


def freeze(model, mode: str) -> list[str]:
  """Freezes the layers `mode` names; returns the paths of the variables it froze."""
  paths = []
  for layer in frozen_layers(model, mode):
    layer.trainable = False
    paths.extend(v.path for v in layer.variables)
  return sorted(paths)


BATCH_NORM_MODES = ("train", "frozen")


def freeze_statistics(layer: keras.layers.Layer) -> int:
  """Every BN layer inside `layer` normalises with its moving statistics, in training too, and
  keeps them; gamma and beta still train (the KD paper's code: every BN with is_training=False,
  gamma/beta in the optimizer's variables). Returns the number of BN layers."""
  count = 0
  for sublayer in layer._flatten_layers(include_self=True):   # pylint: disable=protected-access
    if isinstance(sublayer, BatchNormalization):
      sublayer.moving_statistics_only = True
      count += 1
  return count
