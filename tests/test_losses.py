"""Loss values on hand-computed tiny cases (MiB Eq. 4-6, 9; spec §2)."""
import math

import numpy as np
import tensorflow as tf

from kdseg.losses.distillation import (FeatureDistillation, KnowledgeDistillation,
                                       UnbiasedKnowledgeDistillation)
from kdseg.losses.segmentation import CrossEntropy, UnbiasedCrossEntropy

LOG3 = math.log(3.0)


def _lse(*values):
  return math.log(sum(math.exp(v) for v in values))


class CrossEntropyTest(tf.test.TestCase):

  def test_uniform_logits_cost_log_classes_and_ignored_pixels_count_zero(self):
    # 2x2 image, 3 classes, zero logits: each valid pixel costs log 3; one pixel ignored.
    labels = tf.constant([[[0, 1], [2, 255]]])
    logits = tf.zeros([1, 2, 2, 3])
    self.assertAllClose(CrossEntropy()(labels, logits), 3 * LOG3 / 4)          # all pixels
    self.assertAllClose(CrossEntropy(pixel_mean="valid")(labels, logits), LOG3)  # valid pixels

  def test_values_from_the_equation(self):
    # Pixel a: z=(2,0,0), y=0 -> -log(e^2/(e^2+2)); pixel b: z=(0,1,3), y=1 -> -(1 - lse(0,1,3)).
    labels = tf.constant([[[0, 1]]])
    logits = tf.constant([[[[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]]])
    pixel_a = -(2 - _lse(2, 0, 0))
    pixel_b = -(1 - _lse(0, 1, 3))
    self.assertAllClose(CrossEntropy()(labels, logits), (pixel_a + pixel_b) / 2)

  def test_only_ignored_pixels_give_zero_not_nan(self):
    labels = tf.fill([1, 2, 2], 255)
    self.assertAllClose(CrossEntropy(pixel_mean="valid")(labels, tf.zeros([1, 2, 2, 3])), 0.0)


class UnbiasedCrossEntropyTest(tf.test.TestCase):

  def test_background_label_scores_background_or_old(self):
    # C_t = 4, C_old = 3 (bg + 2 old), one new class (id 3).
    # Pixel a: y=0 (bg)  -> -(lse(z0,z1,z2) - lse(all)).
    # Pixel b: y=2 (old, present in labels: counts as bg) -> same formula.
    # Pixel c: y=3 (new) -> -(z3 - lse(all)).  Pixel d: ignored -> 0.
    z_a, z_b, z_c = (1.0, 2.0, 0.5, -1.0), (0.0, 0.0, 3.0, 1.0), (0.2, -0.3, 0.1, 2.0)
    logits = tf.constant([[[z_a, z_b], [z_c, (9.0, 9.0, 9.0, 9.0)]]])
    labels = tf.constant([[[0, 2], [3, 255]]])
    pixel_a = -(_lse(*z_a[:3]) - _lse(*z_a))
    pixel_b = -(_lse(*z_b[:3]) - _lse(*z_b))
    pixel_c = -(z_c[3] - _lse(*z_c))
    expected = (pixel_a + pixel_b + pixel_c + 0.0) / 4
    self.assertAllClose(UnbiasedCrossEntropy(old_classes=3)(labels, logits), expected)
    self.assertAllClose(UnbiasedCrossEntropy(old_classes=3, pixel_mean="valid")(labels, logits),
                        (pixel_a + pixel_b + pixel_c) / 3)

  def test_equals_cross_entropy_when_only_background_is_old(self):
    logits = tf.random.stateless_normal([2, 3, 3, 5], seed=[1, 2])
    labels = tf.constant(np.random.default_rng(0).integers(0, 5, (2, 3, 3)))
    self.assertAllClose(UnbiasedCrossEntropy(old_classes=1)(labels, logits),
                        CrossEntropy()(labels, logits))

  def test_background_gradient_moves_old_logits_up(self):
    # The background target rewards old classes too: d loss / d z_old < 0 at a background pixel,
    # whereas plain CE pushes old-class logits down.
    logits = tf.Variable(tf.zeros([1, 1, 1, 3]))
    labels = tf.constant([[[0]]])
    with tf.GradientTape(persistent=True) as tape:
      unbiased = UnbiasedCrossEntropy(old_classes=2)(labels, logits)
      plain = CrossEntropy()(labels, logits)
    # p = 1/3 each; unbiased: -log(2/3): grads (p - p/(2/3)*...) = (-1/6, -1/6, +1/3).
    self.assertAllClose(tape.gradient(unbiased, logits)[0, 0, 0], [-1 / 6, -1 / 6, 1 / 3])
    self.assertAllClose(tape.gradient(plain, logits)[0, 0, 0], [-2 / 3, 1 / 3, 1 / 3])


class UnbiasedKnowledgeDistillationTest(tf.test.TestCase):

  def test_value_from_the_equation(self):
    # C_old = 2 (bg, 1 old class), C_t = 3 (one new class). One pixel.
    old_logits = tf.constant([[[[math.log(3.0), 0.0]]]])      # targets t = (3/4, 1/4)
    new_logits = tf.constant([[[[0.5, 1.0, -0.5]]]])
    den = _lse(0.5, 1.0, -0.5)
    log_q_bg = _lse(0.5, -0.5) - den
    log_q_1 = 1.0 - den
    expected = -(0.75 * log_q_bg + 0.25 * log_q_1) / 2
    self.assertAllClose(UnbiasedKnowledgeDistillation()(old_logits, new_logits), expected)

  def test_alpha_sharpens_targets_and_mean_is_over_all_pixels(self):
    old_logits = tf.constant([[[[0.0, math.log(2.0)]], [[0.0, 0.0]]]])  # [1, 2, 1, 2]
    new_logits = tf.zeros([1, 2, 1, 4])                                # q = 1/4 each
    # alpha = 2: pixel 1 targets softmax(0, 2 log 2) = (1/5, 4/5); pixel 2 (1/2, 1/2).
    # log q(bg) = log(3/4) (bg + 2 new), log q(1) = log(1/4).
    pixel_1 = -(0.2 * math.log(0.75) + 0.8 * math.log(0.25)) / 2
    pixel_2 = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) / 2
    self.assertAllClose(UnbiasedKnowledgeDistillation(alpha=2.0)(old_logits, new_logits),
                        (pixel_1 + pixel_2) / 2)


