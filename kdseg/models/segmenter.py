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
  pod      {"features": the residual sums ending stages conv2..conv5 (before their activation,
           kdseg.models.resnet.stage_ends) and the decoder features, "logits": the logits before
           upsampling [B, h, w, C_t]}: what PLOP's POD distils (CVPR2021_PLOP
           segmentation_module.py:307-313, "attentions" and "sem_logits_small")
Every endpoint is float32, also under a mixed-precision policy (losses are computed in float32).

Images arrive normalised with ImageNet mean/std (kdseg.data.pipeline). Other input conventions
turn them back into 0-255 RGB and then into what the weights were trained on (INPUT_CONVENTIONS):
"caffe" (keras.applications: BGR minus its mean), "deeplab" (DeepLab-v2's Caffe model: BGR minus
(104.008, 116.669, 122.679)) and "deeplab-rgb" (that BGR-ordered mean subtracted from RGB, no
channel swap: what the KD paper's code feeds the DeepLab weights, LTTM/IL-SemSegm
codes/LD1/utils/image_utils.py: convert2float).

classifier="full" builds every step's head at once (the classes of the whole task, whatever the
step): the KD paper's network has all its outputs from step 0, initialised Glorot-uniform as one
full-width convolution, biases included. upsampling="legacy" resizes the logits on TF1's
resize_bilinear grid (half_pixel_centers=False), as that code does.
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
from kdseg.models.resnet import build_resnet, segment_ends, stage_ends

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)   # keras.applications' Caffe ResNets
DEEPLAB_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)   # DeepLab-v2's Caffe model


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  backbone: str = "tiny"
  output_stride: int = 16
  head_channels: int = 256
  head: str = "v3"
  input_convention: str = "imagenet"   # INPUT_CONVENTIONS
  recompute: bool = False              # gradient checkpointing of the backbone
  classifier: str = "per_step"         # CLASSIFIERS
  upsampling: str = "half_pixel"       # UPSAMPLINGS


HEADS = ("v3", "v2", "classifier")
INPUT_CONVENTIONS = ("imagenet", "caffe", "deeplab", "deeplab-rgb")
CLASSIFIERS = ("per_step", "full")
UPSAMPLINGS = ("half_pixel", "legacy")
# Fields recorded only when they differ from these defaults, so run directories written before
# the fields existed stay valid.
_RECORDED_IF_CHANGED = {"input_convention": "imagenet", "classifier": "per_step",
                        "upsampling": "half_pixel"}


def config_record(config: ModelConfig) -> dict:
  """What a run directory records of the model: the fields that change its checkpoints or
  outputs (recompute does not); _RECORDED_IF_CHANGED only when not at their defaults."""
  record = dataclasses.asdict(config)
  del record["recompute"]
  for name, default in _RECORDED_IF_CHANGED.items():
    if record[name] == default:
      del record[name]
  return record


def convert_input(images: tf.Tensor, convention: str) -> tf.Tensor:
  """[B, H, W, 3] images normalised with ImageNet mean/std -> the input `convention` wants."""
  if convention == "imagenet":
    return images
  rgb = images * tf.constant(IMAGENET_STD) + tf.constant(IMAGENET_MEAN)
  if convention == "deeplab-rgb":
    return rgb - tf.constant(DEEPLAB_BGR_MEAN)
  bgr = tf.reverse(rgb, axis=[-1])
  return bgr - tf.constant(CAFFE_BGR_MEAN if convention == "caffe" else DEEPLAB_BGR_MEAN)


def output_order(plan, model: "Segmenter") -> tuple[int, ...]:
  """The original class id of each of `model`'s outputs (a model of `plan`, any step)."""
  return plan.order(len(model.classifier.classes_per_step) - 1)


def step_heads(config: ModelConfig, plan, step: int) -> list[int]:
  """Classes per classifier head of the model of `step` of `plan` (a kdseg.data.tasks.TaskPlan):
  the heads of the steps so far, or with classifier="full" every step's from the start."""
  return plan.classes_per_step(plan.num_steps - 1 if config.classifier == "full" else step)


class _Segments:
  """Sub-models of the backbone, one per recompute segment, and the backbone with its stage
  outputs (stage_ends) as outputs too (held outside Keras' tracking, so checkpoints see the
  backbone's variables once, under their usual names)."""

  def __init__(self, backbone: keras.Model):
    names = segment_ends(backbone)
    ends = [backbone.get_layer(name).output for name in names]
    starts = [backbone.input] + ends[:-1]
    self.models = [keras.Model(start, end) for start, end in zip(starts, ends)]
    stages = stage_ends(backbone)
    self.is_stage_end = [name in stages for name in names]
    self.with_stages = keras.Model(
        backbone.input, [backbone.get_layer(name).output for name in stages] + [backbone.output])


class Segmenter(keras.Model):

  def __init__(self, config: ModelConfig, classes_per_step: list[int], **kwargs):
    super().__init__(**kwargs)
    self.config = config
    if config.head not in HEADS:
      raise ValueError(f"--head={config.head!r} is unknown; choose one of {', '.join(HEADS)}.")
    for flag, value, choices in (("input_convention", config.input_convention, INPUT_CONVENTIONS),
                                 ("classifier", config.classifier, CLASSIFIERS),
                                 ("upsampling", config.upsampling, UPSAMPLINGS)):
      if value not in choices:
        raise ValueError(f"--{flag}={value!r} is unknown; choose one of {', '.join(choices)}.")
    full_width = sum(classes_per_step) if config.classifier == "full" else None
    self.backbone = build_resnet(config.backbone, config.output_stride)
    self._segments = _Segments(self.backbone)
    if config.head == "v3":
      self.head = DeepLabV3Head(config.head_channels, config.head_channels, config.output_stride,
                                name="deeplabv3")
      self.classifier = IncrementalClassifier(classes_per_step, full_width=full_width,
                                              name="classifier")
    elif config.head == "classifier":
      self.head = None
      self.classifier = IncrementalClassifier(classes_per_step, full_width=full_width,
                                              name="classifier")
    else:
      self.head = None
      self.classifier = AsppClassifier(classes_per_step, config.output_stride,
                                       full_width=full_width, name="classifier")

  @property
  def num_classes(self) -> int:
    return sum(self.classifier.classes_per_step)

  def _encode(self, images, training):
    """(the stage outputs, the encoder features)."""
    images = convert_input(images, self.config.input_convention)
    if not (self.config.recompute and training):
      *stages, encoder = self._segments.with_stages(images, training=training)
      return stages, encoder
    x, stages = images, []
    for segment, is_stage_end in zip(self._segments.models, self._segments.is_stage_end):
      x = checkpointed(lambda inputs, segment=segment: segment(inputs, training=True))(x)
      if is_stage_end:
        stages.append(x)
    return stages, x

  def call(self, images, training=False):
    stages, encoder = self._encode(images, training)
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
    size = tf.shape(images)[1:3]
    small = tf.cast(logits, tf.float32)
    if self.config.upsampling == "legacy":
      logits = tf.compat.v1.image.resize_bilinear(small, size, align_corners=False,
                                                  half_pixel_centers=False)
    else:
      logits = tf.image.resize(small, size, method="bilinear")
    outputs = {"logits": logits, "encoder": tf.cast(encoder, tf.float32),
               "decoder": tf.cast(decoder, tf.float32),
               "pod": {"features": [tf.cast(x, tf.float32) for x in stages + [decoder]],
                       "logits": small}}
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
