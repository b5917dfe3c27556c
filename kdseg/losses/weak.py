"""Supervised losses for weak labels: points and scribbles (MiB paper §5, Eq. 12-14).

Label maps of weak supervision hold a class id on annotated pixels, UNLABELED (254) on the image's
other pixels and IGNORE_LABEL (255) on void ones (augmentation padding): void pixels count in no
term. For an image x with annotated pixels I_S, unlabeled pixels I_u and softmax q:

  PCE      l_PCE(x) = -1/|I_S| sum_{i in I_S} log q(i, y_i)                               (Eq. 12)
  UNL      l_UNL(x) = l_PCE(x) - gamma/|I_u| sum_{i in I_u} log sum_{c in U_x} q(i, c)     (Eq. 13)
  PCE+bkg  the same with U_x = {background} (the paper's control, §6.3.1)

and the training objective is the mean over images (Eq. 14): each image is its own mean over its
pixels, then images are averaged (an image without annotated -- or without unlabeled -- pixels in
its crop contributes 0 to that term). U_x, the classes the image's annotation holds, arrives with
the labels as a multi-hot [B, C] vector computed from the whole image's annotation before
cropping (kdseg.data.pipeline), background included for object segmentation and never for scene
parsing. The paper gives no gamma; the default 1.

Incremental steps (old_classes > 1): as the unbiased cross-entropy (MiB Eq. 5), the background
column is background OR an old class, log q(bg) = logsumexp(z_old) - logsumexp(z); a point of an
old class (relabelled background) counts as background.

All losses take y_true {"labels": [B, H, W], "classes": [B, C]} (PartialCrossEntropy also a bare
label map) and y_pred [B, H, W, C] logits, return per-image values [B], and reduce by Keras'
"sum_over_batch_size" (the mean over images; divided by the replicas under tf.distribute).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL, UNLABELED

PRIORS = ("image", "background")


def _merged(labels: tf.Tensor, logits: tf.Tensor, old_classes: int):
  """(labels, log-probabilities) with classes [0, old_classes) merged into column 0."""
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  if old_classes <= 1:
    return labels, log_probs
  background = tf.reduce_logsumexp(log_probs[..., :old_classes], axis=-1, keepdims=True)
  merged = tf.concat([background, log_probs[..., old_classes:]], axis=-1)
  annotated = labels < UNLABELED
  labels = tf.where(annotated & (labels < old_classes), tf.zeros_like(labels),
                    tf.where(annotated, labels - old_classes + 1, labels))
  return labels, merged


def _merged_classes(classes: tf.Tensor, old_classes: int) -> tf.Tensor:
  if old_classes <= 1:
    return classes
  return tf.concat([tf.reduce_max(classes[:, :old_classes], axis=-1, keepdims=True),
                    classes[:, old_classes:]], axis=-1)


def _image_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """[B, H, W] values, [B, H, W] bool -> [B] mean over each image's masked pixels (0 if none)."""
  mask = tf.cast(mask, values.dtype)
  total = tf.reduce_sum(tf.where(mask > 0, values, tf.zeros_like(values)), axis=[1, 2])
  return total / tf.maximum(tf.reduce_sum(mask, axis=[1, 2]), 1.0)


def _split(y_true):
  if isinstance(y_true, dict):
    return tf.cast(y_true["labels"], tf.int32), tf.cast(y_true["classes"], tf.float32)
  return tf.cast(y_true, tf.int32), None


