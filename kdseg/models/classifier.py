"""Incremental classifier: one 1x1 convolution per learning step, logits concatenated.

Head 0 predicts background + the step-0 classes; head t predicts the classes new at step t.
"""
from __future__ import annotations

import math

import keras
from keras import layers
import tensorflow as tf


class IncrementalClassifier(keras.layers.Layer):
  """[B, h, w, F] features -> [B, h, w, sum(classes_per_step)] logits."""

  def __init__(self, classes_per_step: list[int], **kwargs):
    super().__init__(**kwargs)
    self.classes_per_step = list(classes_per_step)
    # Named attributes, not a list: tf.train.Checkpoint does not see Keras 3 layers in lists.
    for step, count in enumerate(self.classes_per_step):
      setattr(self, f"head_{step}", layers.Conv2D(count, 1, name=f"head_{step}"))

  @property
  def heads(self) -> list[layers.Conv2D]:
    return [getattr(self, f"head_{step}") for step in range(len(self.classes_per_step))]

  def call(self, features):
    return tf.concat([head(features) for head in self.heads], axis=-1)


def init_new_head_from_background(classifier: IncrementalClassifier) -> None:
  """MiB Eq. 10-11 as the reference codes it (spec §3), for the last head.

  Every new class copies the background weights of head 0, and its bias, like the background's
  own bias, becomes b_bg - log(|new| + 1): the old background probability is spread evenly over
  background and the new classes, and old-class probabilities are unchanged.
  """
  background, new_head = classifier.heads[0], classifier.heads[-1]
  num_new = classifier.classes_per_step[-1]
  kernel_bg = background.kernel[..., :1]
  bias_bg = background.bias[0] - math.log(num_new + 1)
  new_head.kernel.assign(tf.tile(kernel_bg, [1, 1, 1, num_new]))
  new_head.bias.assign(tf.fill([num_new], bias_bg))
  background.bias.assign(tf.tensor_scatter_nd_update(background.bias, [[0]], [bias_bg]))


# Method.init -> how the newest head starts (random = the Conv2D's own initialiser).
HEAD_INITIALIZERS = {
    "random": lambda classifier: None,
    "background": init_new_head_from_background,
}
