"""PLOP (Douillard et al., CVPR 2021): Local POD, entropy pseudo-labels, their thresholds and the
adaptive factor, against hand-computed cases and the reference's formulas written out in numpy
(arthurdouillard/CVPR2021_PLOP train.py, channels-first as there)."""
import dataclasses
import json
import math
import os
import tempfile
import types

import numpy as np
import tensorflow as tf

from kdseg.engine.loop import Schedule, StepTrainer, make_optimizer
from kdseg.losses import pseudo
from kdseg.losses.distillation import LocalPOD
from kdseg.methods import build_objective, customize, get_method
from kdseg.models.segmenter import ModelConfig, build_segmenter
from kdseg.run import stepping


def _reference_local_pod(x, scales=(1, 2, 4)):
  """train.py:979-1014 (_local_pod, normalize False) on [B, C, H, W]."""
  b, w = x.shape[0], x.shape[-1]
  embedding = []
  for scale in scales:
    k = w // scale
    for i in range(scale):
      for j in range(scale):
        tensor = x[..., i * k:(i + 1) * k, j * k:(j + 1) * k]
        embedding.append(tensor.mean(axis=3).reshape(b, -1))
        embedding.append(tensor.mean(axis=2).reshape(b, -1))
  return np.concatenate(embedding, axis=1)


def _reference_pod(old_maps, new_maps, factors, nb_current, nb_new, index_new):
  """train.py:716-972 (features_distillation) with PLOP's options: local, pow, frobenius, the
  logits' extra channels summed into the background, the pod schedule, / len(list)."""
  loss = 0.0
  for i, (a, b) in enumerate(zip(old_maps, new_maps)):
    if a.shape[1] != b.shape[1]:
      merged = np.zeros_like(a)
      merged[:, 0] = b[:, 0] + b[:, index_new:].sum(axis=1)
      merged[:, 1:] = b[:, 1:index_new]
      b = merged
    a, b = _reference_local_pod(a ** 2), _reference_local_pod(b ** 2)
    layer = np.sqrt(((a - b) ** 2).sum(axis=-1)).mean()
    loss += factors[i] * layer * math.sqrt(nb_current / nb_new)
  return loss / len(old_maps)


def _nhwc(x):
  return tf.constant(np.transpose(x, [0, 2, 3, 1]))


