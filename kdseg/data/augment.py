"""Training augmentation on (image, label) pairs, in-graph. Two recipes (--augment):

  resized_crop  the MiB reference (`dataset/transform.py`, `run.py`): RandomResizedCrop(crop,
                scale=(min_scale, max_scale)) with torchvision's rule -- a window of area
                U(min_scale, max_scale) x the image's and log-uniform aspect ratio in [3/4, 4/3],
                up to 10 tries for one that fits inside the image, else the central crop of the
                whole image clamped to the ratio range -- resized to crop x crop (bilinear image,
                nearest label; no padding, the aspect ratio is not kept); then a flip (p = 0.5).
  scale_crop    DeepLab's, as the KD paper's code (LTTM/IL-SemSegm `utils/image_utils.py`) runs
                it: both sides scaled by one factor U(min_scale, max_scale) and truncated to
                integers, padded to crop size (image with the normalisation mean, i.e. 0 once
                normalised, as that code pads its mean-subtracted image with 0; label with 255),
                a random crop x crop window, a flip (p = 0.5).
Images are float32 RGB in [0, 255]; labels [H, W] int32 with 255 = ignore.

Every random choice is a stateless draw from a `seed` ([2] int tensor, one per training image and
epoch: kdseg.data.pipeline keys it by the run's seed, the epoch and the image's position), so an
image's augmentation does not depend on what else the pipeline ran before it: a resumed epoch
repeats exactly the draws an uninterrupted one would have made.
"""
from __future__ import annotations

import math

import tensorflow as tf

from kdseg.constants import IGNORE_LABEL, IMAGENET_MEAN

AUGMENTATIONS = ("resized_crop", "scale_crop")
RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)   # torchvision's default aspect ratios
TRIES = 10


def _split(seed, count: int):
  return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def random_flip(image, label, seed):
  flip = tf.random.stateless_uniform([], seed) < 0.5
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  return image, label


def random_scale(image, label, min_scale: float, max_scale: float, seed):
  """Both sides times one U(min_scale, max_scale) factor, truncated (the KD code's to_int32)."""
  scale = tf.random.stateless_uniform([], seed, min_scale, max_scale)
  size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
  image = tf.image.resize(image, size, method="bilinear")
  label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
  return image, label


def pad_and_random_crop(image, label, crop_size: int, seed):
  """Pads to at least crop_size (image with the mean colour, label with 255), crops crop_size²."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  target_h, target_w = tf.maximum(height, crop_size), tf.maximum(width, crop_size)
  # pad_to_bounding_box pads with 0: shift so that 0 lands on the wanted value, then shift back.
  image = tf.image.pad_to_bounding_box(image - IMAGENET_MEAN, 0, 0, target_h,
                                       target_w) + IMAGENET_MEAN
  label = tf.image.pad_to_bounding_box(label[..., None] - IGNORE_LABEL, 0, 0, target_h,
                                       target_w)[..., 0] + IGNORE_LABEL
  stacked = tf.concat([image, tf.cast(label[..., None], image.dtype)], axis=-1)
  stacked = tf.image.stateless_random_crop(stacked, [crop_size, crop_size, 4], seed)
  return stacked[..., :3], tf.cast(stacked[..., 3], tf.int32)


def scale_crop(image, label, crop_size: int, min_scale: float, max_scale: float, seed):
  scale_seed, crop_seed, flip_seed = _split(seed, 3)
  image, label = random_scale(image, label, min_scale, max_scale, scale_seed)
  image, label = pad_and_random_crop(image, label, crop_size, crop_seed)
  return random_flip(image, label, flip_seed)


def resized_crop_window(height, width, scale: tuple[float, float], area_draws, ratio_draws,
                        offset_draws, ratio: tuple[float, float] = RATIO_RANGE):
  """(top, left, h, w) of torchvision's RandomResizedCrop window, from uniform [0, 1) draws.

  area_draws, ratio_draws: [TRIES] draws, one pair per try; offset_draws: [2] for the top and
  left offsets of the first window that fits. Try k: area = (s0 + u (s1 - s0)) H W, aspect
  r = exp(log r0 + v (log r1 - log r0)), w = round(sqrt(area r)), h = round(sqrt(area / r))
  (half to even, as Python's round); it fits when w <= W and h <= H, and its offsets are
  floor(u (H - h + 1)), floor(u (W - w + 1)) (random.randint's inclusive range). No try fits:
  the central window of the whole image, clamped to the ratio range.
  """
  height_f, width_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  area = (scale[0] + area_draws * (scale[1] - scale[0])) * height_f * width_f
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = tf.exp(log_low + ratio_draws * (log_high - log_low))
  widths = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  heights = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (widths <= width) & (heights <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  h, w = heights[first], widths[first]
  top = tf.cast(offset_draws[0] * tf.cast(height - h + 1, tf.float32), tf.int32)
  left = tf.cast(offset_draws[1] * tf.cast(width - w + 1, tf.float32), tf.int32)
  # Fallback: whole image, clamped to the ratio range, centred.
  in_ratio = width_f / height_f
  fallback_w = tf.where(in_ratio > ratio[1],
                        tf.cast(tf.round(height_f * ratio[1]), tf.int32), width)
  fallback_h = tf.where(in_ratio < ratio[0],
                        tf.cast(tf.round(width_f / ratio[0]), tf.int32), height)
  found = tf.reduce_any(fits)
  h = tf.where(found, h, fallback_h)
  w = tf.where(found, w, fallback_w)
  top = tf.where(found, top, (height - fallback_h) // 2)
  left = tf.where(found, left, (width - fallback_w) // 2)
  return top, left, h, w


def resized_crop(image, label, crop_size: int, min_scale: float, max_scale: float, seed):
  window_seed, flip_seed = _split(seed, 2)
  shape = tf.shape(image)
  draws = tf.random.stateless_uniform([2 * TRIES + 2], window_seed)
  top, left, h, w = resized_crop_window(shape[0], shape[1], (min_scale, max_scale),
                                        draws[:TRIES], draws[TRIES:2 * TRIES], draws[2 * TRIES:])
  size = [crop_size, crop_size]
  # antialias: PIL's bilinear resize (the reference's) filters over the source footprint when
  # it shrinks.
  image = tf.image.resize(image[top:top + h, left:left + w], size, method="bilinear",
                          antialias=True)
  label = tf.image.resize(label[top:top + h, left:left + w, None], size,
                          method="nearest")[..., 0]
  return random_flip(image, label, flip_seed)


def train_augment(image, label, augmentation: str, crop_size: int, min_scale: float,
                  max_scale: float, seed):
  """One of AUGMENTATIONS; min_scale/max_scale are the window's area fraction for
  resized_crop and the side scale factor for scale_crop; seed: [2] ints of this image."""
  if augmentation == "resized_crop":
    return resized_crop(image, label, crop_size, min_scale, max_scale, seed)
  if augmentation == "scale_crop":
    return scale_crop(image, label, crop_size, min_scale, max_scale, seed)
  raise ValueError(f"--augment={augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}")


def resize_and_center_crop(image, label, size: int):
  """The MiB reference's cropped test (Resize(size) then CenterCrop(size), torchvision
  semantics): the shorter side is resized to `size` (labels: nearest), then the central
  size x size window is kept."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = size / tf.reduce_min(shape)
  resized = tf.cast(tf.round(shape * scale), tf.int32)
  image = tf.image.resize(image, resized, method="bilinear")
  label = tf.image.resize(label[..., None], resized, method="nearest")[..., 0]
  top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
  return (image[top:top + size, left:left + size], label[top:top + size, left:left + size])
