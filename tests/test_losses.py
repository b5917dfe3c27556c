"""Loss values on hand-computed tiny cases (MiB Eq. 4-9, KD paper Eq. 2-9; spec §2, §6)."""
import math

import numpy as np
import tensorflow as tf

from kdseg.losses.distillation import (FeatureDistance, KnowledgeDistillation,
                                       OutputDistillation, SigmoidDistillation,
                                       SimilarityPreservingDistillation,
                                       UnbiasedKnowledgeDistillation, pixel_selection)
from kdseg.losses.segmentation import (BinaryCrossEntropy, CrossEntropy,
                                       OldTargetBinaryCrossEntropy, UnbiasedCrossEntropy)

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

  def test_restricted_to_selected_pixels(self):
    # KD paper code option: CE over new-class pixels only (C_old = 2): pixel c alone.
    labels = tf.constant([[[0, 1, 2, 255]]])
    logits = tf.constant([[[[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.5, 0.0, 1.0], [9.0, 0.0, 0.0]]]])
    new_only = pixel_selection(labels, "new", 2)
    self.assertAllClose(CrossEntropy(pixel_mean="valid")(labels, logits, sample_weight=new_only),
                        -(1.0 - _lse(0.5, 0.0, 1.0)))

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


class IltFeatureTermTest(tf.test.TestCase):

  def test_mean_over_all_elements(self):
    # ILT's feature term (MiB trainer: nn.MSELoss() on the encoder outputs).
    old_features = tf.zeros([1, 2, 1, 2])
    new_features = tf.constant([[[[1.0, 2.0]], [[0.0, -1.0]]]])
    self.assertAllClose(FeatureDistance()(old_features, new_features), (1 + 4 + 0 + 1) / 4)


def _bce(logit, target):
  """Binary cross-entropy with logits, written out: -(t log s(z) + (1 - t) log(1 - s(z)))."""
  s = 1.0 / (1.0 + math.exp(-logit))
  return -(target * math.log(s) + (1 - target) * math.log(1 - s))


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


class BinaryCrossEntropyTest(tf.test.TestCase):

  def test_sum_over_classes_mean_over_all_pixels(self):
    # LwF-MC classification term as the MiB trainer runs it (reduction 'none', then .mean();
    # spec §2, correction 2026-11-25): one-hot targets, BCE summed over the 2 classes, the
    # ignored pixel (all-zero target row) counts 0 in a mean over all 3 pixels.
    logits = tf.constant([[[[1.0, -1.0]], [[0.5, 2.0]], [[7.0, 7.0]]]])   # [1, 3, 1, 2]
    labels = tf.constant([[[0], [1], [255]]])
    pixel_a = _bce(1.0, 1) + _bce(-1.0, 0)
    pixel_b = _bce(0.5, 0) + _bce(2.0, 1)
    self.assertAllClose(BinaryCrossEntropy()(labels, logits), (pixel_a + pixel_b + 0.0) / 3)
    # The loss class's own 'mean' branch (labelled pixels only), kept as an option.
    self.assertAllClose(BinaryCrossEntropy(pixel_mean="valid")(labels, logits),
                        (pixel_a + pixel_b) / 2)

  def test_only_ignored_pixels_give_zero(self):
    for pixel_mean in ("all", "valid"):
      self.assertAllClose(BinaryCrossEntropy(pixel_mean=pixel_mean)(
          tf.fill([1, 2, 2], 255), tf.ones([1, 2, 2, 3])), 0.0)


