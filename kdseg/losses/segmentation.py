"""Supervised per-pixel losses on the current step's labels.

Every class here returns per-pixel losses [B, H, W] from `call` and reduces with a built-in Keras
reduction:
  pixel_mean="all"    mean over all B*H*W pixels, ignored ones counting 0 (MiB reference, spec §2);
  pixel_mean="valid"  mean over non-ignored pixels only (KD paper, spec §6): Keras'
                      "mean_with_sample_weight" reduction with the valid-pixel mask as weight
                      (an all-ignored batch gives 0, not NaN).
Under tf.distribute Keras divides the reduced value by the number of replicas, so summing replica
losses gives the global mean.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL

PIXEL_MEANS = ("all", "valid")


class _PixelLoss(keras.losses.Loss):

  def __init__(self, pixel_mean: str = "all", name: str | None = None):
    if pixel_mean not in PIXEL_MEANS:
      raise ValueError(f"pixel_mean={pixel_mean!r}; choose one of {PIXEL_MEANS}")
    reduction = "sum_over_batch_size" if pixel_mean == "all" else "mean_with_sample_weight"
    super().__init__(name=name, reduction=reduction)
    self.pixel_mean = pixel_mean

  def __call__(self, y_true, y_pred, sample_weight=None):
    if self.pixel_mean == "valid" and sample_weight is None:
      sample_weight = tf.cast(tf.not_equal(tf.cast(y_true, tf.int32), IGNORE_LABEL), tf.float32)
    return super().__call__(y_true, y_pred, sample_weight=sample_weight)

  @staticmethod
  def _finish(per_pixel: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    return tf.where(valid, per_pixel, tf.zeros_like(per_pixel))


def _labels_and_valid(y_true: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  labels = tf.cast(y_true, tf.int32)  # Keras' __call__ hands labels over as float32
  valid = tf.not_equal(labels, IGNORE_LABEL)
  return tf.where(valid, labels, tf.zeros_like(labels)), valid


class CrossEntropy(_PixelLoss):
  """Cross-entropy over all C_t classes with ignore 255 (KD paper Eq. 2, MiB Eq. 4).

  y_true: [B, H, W] labels (255 = ignore); y_pred: [B, H, W, C_t] float32 logits.
  Per pixel: -log softmax(z)[y].
  """

  def call(self, y_true, y_pred):
    labels, valid = _labels_and_valid(y_true)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=y_pred)
    return self._finish(per_pixel, valid)


class UnbiasedCrossEntropy(_PixelLoss):
  """MiB unbiased cross-entropy (Eq. 5-6; spec §2), for steps with C_old > 0 known classes.

  Background's probability is that of background OR any old class:
    log p(bg) = logsumexp(z[..., :C_old]) - logsumexp(z),  log p(c) = z_c - logsumexp(z), c >= C_old.
  Labels < C_old (background, and old classes if any remain) count as background.
  y_true: [B, H, W] labels; y_pred: [B, H, W, C_t] logits; returns per-pixel NLL [B, H, W].
  With old_classes <= 1 (only background known) this equals CrossEntropy.
  """

  def __init__(self, old_classes: int, pixel_mean: str = "all", name: str | None = None):
    super().__init__(pixel_mean=pixel_mean, name=name)
    self.old_classes = int(old_classes)

  def call(self, y_true, y_pred):
    labels, valid = _labels_and_valid(y_true)
    old = self.old_classes
    log_partition = tf.reduce_logsumexp(y_pred, axis=-1, keepdims=True)
    log_background = tf.reduce_logsumexp(y_pred[..., :old], axis=-1, keepdims=True)
    # Column 0: background-or-old; column k >= 1: the class with id old + k - 1.
    log_probs = tf.concat([log_background, y_pred[..., old:]], axis=-1) - log_partition
    column = tf.where(labels < old, tf.zeros_like(labels), labels - old + 1)
    per_pixel = -tf.gather(log_probs, column, batch_dims=3)
    return self._finish(per_pixel, valid)


class BinaryCrossEntropy(_PixelLoss):
  """LwF-MC's classification term (iCaRL-style multi-label BCE; spec §2).

  Targets are the one-hot labels over all C_t channels (an ignored pixel has an all-zero row);
  per pixel the BCE-with-logits is summed over classes. pixel_mean="all" (default) is what the
  MiB trainer runs: the loss built with reduction 'none' (per-pixel sum times "row is not all
  zero"), then `.mean()` over all pixels, ignored ones counting 0 (correction 2026-11-25).
  pixel_mean="valid" is the loss class's own 'mean' branch, the mean over labelled pixels only.
  y_true: [B, H, W] labels; y_pred: [B, H, W, C_t] logits.
  """

  def __init__(self, pixel_mean: str = "all", name: str | None = None):
    super().__init__(pixel_mean=pixel_mean, name=name)

  def call(self, y_true, y_pred):
    labels, valid = _labels_and_valid(y_true)
    targets = tf.one_hot(labels, tf.shape(y_pred)[-1]) * tf.cast(valid, y_pred.dtype)[..., None]
    per_pixel = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=y_pred), axis=-1)
    return self._finish(per_pixel, valid)


class OldTargetBinaryCrossEntropy(keras.losses.Loss):
  """LwF-MC's "disjoint" variant (spec §2), an option beside the default combined one.

  One BCE-with-logits over all C_t channels whose targets are the one-hot labels with the first
  C_old channels replaced by the old model's sigmoids (`keep_background`: channel 0 keeps the
  ground truth); per pixel summed over classes, mean over all pixels (every target row is
  non-zero, the old sigmoids being positive).
  y_true: {"labels": [B, H, W], "old": old logits [B, H, W, C_old]}; y_pred: [B, H, W, C_t].
  """

  def __init__(self, keep_background: bool = False, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    self.keep_background = keep_background

  def call(self, y_true, y_pred):
    labels, valid = _labels_and_valid(y_true["labels"])
    old_logits = y_true["old"]
    old, start = old_logits.shape[-1], int(self.keep_background)
    one_hot = tf.one_hot(labels, tf.shape(y_pred)[-1]) * tf.cast(valid, y_pred.dtype)[..., None]
    targets = tf.concat([one_hot[..., :start], tf.sigmoid(old_logits[..., start:]),
                         one_hot[..., old:]], axis=-1)
    return tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=y_pred), axis=-1)
