"""Training augmentation on (image, label) pairs, in-graph: random scale, pad, crop, flip.

The DeepLab recipe used by the MiB paper: scale in [min_scale, max_scale], pad with the ignore
label to the crop size, random crop, horizontal flip. Images are float32 RGB in [0, 255];
labels [H, W] int32 with 255 = ignore.
"""
from __future__ import annotations

import tensorflow as tf

from kdseg.constants import IGNORE_LABEL


def random_scale(image, label, min_scale: float, max_scale: float):
  scale = tf.random.uniform([], min_scale, max_scale)
  size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
  image = tf.image.resize(image, size, method="bilinear")
  label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
  return image, label


def pad_and_random_crop(image, label, crop_size: int):
  """Pads to at least crop_size (image with 0, label with 255), then crops crop_size²."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  target_h, target_w = tf.maximum(height, crop_size), tf.maximum(width, crop_size)
  image = tf.image.pad_to_bounding_box(image, 0, 0, target_h, target_w)
  # Shift labels by +1 so the zero padding of pad_to_bounding_box becomes 255 after the shift back.
  label = tf.image.pad_to_bounding_box(label[..., None] - IGNORE_LABEL, 0, 0, target_h,
                                       target_w)[..., 0] + IGNORE_LABEL
  stacked = tf.concat([image, tf.cast(label[..., None], image.dtype)], axis=-1)
  stacked = tf.image.random_crop(stacked, [crop_size, crop_size, 4])
  return stacked[..., :3], tf.cast(stacked[..., 3], tf.int32)


def random_flip(image, label):
  flip = tf.random.uniform([]) < 0.5
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  return image, label


def train_augment(image, label, crop_size: int, min_scale: float, max_scale: float):
  image, label = random_scale(image, label, min_scale, max_scale)
  image, label = pad_and_random_crop(image, label, crop_size)
  return random_flip(image, label)


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