class OldTargetBinaryCrossEntropyTest(tf.test.TestCase):

  def test_old_channels_take_the_old_sigmoids(self):
    # LwF-MC disjoint variant: C_old = 2, C_t = 3. Pixel a: label 2 (new) -> targets
    # (s(z_old_0), s(z_old_1), 1); pixel b: ignored -> (s, s, 0). Sum over classes, mean over
    # both pixels. keep_background: channel 0's target is the ground truth (a: 0, b: 0).
    old_logits = tf.constant([[[[0.0, 1.0]], [[-1.0, 2.0]]]])
    logits = tf.constant([[[[0.5, -0.5, 1.0]], [[0.0, 1.0, -2.0]]]])
    labels = tf.constant([[[2], [255]]])
    pixel_a = _bce(0.5, 0.5) + _bce(-0.5, _sigmoid(1.0)) + _bce(1.0, 1)
    pixel_b = _bce(0.0, _sigmoid(-1.0)) + _bce(1.0, _sigmoid(2.0)) + _bce(-2.0, 0)
    targets = {"labels": labels, "old": old_logits}
    self.assertAllClose(OldTargetBinaryCrossEntropy()(targets, logits), (pixel_a + pixel_b) / 2)
    keep_a = _bce(0.5, 0) + _bce(-0.5, _sigmoid(1.0)) + _bce(1.0, 1)
    keep_b = _bce(0.0, 0) + _bce(1.0, _sigmoid(2.0)) + _bce(-2.0, 0)
    self.assertAllClose(OldTargetBinaryCrossEntropy(keep_background=True)(targets, logits),
                        (keep_a + keep_b) / 2)


class SigmoidDistillationTest(tf.test.TestCase):

  def test_bce_to_old_sigmoids_mean_over_elements_times_old_classes(self):
    # LwF-MC distillation (spec §2): BCE(z[:C_old], sigmoid(z_old)), mean over all elements,
    # times C_old = 2; the new class's logit (9.0) plays no part. Two pixels.
    old_logits = tf.constant([[[[0.0, 1.0]], [[-2.0, 0.5]]]])
    new_logits = tf.constant([[[[1.0, 0.0, 9.0]], [[0.0, 0.0, 9.0]]]])
    elements = [_bce(1.0, 0.5), _bce(0.0, _sigmoid(1.0)), _bce(0.0, _sigmoid(-2.0)),
                _bce(0.0, _sigmoid(0.5))]
    self.assertAllClose(SigmoidDistillation()(old_logits, new_logits), 2 * sum(elements) / 4)


class OutputDistillationTest(tf.test.TestCase):
  """KD paper L_cls (Eq. 3) and L_cls-T (Eq. 4-5)."""

  def test_softmax_over_all_current_classes_and_old_targets(self):
    # C_old = 2, C_t = 3: p_new is the softmax over all 3 classes (not re-normalised over the old
    # ones as in MiB's KD); targets are the old softmax over the 2 old classes.
    old_logits = tf.constant([[[[math.log(3.0), 0.0]]]])      # targets (3/4, 1/4)
    new_logits = tf.constant([[[[1.0, 0.0, 2.0]]]])
    den = _lse(1.0, 0.0, 2.0)
    expected = -(0.75 * (1.0 - den) + 0.25 * (0.0 - den))
    self.assertAllClose(OutputDistillation()(old_logits, new_logits), expected)

  def test_temperature_divides_both_logits(self):
    old_logits = tf.constant([[[[2 * math.log(3.0), 0.0]]]])  # /T=2 -> targets (3/4, 1/4)
    new_logits = tf.constant([[[[2.0, 0.0, 4.0]]]])           # /T=2 -> (1, 0, 2)
    den = _lse(1.0, 0.0, 2.0)
    expected = -(0.75 * (1.0 - den) + 0.25 * (0.0 - den))
    self.assertAllClose(OutputDistillation(temperature=2.0)(old_logits, new_logits), expected)

  def test_pixel_selections_and_empty_selection_is_zero(self):
    # Labels: bg, old class 1, new class 2, ignored. C_old = 2.
    labels = tf.constant([[[0, 1, 2, 255]]])
    self.assertAllEqual(pixel_selection(labels, "valid", 2), [[[1, 1, 1, 0]]])
    self.assertAllEqual(pixel_selection(labels, "old", 2), [[[0, 1, 0, 0]]])
    self.assertAllEqual(pixel_selection(labels, "old+bg", 2), [[[1, 1, 0, 0]]])
    self.assertAllEqual(pixel_selection(labels, "all", 2), [[[1, 1, 1, 1]]])
    self.assertAllEqual(pixel_selection(labels, "new", 2), [[[0, 0, 1, 0]]])
    self.assertAllEqual(pixel_selection(labels, "objects", 2), [[[0, 1, 1, 0]]])
    old_logits = tf.zeros([1, 1, 4, 2])
    new_logits = tf.constant([[[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0],
                                [5.0, 5.0, 0.0]]]])
    per_pixel = [-(0.5 * (z[0] - _lse(*z)) + 0.5 * (z[1] - _lse(*z)))
                 for z in ((0, 0, 0), (1, 0, 0), (0, 2, 0), (5, 5, 0))]
    loss = OutputDistillation()
    valid = pixel_selection(labels, "valid", 2)
    self.assertAllClose(loss(old_logits, new_logits, sample_weight=valid), sum(per_pixel[:3]) / 3)
    self.assertAllClose(loss(old_logits, new_logits, sample_weight=pixel_selection(labels, "old", 2)),
                        per_pixel[1])
    none = pixel_selection(tf.constant([[[2, 2, 255, 255]]]), "old", 2)
    self.assertAllClose(loss(old_logits, new_logits, sample_weight=none), 0.0)


