"""Weak-supervision losses on hand-computed tiny cases (MiB paper §5.2, Eq. 12-14; Bearman et
al. 2016 Eq. 2). Logits are log-probabilities, so softmax gives back the probabilities written."""
import math

import numpy as np
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL, UNLABELED
from kdseg.losses.distillation import pixel_selection
from kdseg.losses.weak import ImageLevelLoss, PartialCrossEntropy, UnlabeledPriorLoss

U, V = UNLABELED, IGNORE_LABEL
log = math.log


def _case():
  """One image, 1x4 pixels, classes (background 0, a 1, b 2): pixel 0 a point of class a, pixels
  1-2 unlabeled (pixel 2 predicted as b, absent from the image), pixel 3 void (padding)."""
  probs = [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.01, 0.01, 0.98]]
  logits = tf.math.log(tf.constant([[probs]], tf.float32))
  labels = tf.constant([[[1, U, U, V]]])
  classes = tf.constant([[1.0, 1.0, 0.0]])  # U_x: background (object segmentation) and a
  return labels, logits, classes


class PartialCrossEntropyTest(tf.test.TestCase):

  def test_mean_over_labelled_pixels_only(self):
    labels, logits, _ = _case()
    self.assertAllClose(PartialCrossEntropy()(labels, logits), log(4.0))

  def test_each_image_its_own_mean_then_the_batch_mean(self):
    # Eq. 12 per image, Eq. 14 over images: image 1 has 1 point (-log .25), image 2 three
    # points (-log .5 each); the pooled mean would be (log 4 + 3 log 2) / 4 instead.
    logits = tf.math.log(tf.constant([[[[.5, .25, .25]] * 3], [[[.5, .25, .25]] * 3]]))
    labels = tf.constant([[[1, U, U]], [[0, 0, 0]]])
    self.assertAllClose(PartialCrossEntropy()(labels, logits), (log(4) + log(2)) / 2)

  def test_an_image_without_points_counts_zero(self):
    labels = tf.constant([[[U, U, V]], [[1, U, U]]])
    logits = tf.math.log(tf.fill([2, 1, 3, 3], 1 / 3))
    self.assertAllClose(PartialCrossEntropy()(labels, logits), log(3) / 2)


class UnlabeledPriorLossTest(tf.test.TestCase):

  def test_unlabeled_pixels_sum_the_probabilities_of_the_image_classes(self):
    # Eq. 13: PCE + gamma * mean over unlabeled pixels of -log sum_{c in U_x} p(i, c). Pixel 2
    # is predicted as b, which the image does not hold: it costs -log(0.1 + 0.1).
    labels, logits, classes = _case()
    expected = log(4.0) + 0.5 * -(log(0.2 + 0.6) + log(0.1 + 0.1)) / 2
    loss = UnlabeledPriorLoss(gamma=0.5)({"labels": labels, "classes": classes}, logits)
    self.assertAllClose(loss, expected)

  def test_pce_plus_background_takes_background_alone(self):
    labels, logits, classes = _case()
    expected = log(4.0) + 1.0 * -(log(0.2) + log(0.1)) / 2
    loss = UnlabeledPriorLoss(prior="background")({"labels": labels, "classes": classes}, logits)
    self.assertAllClose(loss, expected)

  def test_scene_parsing_without_background(self):
    # Background is not a class of scene parsing: U_x = {a} only.
    labels, logits, _ = _case()
    loss = UnlabeledPriorLoss()({"labels": labels, "classes": tf.constant([[0.0, 1.0, 0.0]])},
                                logits)
    self.assertAllClose(loss, log(4.0) - (log(0.6) + log(0.1)) / 2)

  def test_void_pixels_change_nothing(self):
    labels, logits, classes = _case()
    other = tf.concat([logits[:, :, :3], tf.math.log([[[[0.9, 0.05, 0.05]]]])], axis=2)
    loss = UnlabeledPriorLoss()
    self.assertAllClose(loss({"labels": labels, "classes": classes}, logits),
                        loss({"labels": labels, "classes": classes}, other))

  def test_an_image_with_no_class_and_no_background_costs_nothing(self):
    labels = tf.constant([[[U, U]]])
    logits = tf.zeros([1, 1, 2, 3])
    loss = UnlabeledPriorLoss()({"labels": labels, "classes": tf.zeros([1, 3])}, logits)
    self.assertAllClose(loss, 0.0)

  def test_unbiased_form_merges_old_classes_into_background(self):
    # Incremental step with C_old = 2 (background, a) and new class b: background's probability
    # is p(bg) + p(a) (MiB Eq. 5); an old-class point counts as background. Pixel 0 labelled 0.
    probs = [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]]
    logits = tf.math.log(tf.constant([[probs]]))
    labels = tf.constant([[[0, U]]])
    classes = tf.constant([[1.0, 0.0, 1.0]])   # U_x = {background, b}
    loss = UnlabeledPriorLoss(old_classes=2)({"labels": labels, "classes": classes}, logits)
    self.assertAllClose(loss, -log(0.75) - log(0.2 + 0.6 + 0.2))
    pce = PartialCrossEntropy(old_classes=2)(labels, logits)
    self.assertAllClose(pce, -log(0.75))


class ImageLevelLossTest(tf.test.TestCase):

  def test_bearman_equation_2(self):
    # Present L = {bg, a}: -mean log max_i p(i, l); absent L' = {b}: -mean log(1 - max_i p(i, b)).
    # The void pixel (p(b) = 0.98) is outside the image and does not count.
    labels, logits, classes = _case()
    expected = -(log(0.5) + log(0.6)) / 2 - log(1 - 0.8)
    loss = ImageLevelLoss()({"labels": labels, "classes": classes}, logits)
    self.assertAllClose(loss, expected, rtol=1e-5)

  def test_with_points_adds_the_partial_cross_entropy(self):
    labels, logits, classes = _case()
    expected = -(log(0.5) + log(0.6)) / 2 - log(1 - 0.8) + log(4.0)
    loss = ImageLevelLoss(with_points=True)({"labels": labels, "classes": classes}, logits)
    self.assertAllClose(loss, expected, rtol=1e-5)

  def test_gradients_are_finite_when_a_class_is_certain(self):
    labels = tf.constant([[[1, U]]])
    logits = tf.Variable([[[[0.0, 50.0, -50.0], [0.0, 0.0, 60.0]]]])
    with tf.GradientTape() as tape:
      loss = ImageLevelLoss()({"labels": labels, "classes": tf.constant([[1.0, 1.0, 0.0]])},
                              logits)
    self.assertTrue(np.all(np.isfinite(tape.gradient(loss, logits).numpy())))



class PixelSelectionTest(tf.test.TestCase):

  def test_unlabeled_pixels_are_in_the_image_but_of_no_class(self):
    labels = tf.constant([[[0, 1, 2, U, V]]])
    self.assertAllEqual(pixel_selection(labels, "valid", 2)[0, 0], [1, 1, 1, 1, 0])
    self.assertAllEqual(pixel_selection(labels, "new", 2)[0, 0], [0, 0, 1, 0, 0])
    self.assertAllEqual(pixel_selection(labels, "objects", 2)[0, 0], [0, 1, 1, 0, 0])
    self.assertAllEqual(pixel_selection(labels, "old+bg", 2)[0, 0], [1, 1, 0, 0, 0])

if __name__ == "__main__":
  tf.test.main()
