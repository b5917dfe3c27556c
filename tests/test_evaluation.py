"""Test-time options (multi-scale, flip, merge), the MiB center-crop test and the evaluation
confusion matrix, against hand-computed values."""
import os
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from kdseg.data.augment import resize_and_center_crop
from kdseg.data.pipeline import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_dataset, normalize
from kdseg.data.source import identity_table
from kdseg.data.voc import read_voc_layout, voc_palette
from kdseg.engine import summaries
from kdseg.engine.crf import DenseCRF, dense_crf
from kdseg.engine.evaluation import TestTime, confusion_matrix, predict_probabilities
from kdseg.models.segmenter import ModelConfig, build_segmenter
from kdseg.run import scoring
from tests.helpers import write_voc_tree


class ColumnModel:
  """logits[..., x] = (x, -x) for column x of its input: position-dependent, content-blind."""

  def __call__(self, images, training=False):
    width = tf.shape(images)[2]
    column = tf.cast(tf.range(width), tf.float32)[None, None, :, None]
    column = tf.broadcast_to(column, tf.concat([tf.shape(images)[:3], [1]], 0))
    return {"logits": tf.concat([column, -column], axis=-1)}


class ContentModel:
  """logits = the first two input channels: content-dependent, position-blind."""

  def __call__(self, images, training=False):
    return {"logits": images[..., :2]}


def softmax2(a, b):
  return np.exp(a) / (np.exp(a) + np.exp(b))


class ImageMeanModel:
  """logits = the first two input channels less their image means: every pixel's prediction
  depends on the whole image, as through DeepLab-v3's image pooling."""

  def __call__(self, images, training=False):
    channels = images[..., :2]
    return {"logits": channels - tf.reduce_mean(channels, axis=[1, 2], keepdims=True)}


class TestTimeTest(tf.test.TestCase):

  def test_single_scale_is_the_softmax(self):
    images = tf.zeros([1, 2, 3, 3])
    probabilities = predict_probabilities(ColumnModel(), images)
    self.assertAllClose(probabilities[0, 0, :, 0], [softmax2(x, -x) for x in (0, 1, 2)])

  def test_flip_predicts_the_mirrored_image_and_flips_back(self):
    images = tf.zeros([1, 1, 3, 3])
    # Column x: the plain pass gives logits (x, -x), the flipped pass (2 - x, x - 2) after
    # flipping back. mean: average of the two softmaxes; max: element-wise maximum.
    plain = np.array([[softmax2(x, -x), softmax2(-x, x)] for x in (0, 1, 2)])
    mirrored = plain[::-1]
    mean = predict_probabilities(ColumnModel(), images, TestTime(flip=True))
    self.assertAllClose(mean[0, 0], (plain + mirrored) / 2)
    maximum = predict_probabilities(ColumnModel(), images, TestTime(flip=True, merge="max"))
    self.assertAllClose(maximum[0, 0], np.maximum(plain, mirrored))

  def test_scales_resize_the_image_and_the_logits_back(self):
    # Constant images stay constant under resizing: every scale sees the same logits.
    images = tf.concat([tf.fill([2, 6, 4, 1], 1.0), tf.fill([2, 6, 4, 2], -1.0)], axis=-1)
    single = predict_probabilities(ContentModel(), images)
    multi = predict_probabilities(ContentModel(), images, TestTime(scales=(0.5, 1.0, 1.5)))
    self.assertEqual(multi.shape, (2, 6, 4, 2))
    self.assertAllClose(multi, single, atol=1e-6)
    self.assertAllClose(multi[0, 0, 0], [softmax2(1, -1), softmax2(-1, 1)], atol=1e-6)
    # The column model sees 2 columns at scale 0.5 -> logits (0,1) resized back to 4 columns.
    half = predict_probabilities(ColumnModel(), tf.zeros([1, 1, 4, 3]), TestTime(scales=(0.5,)))
    self.assertAllClose(half[0, 0, 0, 0], 0.5)            # column 0 of the half image: logits 0
    self.assertAllClose(half[0, 0, 3, 0], softmax2(1, -1))  # right edge: column 1

  def test_flip_batched_with_the_image_equals_separate_passes(self):
    # The mirror rides in the image's batch (one forward pass per scale): the same result as a
    # pass per view, for a batch of different images through a real network (BN in inference).
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    images = tf.random.stateless_normal([2, 20, 28, 3], seed=[3, 9])
    size = tf.shape(images)[1:3]
    for merge in ("mean", "max"):
      expected = None
      for scale in (0.5, 1.0, 1.5):
        scaled = tf.image.resize(images, tf.cast(tf.round(tf.cast(size, tf.float32) * scale),
                                                 tf.int32), "bilinear")
        for flipped in (False, True):
          logits = model(tf.reverse(scaled, axis=[2]) if flipped else scaled)["logits"]
          logits = tf.image.resize(tf.reverse(logits, axis=[2]) if flipped else logits, size,
                                   "bilinear")
          view = tf.nn.softmax(logits, axis=-1)
          expected = view if expected is None else (
              tf.maximum(expected, view) if merge == "max" else expected + view)
      if merge == "mean":
        expected = expected / 6.0
      found = predict_probabilities(model, images, TestTime(scales=(0.5, 1.0, 1.5), flip=True,
                                                            merge=merge))
      self.assertAllClose(found, expected, atol=1e-5, msg=merge)

  def test_crf_refines_the_merged_probabilities_on_the_denormalised_image(self):
    images = normalize(tf.constant(np.random.default_rng(0).uniform(0, 255, [1, 5, 6, 3])))
    crf = DenseCRF(iterations=2)
    refined = predict_probabilities(ContentModel(), images, TestTime(crf=crf))
    expected = dense_crf(denormalize(images), tf.nn.softmax(images[..., :2]), crf)
    self.assertAllClose(refined, expected)
    self.assertAllClose(denormalize(images), images * IMAGENET_STD + IMAGENET_MEAN, atol=1e-3)
    self.assertEqual(TestTime(flip=True, crf=crf).tag, "flip+mean+crf2")

  def test_tags_and_validation(self):
    self.assertEqual(TestTime().tag, "single")
    self.assertEqual(TestTime((0.5, 1.0), True, "max").tag, "ms0.5-1+flip+max")
    with self.assertRaisesRegex(ValueError, "--test_merge"):
      TestTime(merge="vote")
    with self.assertRaisesRegex(ValueError, "--test_scales"):
      TestTime(scales=(0.0,))

  def test_confusion_matrix_over_a_dataset_with_ignore(self):
    images = tf.zeros([2, 1, 3, 3])
    labels = tf.constant([[[0, 1, 255]], [[1, 0, 0]]])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    confusion = confusion_matrix(ColumnModel(), dataset, 2)
    # Predictions are 0 everywhere (x >= -x); labels: 0,1 | 1,0,0 (255 dropped).
    self.assertAllEqual(confusion, [[3, 0], [2, 0]])