class FeatureDistanceTest(tf.test.TestCase):

  def test_mean_over_all_elements_is_the_reference_default(self):
    # LTTM/IL-SemSegm LD2: tf.losses.mean_squared_error(old, new), the mean over all B*h*w*F
    # elements: (1 + 4 + 1 + 9) / 8 elements.
    old = tf.zeros([2, 1, 2, 2])
    new = tf.constant([[[[1.0, 2.0], [0.0, 1.0]]], [[[3.0, 0.0], [0.0, 0.0]]]])
    self.assertAllClose(FeatureDistance()(old, new), (1 + 4 + 1 + 9) / 8)

  def test_frobenius_is_sum_of_squares_mean_over_images(self):
    # KD paper Eq. 6 as printed: ||E_old - E_new||_F^2 per image, averaged over the 2 images.
    old = tf.zeros([2, 1, 2, 2])
    new = tf.constant([[[[1.0, 2.0], [0.0, 1.0]]], [[[3.0, 0.0], [0.0, 0.0]]]])
    self.assertAllClose(FeatureDistance("frobenius")(old, new), ((1 + 4 + 1) + 9) / 2)

  def test_mean_does_not_grow_with_the_feature_size(self):
    # The same per-element difference 0.5 on a 3x3x8 and a 41x41x64 map: mean 0.25 on both,
    # while Eq. 6 grows with h*w*F (72 x 0.25 = 18 for the small one).
    for shape in ([1, 3, 3, 8], [2, 41, 41, 64]):
      old, new = tf.zeros(shape), tf.fill(shape, 0.5)
      self.assertAllClose(FeatureDistance()(old, new), 0.25)
      self.assertAllClose(FeatureDistance(branch_axis=-2)(old[..., None, :], new[..., None, :]),
                          0.25)
    self.assertAllClose(FeatureDistance("frobenius")(tf.zeros([1, 3, 3, 8]),
                                                     tf.fill([1, 3, 3, 8], 0.5)), 18.0)

  def test_decoder_term_over_branches_keeps_old_channels(self):
    # KD paper Eq. 7 on DeepLab-v2's 4 ASPP branches stacked on axis -2 ([B, h, w, 4, C]); the
    # new model's branches score 3 classes, the old one's 2: only the old channels compare.
    old = tf.zeros([1, 1, 1, 4, 2])
    new = tf.constant([[[[[1.0, 0.0, 50.0], [0.0, 2.0, 50.0], [1.0, 1.0, 50.0],
                          [0.0, 0.0, 50.0]]]]])
    # mean: every branch's mean over its 2 old channels, averaged over the 4 branches.
    self.assertAllClose(FeatureDistance(branch_axis=-2)(old, new), (1 + 4 + 2 + 0) / 8)
    # frobenius: per image, summed over branches, divided by their number (Eq. 7 as printed).
    self.assertAllClose(FeatureDistance("frobenius", branch_axis=-2)(old, new),
                        (1 + 4 + 2 + 0) / 4)

  def test_unknown_normalisation(self):
    with self.assertRaisesRegex(ValueError, "frobenius"):
      FeatureDistance("sum")