class KnowledgeDistillationTest(tf.test.TestCase):

  def test_value_from_the_equation(self):
    # MiB Eq. 7-8 as the reference codes it: new logits re-normalised over the C_old = 2 old
    # classes (the new class, logit 5, is dropped), targets softmax(z_old), mean over classes.
    old_logits = tf.constant([[[[math.log(3.0), 0.0]]]])      # targets (3/4, 1/4)
    new_logits = tf.constant([[[[1.0, 0.0, 5.0]]]])
    log_p_0 = 1.0 - _lse(1.0, 0.0)
    log_p_1 = 0.0 - _lse(1.0, 0.0)
    expected = -(0.75 * log_p_0 + 0.25 * log_p_1) / 2
    self.assertAllClose(KnowledgeDistillation()(old_logits, new_logits), expected)

  def test_minimum_is_at_matching_distributions_and_alpha_sharpens(self):
    old_logits = tf.constant([[[[0.0, math.log(2.0)]]]])
    same = tf.constant([[[[0.0, math.log(2.0), -3.0]]]])
    other = tf.constant([[[[math.log(2.0), 0.0, -3.0]]]])
    kd = KnowledgeDistillation()
    self.assertLess(float(kd(old_logits, same)), float(kd(old_logits, other)))
    # alpha = 2: targets softmax(0, 2 log 2) = (1/5, 4/5); new p = (1/3, 2/3).
    expected = -(0.2 * math.log(1 / 3) + 0.8 * math.log(2 / 3)) / 2
    self.assertAllClose(KnowledgeDistillation(alpha=2.0)(old_logits, same), expected)


class FeatureDistillationTest(tf.test.TestCase):

  def test_mean_over_all_elements(self):
    old_features = tf.zeros([1, 2, 1, 2])
    new_features = tf.constant([[[[1.0, 2.0]], [[0.0, -1.0]]]])
    self.assertAllClose(FeatureDistillation()(old_features, new_features), (1 + 4 + 0 + 1) / 4)


if __name__ == "__main__":
  tf.test.main()
