"""Distillation terms between the frozen model of step t-1 and the model being trained.

Convention: y_true = the old model's endpoint (e.g. logits [B, H, W, C_old]), y_pred = the new
model's (logits [B, H, W, C_t], C_t >= C_old; features of equal shapes). Where the new endpoint
has more channels than the old one (logits, DeepLab-v2's class-scoring ASPP branches) only the
first C_old channels -- the classes the old model knows -- are compared.

Output terms return per-pixel values from `call`; the MiB terms reduce by the mean over all pixels
(Keras "sum_over_batch_size", spec §2); the KD paper's L_cls takes the mean over the pixels selected
by `sample_weight` (see `pixel_selection`, spec §6). Feature terms return one value per image (or
per Gram-matrix row for SPKD), averaged over the batch; none of them grows with the feature map's
size by default (FeatureDistance, SimilarityPreservingDistillation).
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL, UNLABELED

# Which pixels the KD paper's L_cls (and, optionally, its CE) averages over (spec §6), selected
# from the step's labels.
PIXEL_SELECTIONS = ("all", "valid", "old", "old+bg", "new", "objects")


def pixel_selection(labels: tf.Tensor, selection: str, old_classes: int) -> tf.Tensor:
  """float32 [B, H, W] mask of the pixels a distillation term is averaged over.

  all: every pixel; valid: label != 255; old: labels of old object classes (1..C_old-1,
  background excluded); old+bg: labels < C_old (old classes or background); new: labels of the
  step's new classes (>= C_old); objects: labels of old or new object classes (background and
  255 excluded). Weak labels' unlabeled pixels (254) are in the image: valid and all hold them,
  the selections by class do not.
  """
  labels = tf.cast(labels, tf.int32)
  if selection == "all":
    mask = tf.ones_like(labels, dtype=tf.bool)
  elif selection == "valid":
    mask = tf.not_equal(labels, IGNORE_LABEL)
  elif selection == "old":
    mask = (labels >= 1) & (labels < old_classes)
  elif selection == "old+bg":
    mask = labels < old_classes
  elif selection == "new":
    mask = (labels >= old_classes) & (labels < UNLABELED)
  elif selection == "objects":
    mask = (labels >= 1) & (labels < UNLABELED)
  else:
    raise ValueError(f"pixel selection {selection!r}; choose one of {PIXEL_SELECTIONS}")
  return tf.cast(mask, tf.float32)


class _OutputDistillation(keras.losses.Loss):
  """Shared part of the MiB output-distillation terms: targets softmax(alpha * z_old), mean over
  all pixels of the per-pixel values returned by `call`."""

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


class OutputDistillation(keras.losses.Loss):
  """KD paper L_cls (Eq. 3) and, with temperature T, L_cls-T (Eq. 4-5); spec §6.

  Per pixel: -sum_{c in S_{k-1}} softmax(z_old / T)_c * log softmax(z / T)_c, where the new
  softmax runs over ALL C_t current classes (unlike MiB's KD, no re-normalisation over the old
  ones) and the sum over the C_old old classes. No T^2 factor, as printed. The mean is over the
  pixels weighted by `sample_weight` (a `pixel_selection` mask; the trainer passes the valid
  pixels by default); an empty selection gives 0. Without sample_weight: mean over all pixels.
  """

  def __init__(self, temperature: float = 1.0, name: str | None = None):
    super().__init__(name=name, reduction="mean_with_sample_weight")
    if temperature <= 0:
      raise ValueError(f"temperature must be positive, got {temperature}")
    self.temperature = float(temperature)

  def call(self, y_true, y_pred):
    old = y_true.shape[-1]
    targets = tf.nn.softmax(y_true / self.temperature, axis=-1)
    log_probs = tf.nn.log_softmax(y_pred / self.temperature, axis=-1)[..., :old]
    return -tf.reduce_sum(targets * log_probs, axis=-1)


class SigmoidDistillation(keras.losses.Loss):
  """LwF-MC's distillation term (spec §2): BCE-with-logits of the first C_old new logits against
  the old model's sigmoids, mean over all elements, times C_old (the reference's way to sum, not
  average, the per-class contributions). Per pixel: sum_{c < C_old} BCE(z_c, sigmoid(z_old_c)).
  """

  def __init__(self, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")

  def call(self, y_true, y_pred):
    old = y_true.shape[-1]
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.sigmoid(y_true), logits=y_pred[..., :old]), axis=-1)


FEATURE_NORMALISATIONS = ("mean", "frobenius")


class FeatureDistance(keras.losses.Loss):
  """Squared L2 distance between old and new feature maps: ILT's feature term, the KD paper's
  L_enc (Eq. 6) and L_dec (Eq. 7); spec §2, §6.

  normalisation="mean" (default): the mean over all elements, B*h*w*F -- MiB's ILT term
    (nn.MSELoss) and the KD paper's own conference code for L_enc (LTTM/IL-SemSegm LD2:
    tf.losses.mean_squared_error, lambda 50). It does not grow with the feature size, so a
    weight tuned on small maps transfers to 41x41x2048 ones.
  normalisation="frobenius": Eq. 6 as printed, ||old - new||_F^2 per image (the sum over its
    h*w*F elements), averaged over images; h*w*F times the mean (3.4 million at 41x41x2048).
  branch_axis (L_dec): the ASPP branches are stacked on that axis; "mean" then averages over
  every branch's elements (= the per-branch means averaged over branches), "frobenius" sums
  each image's branches and divides by their number (4 on DeepLab-v2), as Eq. 7 prints.
  Where the new map has more channels (class-scoring branches) only the first C_old compare.
  y_true: old features [B, h, w, (branches,) F_old]; y_pred: new ones, F >= F_old.
  """

  def __init__(self, normalisation: str = "mean", branch_axis: int | None = None,
               name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    if normalisation not in FEATURE_NORMALISATIONS:
      raise ValueError(f"normalisation={normalisation!r}; choose one of "
                       f"{FEATURE_NORMALISATIONS}")
    self.normalisation = normalisation
    self.branch_axis = branch_axis

  def call(self, y_true, y_pred):
    difference = tf.square(y_pred[..., :y_true.shape[-1]] - y_true)
    per_image = tf.reshape(difference, [tf.shape(difference)[0], -1])
    if self.normalisation == "mean":
      return tf.reduce_mean(per_image, axis=-1)   # the Keras mean over B completes the mean
    per_image = tf.reduce_sum(per_image, axis=-1)
    if self.branch_axis is not None:
      per_image = per_image / y_true.shape[self.branch_axis]
    return per_image


SPKD_DIVISORS = ("batch", "batch_squared")


class SimilarityPreservingDistillation(keras.losses.Loss):
  """KD paper SPKD (Eq. 8) and SPKD-avg (Eq. 9, `spatial_sum=True`); spec §6.

  Each image's features [h, w, F] become one vector (flattened, or summed over h x w for -avg);
  A = row-L2-normalised Gram matrix of the batch (B x B); loss = ||A_new - A_old||_F^2 / B as
  printed in the paper, or / B^2 as in the original SPKD (`divide_by="batch_squared"`).
  `call` returns each Gram row's squared error (divided by B for B^2); the Keras mean over the B
  rows supplies the first 1/B. Under tf.distribute the Gram matrix is per replica batch.
  Size: every row of A has unit L2 norm, so a row's squared error lies in [0, 4] whatever
  h x w x F is, and "/ B" (the mean over rows) keeps the term in [0, 4] for any batch size too:
  the printed Eq. 8 is already size-independent (no reference code exists to follow), whereas
  "/ B^2" shrinks with the batch.
  """

  def __init__(self, spatial_sum: bool = False, divide_by: str = "batch",
               name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    if divide_by not in SPKD_DIVISORS:
      raise ValueError(f"divide_by={divide_by!r}; choose one of {SPKD_DIVISORS}")
    self.spatial_sum = spatial_sum
    self.divide_by = divide_by

  def _similarity(self, features):
    if self.spatial_sum:
      vectors = tf.reduce_sum(features, axis=[1, 2])
    else:
      vectors = tf.reshape(features, [tf.shape(features)[0], -1])
    gram = tf.matmul(vectors, vectors, transpose_b=True)
    return tf.math.l2_normalize(gram, axis=1)

  def call(self, y_true, y_pred):
    rows = tf.reduce_sum(tf.square(self._similarity(y_pred) - self._similarity(y_true)), axis=1)
    if self.divide_by == "batch_squared":
      rows = rows / tf.cast(tf.shape(rows)[0], rows.dtype)
    return rows


POD_PARTS = ("features", "logits")
POD_SCALES = (1, 2, 4)   # CVPR2021_PLOP argparser.py: --spp_scales default


def _local_pod_squares(difference: tf.Tensor, scales=POD_SCALES) -> tf.Tensor:
  """[B, H, W, C] -> [B]: the sum of squares of `difference`'s local POD embedding.

  Local POD (CVPR2021_PLOP train.py:979-1014, _local_pod): at each scale s the map is cut into
  s x s regions of side k = W // s (rows too are cut with the width's k, as the code does;
  rows and columns beyond s * k are left out) and each region is pooled to its per-row means
  over the region's columns and its per-column means over the region's rows. Pooling is linear,
  so pooling the difference of two maps is the difference of their embeddings; the order of the
  embedding does not matter to its norm. A region cut short by the map's bottom (H < s * k)
  averages the rows it has; the reference divides an empty one (or every one of a scale finer
  than the map, k = 0) by zero and stops on the NaN, here it adds nothing.
  """
  shape = tf.shape(difference)
  height, width, channels = shape[1], shape[2], difference.shape[-1]
  total = tf.zeros([shape[0]], difference.dtype)
  for scale in scales:
    side = width // scale
    columns = scale * side
    rows = tf.minimum(height, columns)
    region = difference[:, :rows, :columns, :]
    per_row = tf.reduce_mean(tf.reshape(region, [shape[0], rows, scale, side, channels]),
                             axis=3)
    per_column = tf.math.segment_mean(tf.transpose(region, [1, 0, 2, 3]),
                                      tf.range(rows) // side)
    total += (tf.reduce_sum(tf.square(per_row), axis=[1, 2, 3]) +
              tf.reduce_sum(tf.square(per_column), axis=[0, 2, 3]))
  return total


def _norm(squares: tf.Tensor) -> tf.Tensor:
  """sqrt with a zero gradient at zero, as torch.frobenius_norm's backward."""
  positive = squares > 0
  return tf.where(positive, tf.sqrt(tf.where(positive, squares, tf.ones_like(squares))), 0.0)


