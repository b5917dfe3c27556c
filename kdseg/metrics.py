"""Segmentation metrics from a confusion matrix, as the MiB reference computes them (spec §5).

confusion[g, p] counts pixels with ground truth g predicted as p (255 dropped before counting).
Means are over classes present in the ground truth only; absent classes are reported as None
("X" in tables), never as 0.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL

EPS = 1e-6


def confusion_update(labels: tf.Tensor, predictions: tf.Tensor, num_classes: int) -> tf.Tensor:
  """[C, C] int64 counts for one batch; labels 255 (and any id >= C) are dropped."""
  labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
  predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
  valid = (labels != IGNORE_LABEL) & (labels < num_classes)
  index = tf.boolean_mask(labels * num_classes + predictions, valid)
  counts = tf.math.bincount(index, minlength=num_classes * num_classes,
                            maxlength=num_classes * num_classes, dtype=tf.int64)
  return tf.reshape(counts, [num_classes, num_classes])


@dataclasses.dataclass(frozen=True)
class Scores:
  """Per-class and mean scores; per-class lists hold None for classes absent from ground truth."""
  overall_accuracy: float
  mean_accuracy: float
  mean_iou: float
  class_iou: list[float | None]
  class_accuracy: list[float | None]

  def mean_iou_of(self, class_ids) -> float | None:
    """mIoU over the given ids, present classes only; None if none is present."""
    values = [self.class_iou[c] for c in class_ids if self.class_iou[c] is not None]
    return float(np.mean(values)) if values else None


def scores(confusion: np.ndarray) -> Scores:
  confusion = np.asarray(confusion, np.float64)
  diag, rows, cols = np.diag(confusion), confusion.sum(1), confusion.sum(0)
  present = rows > 0
  iou = diag / (rows + cols - diag + EPS)
  accuracy = diag / (rows + EPS)
  total = confusion.sum()

  def masked(values):
    return [float(v) if p else None for v, p in zip(values, present)]

  return Scores(
      overall_accuracy=float(diag.sum() / total) if total else 0.0,
      mean_accuracy=float(accuracy[present].mean()) if present.any() else 0.0,
      mean_iou=float(iou[present].mean()) if present.any() else 0.0,
      class_iou=masked(iou), class_accuracy=masked(accuracy))
