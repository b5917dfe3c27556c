"""Incremental classifiers: one convolution per learning step, logits concatenated.

Head 0 predicts background + the step-0 classes; head t predicts the classes new at step t.
DeepLab-v3 (MiB) classifies with one 1x1 `IncrementalClassifier`; DeepLab-v2 (KD paper) with
`AsppClassifier`: four dilated 3x3 `IncrementalClassifier` branches whose scores are summed.
Both expose `branches` (the IncrementalClassifiers) and `classes_per_step`.

With `full_width` (--classifier=full: every step's head exists from step 0) the heads start as
the column blocks of one full-width convolution initialised the way TF1's tf.get_variable does
(the KD paper's code): Glorot-uniform kernels with the full width's fans, and Glorot-uniform
biases, whose fans TF1 takes as the vector's length.
"""
from __future__ import annotations

import math

import keras
from keras import layers
import tensorflow as tf

from kdseg.models.layers import AtrousConv2D


class FullWidthGlorotUniform(keras.initializers.Initializer):
  """Glorot-uniform draws with the fans of a convolution `full_width` outputs wide, for a head
  holding some of those outputs: kernels [k, k, in, n] use fan_in k*k*in and fan_out
  k*k*full_width; biases [n] use full_width for both fans, as TF1's glorot_uniform_initializer
  on a vector of length full_width."""

  def __init__(self, full_width: int, seed=None):
    self.full_width = int(full_width)
    self.seed = seed

  def __call__(self, shape, dtype=None):
    if len(shape) == 4:
      receptive = shape[0] * shape[1]
      fan_in, fan_out = receptive * shape[2], receptive * self.full_width
    else:
      fan_in = fan_out = self.full_width
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit, seed=self.seed)(shape, dtype)

  def get_config(self):
    return {"full_width": self.full_width, "seed": self.seed}


class IncrementalClassifier(keras.layers.Layer):
  """[B, h, w, F] features -> [B, h, w, sum(classes_per_step)] logits."""

  def __init__(self, classes_per_step: list[int], kernel_size: int = 1, dilation_rate: int = 1,
               full_width: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.classes_per_step = list(classes_per_step)
    initializers = {}
    if full_width:
      initializers = {"kernel_initializer": FullWidthGlorotUniform(full_width),
                      "bias_initializer": FullWidthGlorotUniform(full_width)}
    # Named attributes, not a list: tf.train.Checkpoint does not see Keras 3 layers in lists.
    for step, count in enumerate(self.classes_per_step):
      setattr(self, f"head_{step}", AtrousConv2D(count, kernel_size, padding="same",
                                                 dilation_rate=dilation_rate, name=f"head_{step}",
                                                 **initializers))

  @property
  def heads(self) -> list[layers.Conv2D]:
    return [getattr(self, f"head_{step}") for step in range(len(self.classes_per_step))]

  @property
  def branches(self) -> list["IncrementalClassifier"]:
    return [self]

  def call(self, features):
    return tf.concat([head(features) for head in self.heads], axis=-1)


def v2_aspp_rates(output_stride: int) -> tuple[int, ...]:
  """DeepLab-v2's ASPP-L rates (6, 12, 18, 24) at output stride 8; halved at output stride 16."""
  return (6, 12, 18, 24) if output_stride <= 8 else (3, 6, 9, 12)


class AsppClassifier(keras.layers.Layer):
  """DeepLab-v2 ASPP (KD paper §4.1): four dilated 3x3 incremental classifiers on the encoder
  output, summed into the logits. `call` returns (logits, branches stacked on axis -2) so that
  L_dec (KD paper Eq. 7) can compare the four branch outputs."""

  def __init__(self, classes_per_step: list[int], output_stride: int = 8,
               full_width: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.classes_per_step = list(classes_per_step)
    self.rates = v2_aspp_rates(output_stride)
    for index, rate in enumerate(self.rates):
      setattr(self, f"branch_{index}", IncrementalClassifier(
          classes_per_step, kernel_size=3, dilation_rate=rate, full_width=full_width,
          name=f"branch_{index}"))

  @property
  def branches(self) -> list[IncrementalClassifier]:
    return [getattr(self, f"branch_{index}") for index in range(len(self.rates))]

  def call(self, features):
    scores = [branch(features) for branch in self.branches]
    return tf.add_n(scores), tf.stack(scores, axis=-2)


def init_new_head_from_background(classifier) -> None:
  """MiB Eq. 10-11 as the reference codes it (spec §3), for the last head.

  Every new class copies the background weights of head 0, and its bias, like the background's
  own bias, becomes b_bg - log(|new| + 1): the old background probability is spread evenly over
  background and the new classes, and old-class probabilities are unchanged. With several summed
  branches (DeepLab-v2) each branch's biases shift by log(|new| + 1) / branches, so the summed
  logits shift by exactly log(|new| + 1).
  """
  branches = classifier.branches
  num_new = classifier.classes_per_step[-1]
  shift = math.log(num_new + 1) / len(branches)
  for branch in branches:
    background, new_head = branch.heads[0], branch.heads[-1]
    kernel_bg = background.kernel[..., :1]
    bias_bg = background.bias[0] - shift
    new_head.kernel.assign(tf.tile(kernel_bg, [1, 1, 1, num_new]))
    new_head.bias.assign(tf.fill([num_new], bias_bg))
    background.bias.assign(tf.tensor_scatter_nd_update(background.bias, [[0]], [bias_bg]))


# Method.init -> how the newest head starts (random = the Conv2D's own initialiser).
HEAD_INITIALIZERS = {
    "random": lambda classifier: None,
    "background": init_new_head_from_background,
}
