"""Evaluation: a streaming confusion matrix accumulated in-graph over a whole dataset."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from kdseg.metrics import confusion_update


def confusion_matrix(model, dataset: tf.data.Dataset, num_classes: int) -> np.ndarray:
  """[C, C] int64 confusion (rows ground truth) of `model` over `dataset` (images, labels)."""

  @tf.function
  def run():
    def accumulate(confusion, batch):
      images, labels = batch
      predictions = tf.argmax(model(images, training=False)["logits"], axis=-1)
      return confusion + confusion_update(labels, predictions, num_classes)
    return dataset.reduce(tf.zeros([num_classes, num_classes], tf.int64), accumulate)

  return run().numpy()