class EvaluationBatchTest(tf.test.TestCase):

  def test_full_resolution_results_do_not_depend_on_the_batch_size(self):
    # Images of three sizes in an interleaved order: padding a smaller image into a batch with a
    # larger one would change its image mean, and so its predictions.
    rng = np.random.default_rng(3)
    shapes = [(6, 8), (8, 6), (6, 8), (5, 5), (8, 6), (6, 8), (5, 5)]
    labels = {f"i{k}": rng.integers(0, 2, shape).astype(np.uint8)
              for k, shape in enumerate(shapes)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"val": labels})
    source = read_voc_layout(root, splits=("val",))

    def confusion(batch_size):
      dataset = eval_dataset(source, source.split("val"), identity_table(2), batch_size)
      return confusion_matrix(ImageMeanModel(), dataset, 2)

    alone = confusion(1)
    self.assertEqual(alone.sum(), sum(h * w for h, w in shapes))
    for batch_size in (2, 3, 8):
      self.assertAllEqual(confusion(batch_size), alone)

  def test_summary_panels_predict_each_image_alone(self):
    shapes = [(6, 8), (5, 5), (6, 8)]
    rng = np.random.default_rng(4)
    labels = {f"i{k}": rng.integers(0, 2, shape).astype(np.uint8)
              for k, shape in enumerate(shapes)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"val": labels})
    source = read_voc_layout(root, splits=("val",))
    dataset = eval_dataset(source, source.split("val"), identity_table(2), 2)
    experiment = SimpleNamespace(
        config=SimpleNamespace(evaluation=SimpleNamespace(summary_images=3,
                                                          test_time=TestTime())),
        source=SimpleNamespace(palette=voc_palette()))
    panels = scoring._panels(ImageMeanModel(), dataset, [0, 1], experiment)  # pylint: disable=protected-access
    self.assertEqual(panels.shape, (3, 6, 3 * 8, 3))
    palette = tf.constant(np.asarray(voc_palette(), np.uint8))
    for row, (image, label) in enumerate(dataset.unbatch().take(3)):
      height, width = label.shape
      alone = tf.argmax(ImageMeanModel()(image[None])["logits"], axis=-1)
      expected = summaries.colorize(alone, tf.constant([0, 1]), palette)[0]
      self.assertAllEqual(panels[row, :height, 16:16 + width], expected)
      if width < 8:   # the padding of a smaller image is shown as void
        self.assertAllEqual(panels[row, 0, 16 + width], palette[255])


class CenterCropTest(tf.test.TestCase):

  def test_shorter_side_resized_then_center_crop(self):
    # 4 x 8 label with column index as value: shorter side 4 -> 2 (scale 0.5) gives 2 x 4; with
    # half-pixel centres (TF2 nearest) output column j reads floor((j + 0.5) * 2) = 1, 3, 5, 7;
    # the central 2 x 2 keeps columns 3 and 5.
    label = tf.tile(tf.range(8)[None], [4, 1])
    image = tf.cast(tf.stack([label] * 3, axis=-1), tf.float32)
    image, label = resize_and_center_crop(image, label, 2)
    self.assertEqual(image.shape, (2, 2, 3))
    self.assertAllEqual(label, [[3, 5], [3, 5]])


if __name__ == "__main__":
  tf.test.main()
