"""tf.data pipelines for one step: read -> remap labels (lookup table) -> augment -> batch.

Images come out normalised with ImageNet statistics, [B, H, W, 3] float32; labels [B, H, W]
int32 in the step's class numbering, 255 = ignore. Under weak supervision (kdseg.data.weak) the
training labels are sparse maps (254 = unlabeled) and come as {"labels": [B, H, W], "classes":
[B, C]}, "classes" the multi-hot U_x of each image's whole annotation (MiB paper Eq. 13).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from kdseg.data import augment
import dataclasses

from kdseg.constants import IMAGENET_MEAN, IMAGENET_STD, UNLABELED
from kdseg.data.source import SegmentationSource, SplitFiles


class PipelineError(ValueError):
  """A split that cannot fill one batch."""


def normalize(image: tf.Tensor) -> tf.Tensor:
  return (tf.cast(image, tf.float32) - IMAGENET_MEAN) / IMAGENET_STD


def denormalize(images: tf.Tensor) -> tf.Tensor:
  """The inverse of normalize: RGB in 0..255 (float32, clipped)."""
  return tf.clip_by_value(images * IMAGENET_STD + IMAGENET_MEAN, 0.0, 255.0)


@dataclasses.dataclass(frozen=True)
class WeakLabels:
  """Training labels are sparse maps of class ids (kdseg.data.weak), not the dataset's label
  files; U_x gets background (column 0) added when background is a class (object segmentation,
  not scene parsing)."""
  num_classes: int
  background_is_class: bool = True


def _sparse_label(file_bytes: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.io.decode_png(file_bytes, channels=1)[..., 0], tf.int32)


def _reader(source: SegmentationSource, label_table: np.ndarray, sparse: bool = False):
  label_table = np.array(label_table, np.int32)
  if sparse:
    label_table[UNLABELED] = UNLABELED
  table = tf.constant(label_table, tf.int32)
  decode = _sparse_label if sparse else source.decode_label

  fetch = (lambda item: item) if source.records is not None else tf.io.read_file

  def read(image, label):
    """Paths (folders) or the files' bytes (records) -> image [H, W, 3] float32, label [H, W]."""
    # decode_image: JPEG (VOC, ADE20K), PNG (Cityscapes) and BMP (MSRC-v2) alike.
    image = tf.cast(tf.io.decode_image(fetch(image), channels=3, expand_animations=False),
                    tf.float32)
    label = tf.gather(table, decode(fetch(label)))
    return image, label

  return read


def image_classes(label: tf.Tensor, weak: WeakLabels) -> tf.Tensor:
  """[C] float32 multi-hot of the classes a (remapped) label map holds, + background if a class."""
  ids = tf.reshape(label, [-1])
  ids = tf.boolean_mask(ids, ids < weak.num_classes)
  present = tf.math.bincount(ids, minlength=weak.num_classes, maxlength=weak.num_classes) > 0
  if weak.background_is_class:
    present = present | tf.one_hot(0, weak.num_classes, on_value=True, off_value=False)
  return tf.cast(present, tf.float32)


def _files_dataset(source: SegmentationSource, files: SplitFiles) -> tf.data.Dataset:
  """(image, label) per image: paths from folders, the files' bytes from records."""
  if source.records is not None:
    return source.records.examples(files)
  return tf.data.Dataset.from_tensor_slices((list(files.image_paths), list(files.label_paths)))


