"""Distillation terms between the frozen model of step t-1 and the model being trained.

Convention: y_true = the old model's endpoint (e.g. logits [B, H, W, C_old]), y_pred = the new
model's (logits [B, H, W, C_t], C_t >= C_old). Per-pixel values from `call`, reduced by Keras'
"sum_over_batch_size" = mean over all pixels (spec §2).
"""
from __future__ import annotations

import keras
import tensorflow as tf


class _OutputDistillation(keras.losses.Loss):
  """Shared part of the output-distillation terms: targets softmax(alpha * z_old), mean over all
  pixels of the per-pixel values returned by `call`."""

  def __init__(self, alpha: float = 1.0, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    self.alpha = float(alpha)

  def _targets(self, old_logits):
    return tf.nn.softmax(self.alpha * old_logits, axis=-1)


class UnbiasedKnowledgeDistillation(_OutputDistillation):
  """MiB unbiased distillation (Eq. 9; spec §2).

  The old model's background is compared with the new probability of background OR any new class:
    den = logsumexp(z),  log q(bg) = logsumexp(z[..., {0} ∪ [C_old, C_t)]) - den,
    log q(c) = z_c - den for old classes 1..C_old-1,  t = softmax(alpha * z_old),
    per pixel: -(t_0 log q(bg) + sum_{c=1}^{C_old-1} t_c log q(c)) / C_old.
  """

  def call(self, y_true, y_pred):
    old = y_true.shape[-1]
    targets = self._targets(y_true)
    log_partition = tf.reduce_logsumexp(y_pred, axis=-1, keepdims=True)
    background_or_new = tf.concat([y_pred[..., :1], y_pred[..., old:]], axis=-1)
    log_background = tf.reduce_logsumexp(background_or_new, axis=-1, keepdims=True)
    log_q = tf.concat([log_background, y_pred[..., 1:old]], axis=-1) - log_partition
    return -tf.reduce_sum(targets * log_q, axis=-1) / old


class KnowledgeDistillation(_OutputDistillation):
  """Standard output distillation of LwF / ILT (MiB Eq. 7-8; spec §2).

  The first C_old new logits are re-normalised among themselves (log_softmax over the old
  classes, MiB Eq. 8); targets t = softmax(alpha * z_old); per pixel -sum_c t_c log p_c / C_old
  (the reference takes the mean over the C_old classes).
  """

  def call(self, y_true, y_pred):
    old = y_true.shape[-1]
    targets = self._targets(y_true)
    log_probs = tf.nn.log_softmax(y_pred[..., :old], axis=-1)
    return -tf.reduce_mean(targets * log_probs, axis=-1)


class FeatureDistillation(keras.losses.MeanSquaredError):
  """ILT's feature term (spec §2): mean squared error over all elements between the old and new
  encoder outputs [B, h, w, F]. Keras' MSE averages over F, then over B*h*w: the same mean."""

  def __init__(self, name: str | None = None):
    super().__init__(reduction="sum_over_batch_size", name=name)
