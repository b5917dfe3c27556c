"""Evaluation: test-time prediction options and a streaming confusion matrix over a dataset.

Test-time options (TestTime), each a flag of kdseg.train / kdseg.evaluate:
  scales  the image is resized by each factor, predicted, and the logits resized back; the
          KD paper's and DeepLab's multi-scale test uses 0.5-1.5 (default: 1 only)
  flip    also predict the horizontally flipped image and flip the result back
  merge   how the scales/flips combine: "mean" of the softmax probabilities, or "max" (the
          element-wise maximum, DeepLab-v2's multi-scale fusion)
  crf     dense-CRF post-processing of the merged probabilities (kdseg.engine.crf), or None
Full-resolution or center-crop evaluation is a property of the evaluation dataset
(kdseg.data.pipeline.eval_dataset).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from kdseg.data.pipeline import denormalize
from kdseg.engine.crf import DenseCRF, dense_crf
from kdseg.engine.progress import Eta
from kdseg.metrics import confusion_update

MERGES = ("mean", "max")


@dataclasses.dataclass(frozen=True)
class TestTime:
  """How predictions are made at test time (see the module docstring)."""
  __test__ = False  # not a pytest test class despite the name
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  merge: str = "mean"
  crf: DenseCRF | None = None

  def __post_init__(self):
    if self.merge not in MERGES:
      raise ValueError(f"--test_merge={self.merge!r}: choose one of {', '.join(MERGES)}.")
    if not self.scales or any(scale <= 0 for scale in self.scales):
      raise ValueError(f"--test_scales={list(self.scales)}: give positive factors, e.g. 0.5,1,1.5.")

  @property
  def tag(self) -> str:
    """Short name of the options, e.g. 'ms0.5-1-1.5+flip+max+crf5' ('single' for the default)."""
    parts = []
    if tuple(self.scales) != (1.0,):
      parts.append("ms" + "-".join(f"{scale:g}" for scale in self.scales))
    if self.flip:
      parts.append("flip")
    if len(self.scales) > 1 or self.flip:
      parts.append(self.merge)
    if self.crf is not None:
      parts.append(self.crf.tag)
    return "+".join(parts) or "single"


def predict_probabilities(model, images: tf.Tensor, test_time: TestTime = TestTime()) -> tf.Tensor:
  """[B, H, W, 3] normalised images -> [B, H, W, C] class probabilities under `test_time`."""
  size = tf.shape(images)[1:3]
  combined = None
  for scale in test_time.scales:
    scaled_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 1)
    scaled = images if scale == 1.0 else tf.image.resize(images, scaled_size, "bilinear")
    if test_time.flip:   # the image and its mirror in one batch: one forward pass per scale
      scaled = tf.concat([scaled, tf.reverse(scaled, axis=[2])], axis=0)
    logits = model(scaled, training=False)["logits"]
    if scale != 1.0:
      logits = tf.image.resize(logits, size, "bilinear")
    probabilities = tf.nn.softmax(logits, axis=-1)
    if test_time.flip:
      plain, mirrored = tf.split(probabilities, 2, axis=0)
      views = [plain, tf.reverse(mirrored, axis=[2])]
    else:
      views = [probabilities]
    for view in views:
      if combined is None:
        combined = view
      elif test_time.merge == "max":
        combined = tf.maximum(combined, view)
      else:
        combined = combined + view
  if test_time.merge == "mean":
    combined = combined / float(len(test_time.scales) * (2 if test_time.flip else 1))
  if test_time.crf is not None:
    combined = dense_crf(denormalize(images), combined, test_time.crf)
  return combined


def confusion_matrix(model, dataset: tf.data.Dataset, num_classes: int,
                     test_time: TestTime = TestTime(), progress: bool = False,
                     log: bool = False) -> np.ndarray:
  """[C, C] int64 confusion (rows ground truth) of `model` over `dataset` (images, labels).

  One compiled function for every batch (image sizes vary at full resolution: no retracing);
  with `progress` a progress bar counts the batches, with `log` a line with an ETA every minute.
  """

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                tf.TensorSpec([None, None, None], tf.int32)])
  def batch_confusion(images, labels):
    predictions = tf.argmax(predict_probabilities(model, images, test_time), axis=-1)
    return confusion_update(labels, predictions, num_classes)

  cardinality = int(dataset.cardinality().numpy())
  bar = keras.utils.Progbar(cardinality if cardinality > 0 else None, verbose=int(progress),
                            unit_name="batch")
  confusion = np.zeros([num_classes, num_classes], np.int64)
  eta = Eta(max(cardinality, 1), 0)
  for index, (images, labels) in enumerate(dataset):
    confusion += batch_confusion(images, tf.cast(labels, tf.int32)).numpy()
    bar.add(1)
    if log and eta.due(index + 1):
      print(f"  evaluating: {eta.line(index + 1, 'batch')}", flush=True)
  return confusion