class LocalPODTest(tf.test.TestCase):

  def test_hand_computed(self):
    # One image, one channel, 2 x 2 maps, old = [[1, 2], [3, 4]], new = 0; logits 2 old + 1 new
    # (equal: the logits part is 0), features part only. Squares: [[1, 4], [9, 16]].
    # Scale 1: row means 2.5, 12.5; column means 5, 10. Scale 2 (k = 1): each pixel's row and
    # column mean is itself: 1, 4, 9, 16 twice. Sum of squares: 6.25 + 156.25 + 25 + 100 +
    # 2 * (1 + 16 + 81 + 256) = 995.5; norm sqrt(995.5). Schedule sqrt(3 / 1); / 5 maps.
    old = {"features": [tf.constant([[[[1.0], [2.0]], [[3.0], [4.0]]]])],
           "logits": tf.zeros([1, 2, 2, 2])}
    new = {"features": [tf.zeros([1, 2, 2, 1])], "logits": tf.zeros([1, 2, 2, 3])}
    loss = LocalPOD("features", num_layers=5, scales=(1, 2))(old, new)
    self.assertAllClose(loss, math.sqrt(995.5) * math.sqrt(3.0) / 5, rtol=1e-6)

  def test_equals_the_reference_formula(self):
    rng = np.random.default_rng(0)
    old_classes, classes = 4, 6
    # Square maps, a map whose side is not a multiple of 4, a taller and a wider map (rows cut
    # with the width's region side, as the reference does).
    shapes = [(3, 8, 8), (5, 9, 9), (2, 12, 8), (4, 7, 9)]
    old_maps = [rng.normal(size=(2, *s)).astype(np.float32) for s in shapes]
    new_maps = [m + rng.normal(scale=0.3, size=m.shape).astype(np.float32) for m in old_maps]
    old_logits = rng.normal(size=(2, old_classes, 6, 6)).astype(np.float32)
    new_logits = rng.normal(size=(2, classes, 6, 6)).astype(np.float32)
    expected = _reference_pod(old_maps + [old_logits], new_maps + [new_logits],
                              [0.01] * len(shapes) + [0.0005], classes, classes - old_classes,
                              old_classes)
    y_true = {"features": [_nhwc(m) for m in old_maps], "logits": _nhwc(old_logits)}
    y_pred = {"features": [_nhwc(m) for m in new_maps], "logits": _nhwc(new_logits)}
    layers = len(shapes) + 1
    ours = (0.01 * LocalPOD("features", layers)(y_true, y_pred) +
            0.0005 * LocalPOD("logits", layers)(y_true, y_pred))
    self.assertAllClose(ours, expected, rtol=1e-5)

  def test_gradient_is_zero_not_nan_where_the_maps_agree(self):
    maps = {"features": [tf.ones([1, 4, 4, 2])], "logits": tf.ones([1, 4, 4, 3])}
    new = tf.Variable(tf.ones([1, 4, 4, 2]))
    with tf.GradientTape() as tape:
      loss = LocalPOD("features", 5)(maps, {"features": [new], "logits": tf.ones([1, 4, 4, 4])})
    self.assertAllEqual(tape.gradient(loss, new), tf.zeros([1, 4, 4, 2]))
    self.assertEqual(float(loss), 0.0)

  def test_a_full_width_classifier_is_refused(self):
    maps = {"features": [tf.ones([1, 4, 4, 2])], "logits": tf.ones([1, 4, 4, 3])}
    with self.assertRaisesRegex(ValueError, "classifier=full"):
      LocalPOD("logits", 6)(maps, maps)


