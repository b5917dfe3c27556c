"""PLOP's entropy pseudo-labelling (Douillard et al., CVPR 2021, §3.2), as its code runs it.

Before a step >= 1 the old model goes once over the step's training batches; for every pixel
labelled background it votes its most likely old class c into a histogram of normalised
entropies (`entropy_histogram`), and `thresholds` turns each class's histogram into an entropy
threshold. During the step (`relabel`) a background-or-old pixel takes the old model's class
where its normalised entropy is below that class's threshold and is ignored (255) otherwise; the
supervised loss of each image is scaled by the share of such pixels that were kept (the
"adaptive factor"). Reference: arthurdouillard/CVPR2021_PLOP train.py:173-183 (before the step),
:224-289 (relabelling and the factor), :505-589 (find_median), :701-713 (entropy).

What the code computes, kept here (docs/METHODS.md lists it):
- entropy(p) = -(1 / log C_old) * mean_c p_c log(p_c + 1e-8): the mean over classes, not the sum,
  so it lies in [0, 1 / C_old]; it is then divided again, by log C_t (C_t: classes after the
  step, new ones included), both when binned and when compared with the thresholds.
- Histogram: 100 bins over [0, 1] of that value; the median of class c's histogram is found by a
  loop that adds each bin's *index* (not its count) to the running sum (train.py:564-571), and
  reads the bin at int(b / 100 * 100), which is b - 1 for some b (float rounding). The result
  can exceed 1 or be +-inf or NaN (a bin of zero count at the stop); it is then raised to the
  floor `threshold` (0.001) with Python's max (a NaN stays NaN: no pixel of that class is kept).
  rule="histogram" is the median the comment describes (cumulative counts), for comparison.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL

NUM_BINS = 100
MEDIAN_RULES = ("reference", "histogram")


def entropy(probabilities: tf.Tensor) -> tf.Tensor:
  """[..., C] probabilities -> [...] PLOP's normalised entropy (module docstring)."""
  classes = probabilities.shape[-1]
  factor = 1.0 / math.log(classes + 1e-8)
  return -factor * tf.reduce_mean(probabilities * tf.math.log(probabilities + 1e-8), axis=-1)


def max_entropy(num_classes: int) -> float:
  """The second divisor: log of the number of classes after the step (float32, as torch.log)."""
  return float(np.log(np.float32(num_classes)))


def _normalised_entropy(old_logits: tf.Tensor, num_classes: int):
  probabilities = tf.nn.softmax(old_logits, axis=-1)
  return (tf.argmax(probabilities, axis=-1, output_type=tf.int32),
          entropy(probabilities) / max_entropy(num_classes))


def entropy_histogram(old_logits: tf.Tensor, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Counts [num_classes, NUM_BINS] (int64) over the background pixels (label 0) of a batch:
  the old model's class x the bin of its normalised entropy (truncated, the last bin capped)."""
  predicted, value = _normalised_entropy(old_logits, num_classes)
  bins = tf.minimum(tf.cast(value * NUM_BINS, tf.int32), NUM_BINS - 1)
  background = tf.equal(tf.cast(labels, tf.int32), 0)
  cells = tf.boolean_mask(predicted * NUM_BINS + bins, background)
  counts = tf.math.bincount(cells, minlength=num_classes * NUM_BINS,
                            maxlength=num_classes * NUM_BINS, dtype=tf.int64)
  return tf.reshape(counts, [num_classes, NUM_BINS])


def _reference_median(counts: np.ndarray) -> np.float32:
  """train.py:560-576 for one class, in float32 where the reference computes in float32."""
  half = np.float32(counts.sum()) / np.float32(2)
  running_sum = 0.0
  for index in range(NUM_BINS):
    lower_border = index / NUM_BINS
    bin_index = int(lower_border * NUM_BINS)
    count = np.float32(counts[bin_index])
    if half >= np.float32(running_sum) and half <= np.float32(running_sum) + count:
      break
    running_sum += lower_border * NUM_BINS
  return (np.float32(lower_border) + ((half - np.float32(running_sum)) / count)
          * np.float32(1 / NUM_BINS))


def _histogram_median(counts: np.ndarray) -> np.float32:
  """The median of a histogram: the bin where the cumulative count reaches half, interpolated."""
  half = np.float32(counts.sum()) / np.float32(2)
  before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.float32)
  index = int(np.argmax(before + counts.astype(np.float32) >= half))
  return (np.float32(index / NUM_BINS) + (half - before[index]) / np.float32(counts[index])
          * np.float32(1 / NUM_BINS))


def thresholds(histogram: np.ndarray, floor: float = 0.001,
               rule: str = "reference") -> np.ndarray:
  """Per class, the median of its histogram raised to `floor` (float32; module docstring)."""
  if rule not in MEDIAN_RULES:
    raise ValueError(f"median rule {rule!r}; choose one of {', '.join(MEDIAN_RULES)}")
  median = _reference_median if rule == "reference" else _histogram_median
  result = np.zeros(len(histogram), np.float32)
  with np.errstate(divide="ignore", invalid="ignore"):
    for c, counts in enumerate(np.asarray(histogram, np.int64)):
      if counts.sum() > 0:
        result[c] = median(counts)
  floor32 = np.float32(floor)
  # Python's max(threshold, floor): the floor only where it compares greater (not for NaN).
  return np.where(floor32 > result, floor32, result).astype(np.float32)


def relabel(labels: tf.Tensor, old_logits: tf.Tensor, class_thresholds: tf.Tensor,
            num_classes: int, old_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
  """(labels with background-or-old pixels replaced by pseudo-labels or 255, the adaptive factor
  per image [B]). labels [B, H, W]; old_logits [B, H, W, C_old] at the labels' size."""
  labels = tf.cast(labels, tf.int32)
  predicted, value = _normalised_entropy(old_logits, num_classes)
  certain = value < tf.gather(class_thresholds, predicted)
  background = labels < old_classes     # 255 (ignored) is never below old_classes
  relabelled = tf.where(background, tf.where(certain, predicted, IGNORE_LABEL), labels)
  kept = tf.reduce_sum(tf.cast(certain & background, tf.float32), axis=[1, 2])
  total = tf.reduce_sum(tf.cast(background, tf.float32), axis=[1, 2])
  return relabelled, kept / (total + 1e-6)