class PartialCrossEntropy(keras.losses.Loss):
  """PCE (MiB paper Eq. 12; Bearman et al.'s point loss): cross-entropy on annotated pixels
  only, each image's mean over its annotated pixels, then the mean over images (Eq. 14)."""

  def __init__(self, old_classes: int = 0, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    self.old_classes = int(old_classes)

  def partial_cross_entropy(self, labels, log_probs):
    annotated = labels < UNLABELED
    safe = tf.where(annotated, labels, tf.zeros_like(labels))
    nll = -tf.gather(log_probs, safe, batch_dims=3)
    return _image_mean(nll, annotated)

  def call(self, y_true, y_pred):
    labels, _ = _split(y_true)
    labels, log_probs = _merged(labels, y_pred, self.old_classes)
    return self.partial_cross_entropy(labels, log_probs)


class UnlabeledPriorLoss(PartialCrossEntropy):
  """MiB's loss for weak labels, l_UNL (Eq. 13): PCE plus, on each unlabeled pixel, minus the log
  of the summed probability of the classes U_x in the image's annotation, weighted by gamma and
  averaged over the image's unlabeled pixels. prior="background" is PCE+bkg: U_x = {background}.
  An image whose U_x is empty (scene parsing without points) adds nothing to the prior term."""

  def __init__(self, gamma: float = 1.0, prior: str = "image", old_classes: int = 0,
               name: str | None = None):
    if prior not in PRIORS:
      raise ValueError(f"prior={prior!r}; choose one of {PRIORS}")
    super().__init__(old_classes, name=name)
    self.gamma = float(gamma)
    self.prior = prior

  def call(self, y_true, y_pred):
    labels, classes = _split(y_true)
    labels, log_probs = _merged(labels, y_pred, self.old_classes)
    if self.prior == "background":
      allowed = tf.one_hot(tf.zeros([tf.shape(log_probs)[0]], tf.int32), tf.shape(log_probs)[-1])
    else:
      allowed = _merged_classes(classes, self.old_classes)
    allowed = allowed[:, None, None, :] > 0
    masked = tf.where(allowed, log_probs, tf.fill(tf.shape(log_probs), -1e30))
    prior_nll = -tf.reduce_logsumexp(masked, axis=-1)
    has_prior = tf.reduce_any(allowed, axis=[1, 2, 3])
    unlabeled = tf.equal(labels, UNLABELED) & has_prior[:, None, None]
    return (self.partial_cross_entropy(labels, log_probs)
            + self.gamma * _image_mean(prior_nll, unlabeled))


class ImageLevelLoss(keras.losses.Loss):
  """Bearman et al.'s image-level loss (ECCV 2016, Eq. 2), the "Img Lvl" baseline of the MiB
  paper's Table 5: with t_l the image's pixel most confident in class l,

    l_img(x) = -1/|L| sum_{l in L} log q(t_l, l) - 1/|L'| sum_{l in L'} log(1 - q(t_l, l)),

  L the classes U_x of the image, L' the step's other classes; void pixels are no candidates.
  with_points adds PCE ("Img Lvl + PCE"). The objectness prior of Bearman et al. needs a model
  trained on outside data and is not part of kdseg."""

  def __init__(self, with_points: bool = False, old_classes: int = 0, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    self.with_points = with_points
    self.pce = PartialCrossEntropy(old_classes)
    self.old_classes = int(old_classes)

  def call(self, y_true, y_pred):
    labels, classes = _split(y_true)
    labels, log_probs = _merged(labels, y_pred, self.old_classes)
    present = _merged_classes(classes, self.old_classes) > 0
    inside = tf.not_equal(labels, IGNORE_LABEL)[..., None]
    # log max_i q(i, l) = max_i log q(i, l): the softmax probability at t_l, in log space.
    best = tf.reduce_max(tf.where(inside, log_probs, tf.fill(tf.shape(log_probs), -1e30)),
                         axis=[1, 2])
    # log(1 - q) from log q without cancellation: log(-expm1(log q)), q kept below 1.
    absent_nll = -tf.math.log(-tf.math.expm1(tf.minimum(best, -1e-7)))

    def mean(values, mask):
      mask = tf.cast(mask, values.dtype)
      return tf.reduce_sum(values * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, -1), 1.0)

    loss = mean(-best, present) + mean(absent_nll, ~present)
    if self.with_points:
      loss += self.pce.partial_cross_entropy(labels, log_probs)
    return loss


WEAK_LOSSES = ("pce", "pce-bkg", "unl", "img-lvl", "img-lvl+pce")


def weak_loss(name: str, gamma: float = 1.0, old_classes: int = 0) -> keras.losses.Loss:
  """The supervised loss --weak_loss names (MiB paper Tables 5-7 rows)."""
  builders = {
      "pce": lambda: PartialCrossEntropy(old_classes, name="pce"),
      "pce-bkg": lambda: UnlabeledPriorLoss(gamma, "background", old_classes, name="pce_bkg"),
      "unl": lambda: UnlabeledPriorLoss(gamma, "image", old_classes, name="unl"),
      "img-lvl": lambda: ImageLevelLoss(False, old_classes, name="img_lvl"),
      "img-lvl+pce": lambda: ImageLevelLoss(True, old_classes, name="img_lvl_pce"),
  }
  if name not in builders:
    raise ValueError(f"--weak_loss={name!r} is unknown; choose one of {', '.join(WEAK_LOSSES)}.")
  return builders[name]()
