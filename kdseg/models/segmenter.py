"""The segmentation network of one step: backbone -> head -> incremental classifier.

Three heads: "v3" (MiB: DeepLab-v3 ASPP with image pooling, then a 1x1 incremental classifier),
"v2" (KD paper: DeepLab-v2, four dilated 3x3 incremental classifiers summed) and "classifier"
(the MiB paper's point-supervision network, §6.3.1 and §6.3.3: the dilated ResNet's output, a 1x1
incremental classifier and bilinear upsampling, no ASPP; it has no "aspp" endpoint).
`Segmenter(images)` returns a dict of endpoints used by losses and distillation terms:
  logits   [B, H, W, C_t] float32, upsampled (bilinear) to the input size
  encoder  [B, h, w, F_enc] backbone output (input of the ASPP)
  decoder  [B, h, w, F_dec] input of the classifier (v3: head output; v2: the encoder output)
  aspp     [B, h, w, 4, F] the four ASPP branch outputs (v3: the parallel convolutions before
           their BN; v2: the four branches' class scores, F = C_t), for L_dec
Every endpoint is float32, also under a mixed-precision policy (losses are computed in float32).

Images arrive normalised with ImageNet mean/std (kdseg.data.pipeline). With
input_convention="caffe" the model first turns them into the Caffe convention the
keras.applications ImageNet weights were trained on (BGR, mean subtracted, 0-255 scale).
With recompute=True the backbone runs as gradient-checkpointed segments (the stem and each
residual block, kdseg.models.recompute): less memory, about one more backbone forward per step.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from kdseg.constants import IMAGENET_MEAN, IMAGENET_STD
from kdseg.models.classifier import AsppClassifier, IncrementalClassifier
from kdseg.models.deeplab import DeepLabV3Head
from kdseg.models.recompute import checkpointed
from kdseg.models.resnet import build_resnet, segment_ends

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  backbone: str = "tiny"
  output_stride: int = 16
  head_channels: int = 256
  head: str = "v3"
  input_convention: str = "imagenet"   # or "caffe" (keras.applications ResNet weights)
  recompute: bool = False              # gradient checkpointing of the backbone


HEADS = ("v3", "v2", "classifier")
INPUT_CONVENTIONS = ("imagenet", "caffe")


def config_record(config: ModelConfig) -> dict:
  """What a run directory records of the model: the fields that change its checkpoints or
  outputs (recompute does not), and input_convention only when it is not the default, so run
  directories written before it existed stay valid."""
  record = dataclasses.asdict(config)
  del record["recompute"]
  if record["input_convention"] == "imagenet":
    del record["input_convention"]
  return record


class _Segments:
  """Sub-models of the backbone, one per recompute segment (held outside Keras' tracking, so
  checkpoints see the backbone's variables once, under their usual names)."""

  def __init__(self, backbone: keras.Model):
    ends = [backbone.get_layer(name).output for name in segment_ends(backbone)]
    starts = [backbone.input] + ends[:-1]
    self.models = [keras.Model(start, end) for start, end in zip(starts, ends)]


class Segmenter(keras.Model):

  def __init__(self, config: ModelConfig, classes_per_step: list[int], **kwargs):
    super().__init__(**kwargs)
    self.config = config
    if config.head not in HEADS:
      raise ValueError(f"--head={config.head!r} is unknown; choose one of {', '.join(HEADS)}.")
    if config.input_convention not in INPUT_CONVENTIONS:
      raise ValueError(f"--input_convention={config.input_convention!r} is unknown; choose one "
                       f"of {', '.join(INPUT_CONVENTIONS)}.")
    self.backbone = build_resnet(config.backbone, config.output_stride)
    self._segments = _Segments(self.backbone) if config.recompute else None
    if config.head == "v3":
      self.head = DeepLabV3Head(config.head_channels, config.head_channels, config.output_stride,
                                name="deeplabv3")
      self.classifier = IncrementalClassifier(classes_per_step, name="classifier")
    elif config.head == "classifier":
      self.head = None
      self.classifier = IncrementalClassifier(classes_per_step, name="classifier")
    else:
      self.head = None
      self.classifier = AsppClassifier(classes_per_step, config.output_stride, name="classifier")

  @property
  def num_classes(self) -> int:
    return sum(self.classifier.classes_per_step)

  def _encode(self, images, training):
    if self.config.input_convention == "caffe":
      rgb = images * tf.constant(IMAGENET_STD) + tf.constant(IMAGENET_MEAN)
      images = tf.reverse(rgb, axis=[-1]) - tf.constant(CAFFE_BGR_MEAN)
    if self._segments is None or not training:
      return self.backbone(images, training=training)
    x = images
    for segment in self._segments.models:
      x = checkpointed(lambda inputs, segment=segment: segment(inputs, training=True))(x)
    return x

  def call(self, images, training=False):
    encoder = self._encode(images, training)
    aspp = None
    if self.head is not None:
      decoder, aspp = self.head(encoder, training=training)
      logits = self.classifier(decoder)
    elif self.config.head == "classifier":
      decoder = encoder
      logits = self.classifier(encoder)
    else:
      decoder = encoder
      logits, aspp = self.classifier(encoder)
    logits = tf.image.resize(tf.cast(logits, tf.float32), tf.shape(images)[1:3],
                             method="bilinear")
    outputs = {"logits": logits, "encoder": tf.cast(encoder, tf.float32),
               "decoder": tf.cast(decoder, tf.float32)}
    if aspp is not None:
      outputs["aspp"] = tf.cast(aspp, tf.float32)
    return outputs


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