class PseudoLabelTest(tf.test.TestCase):

  def test_entropy_is_the_references(self):
    # train.py:701-713: -(1 / log C) * mean_c p log(p + 1e-8).
    p = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]], np.float32)
    expected = -(p * np.log(p + 1e-8)).mean(axis=-1) / math.log(3 + 1e-8)
    self.assertAllClose(pseudo.entropy(tf.constant(p)), expected, rtol=1e-6)

  def test_median_rules_on_hand_computed_histograms(self):
    def one(counts, rule="reference"):
      histogram = np.zeros([1, pseudo.NUM_BINS], np.int64)
      for index, count in counts.items():
        histogram[0, index] = count
      return float(pseudo.thresholds(histogram, 0.001, rule)[0])
    # 10 pixels in bin 3, half = 5. Reference: the running sum adds bin indices 0 + 1 + 2 = 3
    # before bin 3 -> 0.03 + (5 - 3) / 10 * 0.01. The histogram median: 0.03 + 5 / 10 * 0.01.
    self.assertAllClose(one({3: 10}), 0.032, rtol=1e-6)
    self.assertAllClose(one({3: 10}, "histogram"), 0.035, rtol=1e-6)
    # Most pixels in bin 0: 0 + 6 / 8 * 0.01, above the floor.
    self.assertAllClose(one({0: 8, 50: 4}), 0.0075, rtol=1e-6)
    # No bin holds enough: the loop runs out, reads bin 99 (empty) -> -inf -> the floor.
    self.assertAllClose(one({0: 10, 1: 10, 2: 10, 3: 10}), 0.001, rtol=1e-6)
    # It stops at an empty bin where the half equals the running sum: 0 / 0 -> NaN, kept.
    self.assertTrue(math.isnan(one({5: 2})))
    # int(29 / 100 * 100) is 28: at b = 29 the reference reads bin 28 (30 pixels; 800 in bin
    # 99, half 415, running sum 0 + ... + 28 = 406) -> 0.29 + 9 / 30 * 0.01.
    self.assertAllClose(one({28: 30, 99: 800}), 0.293, rtol=1e-6)
    # A class the old model never predicts: 0, raised to the floor.
    self.assertAllClose(one({}), 0.001, rtol=1e-6)

  def test_histogram_counts_background_pixels_by_class_and_bin(self):
    # Two pixels labelled background, one object pixel (not counted), one ignored.
    logits = tf.constant([[[[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                           [[0.0, 9.0, 0.0], [0.0, 0.0, 8.0]]]])
    labels = tf.constant([[[0, 0], [3, 255]]])
    counts = pseudo.entropy_histogram(logits, labels, num_classes=4).numpy()
    probabilities = tf.nn.softmax(logits).numpy()[0].reshape(4, 3)
    values = pseudo.entropy(tf.constant(probabilities)).numpy() / math.log(4)
    expected = np.zeros([4, pseudo.NUM_BINS], np.int64)
    expected[0, int(values[0] * 100)] += 1           # confident background
    expected[0, min(int(values[1] * 100), 99)] += 1  # uniform: argmax 0
    self.assertAllEqual(counts, expected)

  def test_relabel_and_adaptive_factor_by_hand(self):
    # Old model of 3 classes, one new class (id 3). Pixels: confident class 1 on background,
    # uncertain on background, a new-class pixel, an ignored pixel.
    old_logits = tf.constant([[[[0.0, 20.0, 0.0], [1.0, 1.0, 1.0]],
                               [[0.0, 0.0, 20.0], [0.0, 20.0, 0.0]]]])
    labels = tf.constant([[[0, 0], [3, 255]]])
    thresholds = tf.constant([0.001, 0.001, 0.001, 0.001])
    relabelled, factor = pseudo.relabel(labels, old_logits, thresholds, 4, 3)
    self.assertAllEqual(relabelled, [[[1, 255], [3, 255]]])
    self.assertAllClose(factor, [1 / (2 + 1e-6)])


class PlopObjectiveTest(tf.test.TestCase):

  def test_plop_record_and_its_ablations(self):
    objective = build_objective(get_method("plop"), old_classes=16)
    self.assertEqual([(t.name, t.weight, t.endpoint) for t in objective.distillation],
                     [("pod", 0.01, "pod"), ("pod_logits", 0.0005, "pod")])
    self.assertEqual(objective.classification.name, "ce")
    self.assertTrue(objective.adaptive_factor)
    self.assertEqual([t.loss.num_layers for t in objective.distillation], [6, 6])
    self.assertEqual(get_method("plop").init, "background")
    # Without the logits term POD divides by 5 maps, as the reference without --pod_logits.
    no_logits = customize(get_method("plop"), distill=["pod_logits:0"])
    self.assertEqual([t.loss.num_layers for t in build_objective(no_logits, 16).distillation],
                     [5])
    no_pseudo = customize(get_method("plop"), pseudo="none")
    self.assertIsNone(no_pseudo.pseudo)
    self.assertFalse(no_pseudo.adaptive_factor)
    self.assertIn("pseudo=none", no_pseudo.name)

  def test_step_with_thresholds_relabels_and_scales_the_ce(self):
    config = ModelConfig("tiny", 16, 8)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[7, 1])
    labels = tf.random.stateless_uniform([2, 32, 32], seed=[7, 2], maxval=2, dtype=tf.int32) * 3
    old_model = build_segmenter(config, [3])
    old_model.trainable = False
    model = build_segmenter(config, [3, 1])
    objective = build_objective(get_method("plop"), old_classes=3)
    values = {}
    # Thresholds above any entropy keep every background pixel (factor 1); below all of them
    # ignore every one (factor 0: only new-class pixels, and they are weighted 0 too).
    for name, threshold in (("all", 10.0), ("none", -1.0)):
      trainer = StepTrainer(tf.distribute.get_strategy(), model, old_model,
                            dataclasses.replace(objective, pseudo_thresholds=(threshold,) * 4),
                            make_optimizer(Schedule(0.01, 1, 1)), 1e-4)
      terms, gradients = trainer._losses_and_gradients(images, labels)  # pylint: disable=protected-access
      values[name] = terms
      self.assertTrue(all(np.all(np.isfinite(g)) for g in gradients))
    old = old_model(images)["logits"]
    pseudo_labels = tf.where(labels < 3, tf.argmax(old, -1, output_type=tf.int32), labels)
    logits = model(images, training=True)["logits"]
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(pseudo_labels, logits))
    self.assertAllClose(values["all"]["ce"], ce, rtol=1e-4)
    self.assertEqual(float(values["none"]["ce"]), 0.0)
    self.assertGreater(float(values["all"]["pod"]), 0.0)