class LocalPOD(keras.losses.Loss):
  """PLOP's Local POD (Douillard et al., CVPR 2021, Eq. 2-4) as CVPR2021_PLOP train.py:716-972
  (features_distillation) runs it with PLOP's options (argparser.py:49-57).

  y_true / y_pred: the old / new model's "pod" endpoint, {"features": [stage outputs before
  their activation..., decoder features], "logits": logits before upsampling}. part="features"
  compares the feature maps, part="logits" the logits, the new model's background channel
  holding the sum of its background and new-class logits ("extra_channels": "sum"). Per map:
  each value squared ("pow"), local POD embedding at scales 1, 2, 4, and the L2 norm (not
  squared) of the old-minus-new embedding, per image. The sum over maps is multiplied by
  sqrt(C_t / C_new) (the "pod schedule": classes after the step over the step's new classes,
  from the logits' widths) and divided by `num_layers`, the number of maps both parts compare
  together (the reference divides by the length of its list: 6 with --pod_logits, 5 without).
  The term's weight is the reference's factor of that part (pod_factor 0.01 for the features,
  0.0005 for the logits on VOC). Returns [B]; Keras' mean over B is the reference's mean.
  """

  def __init__(self, part: str, num_layers: int, scales=POD_SCALES, name: str | None = None):
    super().__init__(name=name, reduction="sum_over_batch_size")
    if part not in POD_PARTS:
      raise ValueError(f"part={part!r}; choose one of {POD_PARTS}")
    self.part, self.num_layers, self.scales = part, num_layers, tuple(scales)

  def call(self, y_true, y_pred):
    old_classes, classes = y_true["logits"].shape[-1], y_pred["logits"].shape[-1]
    if classes <= old_classes:
      raise ValueError(
          f"POD's schedule needs the step's new classes: the new model has {classes} outputs, "
          f"the old one {old_classes} (a classifier built for every step at once, "
          "--classifier=full, has none).")
    if self.part == "features":
      pairs = list(zip(y_true["features"], y_pred["features"]))
    else:
      new = y_pred["logits"]
      background = new[..., :1] + tf.reduce_sum(new[..., old_classes:], axis=-1, keepdims=True)
      pairs = [(y_true["logits"], tf.concat([background, new[..., 1:old_classes]], axis=-1))]
    per_image = tf.add_n([_norm(_local_pod_squares(tf.square(old) - tf.square(new),
                                                   self.scales))
                          for old, new in pairs])
    return per_image * math.sqrt(classes / (classes - old_classes)) / self.num_layers
