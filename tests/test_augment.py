"""Training augmentation: the MiB reference's RandomResizedCrop window (torchvision's rule) and
the KD code's scale-pad-crop, on hand-computed cases."""
import math

import numpy as np
import tensorflow as tf

from kdseg.constants import IMAGENET_MEAN
from kdseg.data import augment

SEED = tf.constant([0, 7], tf.int64)   # an image's augmentation seed


def _window(height, width, area_draws, ratio_draws, offsets, scale=(0.5, 2.0)):
  window = augment.resized_crop_window(
      tf.constant(height), tf.constant(width), scale, tf.constant(area_draws, tf.float32),
      tf.constant(ratio_draws, tf.float32), tf.constant(offsets, tf.float32))
  return tuple(int(v) for v in window)


def _torchvision_rule(height, width, area_draws, ratio_draws, offsets, scale=(0.5, 2.0),
                      ratio=(3 / 4, 4 / 3)):
  """The rule written out in plain Python, one try after the other (MiB dataset/transform.py)."""
  area = height * width
  for u, v in zip(area_draws, ratio_draws):
    target = (scale[0] + u * (scale[1] - scale[0])) * area
    aspect = math.exp(math.log(ratio[0]) + v * (math.log(ratio[1]) - math.log(ratio[0])))
    w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if w <= width and h <= height:
      return (int(offsets[0] * (height - h + 1)), int(offsets[1] * (width - w + 1)), h, w)
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


class ResizedCropWindowTest(tf.test.TestCase):

  def test_first_window_that_fits(self):
    # 100 x 200 image. Try 0: area 1.85 x 20000 = 37000, ratio 1 -> 192 x 192: too tall.
    # Try 1: area 0.5 x 20000 = 10000, ratio 4/3 -> w = round(115.47) = 115,
    # h = round(86.60) = 87: fits. Offsets floor(0.5 x 14) = 7, floor(0.25 x 86) = 21.
    area = [0.9, 0.0] + [0.99] * 8
    ratio = [0.5, 1.0] + [0.5] * 8
    self.assertEqual(_window(100, 200, area, ratio, [0.5, 0.25]), (7, 21, 87, 115))

  def test_fallback_is_the_central_crop_clamped_to_the_ratio_range(self):
    never = [1.0] * 10   # area 2 x the image, ratio 4/3: never fits
    # Wide (ratio 2 > 4/3): full height, w = round(100 x 4/3) = 133, centred: left 33.
    self.assertEqual(_window(100, 200, never, never, [0.5, 0.5]), (0, 33, 100, 133))
    # Tall (ratio 0.5 < 3/4): full width, h = round(100 / 0.75) = 133, top 33.
    self.assertEqual(_window(200, 100, never, never, [0.5, 0.5]), (33, 0, 133, 100))
    # Within the range: the whole image.
    self.assertEqual(_window(100, 120, never, never, [0.5, 0.5]), (0, 0, 100, 120))

  def test_fixed_seed_matches_the_rule_written_out(self):
    for seed in range(20):
      draws = tf.random.stateless_uniform([22], seed=[seed, 7]).numpy()
      for height, width in ((375, 500), (500, 333), (64, 64)):
        expected = _torchvision_rule(height, width, draws[:10], draws[10:20], draws[20:])
        got = _window(height, width, draws[:10], draws[10:20], draws[20:])
        self.assertEqual(got, expected, msg=(seed, height, width))
        top, left, h, w = got
        self.assertTrue(0 <= top <= height - h and 0 <= left <= width - w)

  def test_resized_crop_output_has_no_padding(self):
    image = tf.random.uniform([30, 50, 3], 0, 255)
    label = tf.constant(np.tile(np.arange(50, dtype=np.int32) % 3, (30, 1)))
    out_image, out_label = augment.resized_crop(image, label, 16, 0.5, 2.0, SEED)
    self.assertEqual(out_image.shape, (16, 16, 3))
    self.assertContainsSubset(set(np.unique(out_label.numpy())), {0, 1, 2})


class ScaleCropTest(tf.test.TestCase):

  def test_scaled_size_is_truncated(self):
    # The KD code: tf.to_int32(side * scale): 5 x 0.75 = 3.75 -> 3 (round would give 4).
    image, label = augment.random_scale(tf.zeros([5, 5, 3]), tf.zeros([5, 5], tf.int32),
                                        0.75, 0.75, SEED)
    self.assertEqual(image.shape[:2], (3, 3))
    self.assertEqual(label.shape, (3, 3))

  def test_padding_is_the_mean_colour_and_the_ignore_label(self):
    image = tf.fill([2, 2, 3], 7.0)
    label = tf.fill([2, 2], 1)
    out_image, out_label = augment.scale_crop(image, label, 4, 1.0, 1.0, SEED)
    padded = out_label.numpy() == 255
    self.assertEqual(padded.sum(), 12)
    self.assertAllClose(out_image.numpy()[padded], np.tile(IMAGENET_MEAN, (12, 1)), atol=1e-4)
    self.assertAllClose(out_image.numpy()[~padded], np.full((4, 3), 7.0))

  def test_unknown_recipe(self):
    with self.assertRaisesRegex(ValueError, "resized_crop, scale_crop"):
      augment.train_augment(tf.zeros([4, 4, 3]), tf.zeros([4, 4], tf.int32), "jitter", 4, 1, 1,
                            SEED)

  def test_draws_depend_only_on_the_image_seed(self):
    # Stateless: the same seed gives the same crop and flip whatever ran before; another
    # image seed gives another.
    image = tf.random.stateless_uniform([30, 40, 3], seed=[1, 1], maxval=255)
    label = tf.constant(np.arange(30 * 40, dtype=np.int32).reshape(30, 40) % 7)
    for recipe in augment.AUGMENTATIONS:
      first = augment.train_augment(image, label, recipe, 16, 0.5, 2.0, tf.constant([3, 9]))
      tf.random.uniform([5])   # unrelated random work in between
      again = augment.train_augment(image, label, recipe, 16, 0.5, 2.0, tf.constant([3, 9]))
      other = augment.train_augment(image, label, recipe, 16, 0.5, 2.0, tf.constant([3, 10]))
      self.assertAllEqual(first[1], again[1], msg=recipe)
      self.assertAllClose(first[0], again[0], msg=recipe)
      self.assertNotAllClose(first[0], other[0], msg=recipe)


if __name__ == "__main__":
  tf.test.main()