class ThresholdPassTest(tf.test.TestCase):

  def test_thresholds_are_computed_once_saved_and_read_back(self):
    directory = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    written = {}

    def write_json(path, payload):
      written[path] = payload
      with open(path, "w") as handle:
        json.dump(payload, handle)

    experiment = types.SimpleNamespace(chief=True,
                                       run_dir=types.SimpleNamespace(write_json=write_json))
    old_model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    images = tf.random.stateless_uniform([4, 32, 32, 3], seed=[9, 1])
    labels = tf.zeros([4, 32, 32], tf.int32)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    method = get_method("plop")
    schedule = Schedule(0.01, 1, 2)
    first = stepping.pseudo_thresholds(experiment, method, old_model, lambda e, s: batches,
                                       schedule, 4, directory)
    self.assertLen(first, 4)
    saved = next(iter(written.values()))
    histogram = np.array(saved["histogram"])
    self.assertEqual(histogram.sum(), 2 * 4 * 32 * 32)   # two batches, every pixel background
    self.assertAllClose(first, pseudo.thresholds(histogram, 0.001))
    # Resumed: read back, the model not run (a failing data source would raise).
    again = stepping.pseudo_thresholds(experiment, method, old_model, None, schedule, 4,
                                       directory)
    self.assertEqual(first, again)
    with self.assertRaisesRegex(ValueError, "Delete the file"):
      stepping.pseudo_thresholds(experiment, method, old_model, None, schedule, 5, directory)
    # Right length, not numbers: refused the same way.
    path = next(iter(written))
    with open(path, "w") as handle:
      json.dump({"thresholds": ["0.1", None, 0.2, 0.3]}, handle)
    with self.assertRaisesRegex(ValueError, "Delete the file"):
      stepping.pseudo_thresholds(experiment, method, old_model, None, schedule, 4, directory)


class StageEndpointTest(tf.test.TestCase):

  def test_stage_outputs_are_the_residual_sums_with_and_without_recompute(self):
    images = tf.random.stateless_normal([2, 64, 64, 3], seed=[3, 1])
    plain = build_segmenter(ModelConfig("resnet50_iabn", 16, 8), [3, 1])
    recomputed = build_segmenter(ModelConfig("resnet50_iabn", 16, 8, recompute=True), [3, 1])
    recomputed.set_weights(plain.get_weights())
    expected = plain(images, training=True)["pod"]["features"]
    got = recomputed(images, training=True)["pod"]["features"]
    self.assertLen(expected, 5)
    for one, other in zip(expected, got):
      self.assertAllClose(one, other, atol=1e-4)
    # Before the activation: the stage sums take negative values (leaky ReLU would scale them).
    self.assertLess(float(tf.reduce_min(expected[3])), 0.0)
    self.assertAllClose(tf.nn.leaky_relu(expected[3], 0.01),
                        plain(images, training=True)["encoder"], atol=1e-4)