def train_dataset(source: SegmentationSource, files: SplitFiles, label_table: np.ndarray,
                  batch_size: int, crop_size: int, min_scale: float, max_scale: float,
                  seed: int, augmentation: str = "resized_crop", epoch: int = 0,
                  skip_batches: int = 0, weak: WeakLabels | None = None,
                  step: int = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  epochs: int = 1) -> tf.data.Dataset:
  """Epochs `epoch` .. `epoch + epochs - 1` of learning step `step`'s training data, one after
  the other in one dataset (built and traced once, so a step of many short epochs does not pay
  for a new pipeline per epoch): each epoch full batches only, in an order and
  with augmentation draws that depend only on (seed, step, epoch) and each image's position in
  the epoch -- the image's stateless seed is [seed, step] folded with the epoch, then with the
  position -- so `skip_batches` resumes an epoch exactly where an interrupted run left it (the
  skipped images are neither read nor augmented) and no two (seed, step) pairs share draws. `augmentation` is one of kdseg.data.augment.AUGMENTATIONS.
  Labels are remapped before augmentation, so padding (scale_crop) stays 255 whatever the step's
  table does with void pixels. With `weak`, files.label_paths are sparse maps and each label
  comes with its image's U_x (WeakLabels).

  `input_context` (tf.distribute's, one per input pipeline: a worker of a multi-worker cluster)
  shards by image: pipeline i of P takes the positions i, i + P, ... of the epoch's order (of its
  whole global batches only, so every pipeline yields the same number of batches, which the
  collective step needs), reads and augments only those -- from folders it opens only its own
  files -- and batches them per replica. Each image keeps the seed of its position in the
  epoch, so an image is augmented alike whatever the cluster."""
  if len(files.ids) < batch_size:
    raise PipelineError(f"only {len(files.ids)} training images for a batch of {batch_size}; "
                        "lower --batch_size.")
  read = _reader(source, label_table, sparse=weak is not None)

  def load_and_augment(epoch_seed, position, paths):
    image, label = read(*paths)
    classes = None if weak is None else image_classes(label, weak)
    image_seed = tf.random.experimental.stateless_fold_in(epoch_seed, position)
    image, label = augment.train_augment(image, label, augmentation, crop_size, min_scale,
                                         max_scale, image_seed)
    if weak is not None:
      return normalize(image), {"labels": label, "classes": classes}
    return normalize(image), label

  # Folders: a permutation of the whole split. Records come in sequence: a buffer of encoded
  # images (--tfds_shuffle_buffer), the same order on every run of (seed, step, epoch).
  buffer = (len(files.ids) if source.records is None
            else min(len(files.ids), source.records.shuffle_buffer))
  pipelines, pipeline_batch, replica_batch = 1, batch_size, batch_size
  if input_context is not None:
    pipelines = input_context.num_input_pipelines
    pipeline_batch = batch_size // pipelines
    replica_batch = input_context.get_per_replica_batch_size(batch_size)
  images = _files_dataset(source, files)

  def epoch_order(epoch_index):
    """(epoch, position, file) of one epoch, in its order, shard and remaining part."""
    order_seed = int(np.random.default_rng([seed, step, epoch_index]).integers(2**31))
    dataset = images.shuffle(buffer, seed=order_seed, reshuffle_each_iteration=False).enumerate()
    # Whole batches of the epoch only, so no batch mixes two epochs.
    dataset = dataset.take(len(files.ids) // batch_size * batch_size)
    if pipelines > 1:
      dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if epoch_index == epoch:
      dataset = dataset.skip(skip_batches * pipeline_batch)
    return dataset.map(lambda position, item: (epoch_index, position, item))

  orders = [epoch_order(e) for e in range(epoch, epoch + epochs)]
  dataset = orders[0]
  for order in orders[1:]:
    dataset = dataset.concatenate(order)
  seed_pair = tf.constant([seed, step], tf.int64)
  return (dataset
          .map(lambda epoch_index, position, item: load_and_augment(
              tf.random.experimental.stateless_fold_in(seed_pair, epoch_index), position, item),
               num_parallel_calls=tf.data.AUTOTUNE)
          .batch(replica_batch, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))


# Full-resolution evaluation groups images by size within runs of this many batches' images
# (eval_dataset): a bound on the uint8 images held back, whatever the split's sizes.
HELD_BATCHES = 16


def eval_dataset(source: SegmentationSource, files: SplitFiles, label_table: np.ndarray,
                 batch_size: int, crop_size: int = 0,
                 held_images: int | None = None) -> tf.data.Dataset:
  """Full-resolution images (crop_size 0), or resized and center-cropped to crop_size² (MiB's
  VOC/ADE test), in batches of up to `batch_size` images of one size: never padded, so every
  image is predicted as it would be alone (the MiB reference tests full-resolution images one
  at a time) and results do not depend on `batch_size` -- padding would reach every pixel through
  DeepLab-v3's image pooling and the borders through the convolutions. At full resolution the
  split is read in runs of `held_images` images (default HELD_BATCHES x batch_size) and each
  run is grouped by size: images wait, as uint8, until `batch_size` of their size are read or
  the run ends, so at most `held_images` images and labels are held (0.75 MB per 500x375 VOC
  image: 96 MB at batch 8) whatever the split's sizes -- ADE20K's are mostly unique --;
  --eval_batch_size=1 holds none. Batches follow the split's order where sizes allow, not
  exactly; the confusion matrix does not depend on it."""
  read = _reader(source, label_table)

  def load(image_path, label_path):
    image, label = read(image_path, label_path)
    if crop_size:
      image, label = augment.resize_and_center_crop(image, label, crop_size)
      return normalize(image), label
    # Decoded values are whole numbers in 0..255 and evaluation labels class positions or 255.
    return tf.cast(image, tf.uint8), tf.cast(label, tf.uint8)

  dataset = _files_dataset(source, files).map(load, num_parallel_calls=tf.data.AUTOTUNE)
  if crop_size:
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

  def size(image, label):
    del label
    shape = tf.shape(image, out_type=tf.int64)
    return shape[0] * (1 << 32) + shape[1]

  def by_size(images, labels):
    return tf.data.Dataset.zip((images, labels)).group_by_window(
        size, lambda _, window: window.batch(batch_size), window_size=batch_size)

  if batch_size == 1:   # nothing to group: no image waits
    dataset = dataset.batch(1)
  else:
    held = max(held_images or HELD_BATCHES * batch_size, batch_size)
    dataset = dataset.window(held).flat_map(by_size)
  dataset = dataset.map(lambda images, labels: (normalize(images), tf.cast(labels, tf.int32)),
                        num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)
