"""The segmentation network of one step: backbone -> head -> incremental classifier.

Two heads: "v3" (MiB: DeepLab-v3 ASPP with image pooling, then a 1x1 incremental classifier) and
"v2" (KD paper: DeepLab-v2, four dilated 3x3 incremental classifiers summed).
`Segmenter(images)` returns a dict of endpoints used by losses and distillation terms:
  logits   [B, H, W, C_t] float32, upsampled (bilinear) to the input size
  encoder  [B, h, w, F_enc] backbone output (input of the ASPP)
  decoder  [B, h, w, F_dec] input of the classifier (v3: head output; v2: the encoder output)
  aspp     [B, h, w, 4, F] the four ASPP branch outputs (v3: the parallel convolutions before
           their BN; v2: the four branches' class scores, F = C_t), for L_dec
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from kdseg.models.classifier import AsppClassifier, IncrementalClassifier
from kdseg.models.deeplab import DeepLabV3Head
from kdseg.models.resnet import build_resnet


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  backbone: str = "tiny"
  output_stride: int = 16
  head_channels: int = 256
  head: str = "v3"


HEADS = ("v3", "v2")


class Segmenter(keras.Model):

  def __init__(self, config: ModelConfig, classes_per_step: list[int], **kwargs):
    super().__init__(**kwargs)
    self.config = config
    if config.head not in HEADS:
      raise ValueError(f"--head={config.head!r} is unknown; choose one of {', '.join(HEADS)}.")
    self.backbone = build_resnet(config.backbone, config.output_stride)
    if config.head == "v3":
      self.head = DeepLabV3Head(config.head_channels, config.head_channels, config.output_stride,
                                name="deeplabv3")
      self.classifier = IncrementalClassifier(classes_per_step, name="classifier")
    else:
      self.head = None
      self.classifier = AsppClassifier(classes_per_step, config.output_stride, name="classifier")

  @property
  def num_classes(self) -> int:
    return sum(self.classifier.classes_per_step)

  def call(self, images, training=False):
    encoder = self.backbone(images, training=training)
    if self.head is not None:
      decoder, aspp = self.head(encoder, training=training)
      logits = self.classifier(decoder)
    else:
      decoder = encoder
      logits, aspp = self.classifier(encoder)
    logits = tf.image.resize(logits, tf.shape(images)[1:3], method="bilinear")
    return {"logits": logits, "encoder": encoder, "decoder": decoder, "aspp": aspp}


def build_segmenter(config: ModelConfig, classes_per_step: list[int]) -> Segmenter:
  """A built model (variables created) for the given classifier heads."""
  model = Segmenter(config, classes_per_step, name="segmenter")
  model(tf.zeros([1, 32, 32, 3]), training=False)
  return model


def copy_matching_weights(source: Segmenter, target: Segmenter) -> list[str]:
  """Assigns every variable of `source` to the variable of `target` with the same path.

  Returns the paths of target variables that had no counterpart (the new head at step t).
  Raises if a source variable has no counterpart: the models would not describe the same network.
  """
  target_by_path = {v.path: v for v in target.variables}
  unmatched_source = []
  for variable in source.variables:
    match = target_by_path.pop(variable.path, None)
    if match is None or tuple(match.shape) != tuple(variable.shape):
      unmatched_source.append(variable.path)
      continue
    match.assign(variable)
  if unmatched_source:
    raise ValueError(f"previous-step model variables without a counterpart in the new model: "
                     f"{unmatched_source[:5]}; was it trained with another --backbone or head?")
  return sorted(target_by_path)