class SimilarityPreservingDistillationTest(tf.test.TestCase):

  def test_spkd_gram_rows_normalised_divided_by_batch(self):
    # KD paper Eq. 8, B = 2, features flattened to vectors.
    # old vectors a1 = (1, 0), a2 = (0, 1): Gram I, rows already unit -> A_old = I.
    # new vectors b1 = (1, 1), b2 = (1, 0): Gram [[2, 1], [1, 1]];
    # rows normalised: (2, 1)/sqrt5, (1, 1)/sqrt2.
    old = tf.constant([[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]])   # [2, 2, 1, 1]
    new = tf.constant([[[[1.0]], [[1.0]]], [[[1.0]], [[0.0]]]])
    r5, r2 = math.sqrt(5.0), math.sqrt(2.0)
    squared = ((2 / r5 - 1) ** 2 + (1 / r5) ** 2) + ((1 / r2) ** 2 + (1 / r2 - 1) ** 2)
    self.assertAllClose(SimilarityPreservingDistillation()(old, new), squared / 2)
    self.assertAllClose(SimilarityPreservingDistillation(divide_by="batch_squared")(old, new),
                        squared / 4)

  def test_spkd_does_not_grow_with_the_feature_size(self):
    # Tiling every image's map 5 x 5 multiplies each Gram entry by 25; the row normalisation
    # cancels it, so the loss is unchanged, and it stays within [0, 4].
    old = tf.random.stateless_normal([3, 2, 2, 4], seed=[1, 2])
    new = tf.random.stateless_normal([3, 2, 2, 4], seed=[3, 4])
    loss = SimilarityPreservingDistillation()
    small = loss(old, new)
    large = loss(tf.tile(old, [1, 5, 5, 1]), tf.tile(new, [1, 5, 5, 1]))
    self.assertAllClose(small, large, rtol=1e-5)
    self.assertBetween(float(small), 0.0, 4.0)

  def test_spkd_avg_sums_over_space_first(self):
    # KD paper Eq. 9: features summed over H x W into [B, F] before the Gram matrix.
    # old: image 1 has (1, 0) at both locations -> (2, 0); image 2 -> (0, 3). A_old = I.
    # new: image 1 -> (1, 1); image 2 -> (2, 0): Gram [[2, 2], [2, 4]] -> normalised rows
    # (1, 1)/sqrt2 and (1, 2)/sqrt5.
    old = tf.constant([[[[1.0, 0.0]], [[1.0, 0.0]]], [[[0.0, 1.0]], [[0.0, 2.0]]]])  # [2,2,1,2]
    new = tf.constant([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[2.0, 0.0]], [[0.0, 0.0]]]])
    r5, r2 = math.sqrt(5.0), math.sqrt(2.0)
    squared = ((1 / r2 - 1) ** 2 + (1 / r2) ** 2) + ((1 / r5) ** 2 + (2 / r5 - 1) ** 2)
    self.assertAllClose(SimilarityPreservingDistillation(spatial_sum=True)(old, new), squared / 2)

  def test_gradient_is_finite_for_zero_features(self):
    old = tf.zeros([2, 2, 2, 3])
    new = tf.Variable(tf.zeros([2, 2, 2, 3]))
    with tf.GradientTape() as tape:
      loss = SimilarityPreservingDistillation()(old, new)
    self.assertAllEqual(tf.math.is_finite(tape.gradient(loss, new)), tf.ones([2, 2, 2, 3], bool))


if __name__ == "__main__":
  tf.test.main()
