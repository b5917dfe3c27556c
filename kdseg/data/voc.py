"""Pascal VOC 2012 layout reader (also reads the shapes dataset, which is written in this layout).

  <root>/JPEGImages/<id>.jpg
  <root>/SegmentationClass/<id>.png        palette PNG (VOC colour map), or
  <root>/SegmentationClassAug/<id>.png     grayscale index PNG (SBD augmentation)
  <root>/ImageSets/Segmentation/{train,val}.txt
Class ids: 0 background, 1..20 objects, 255 ignore (object borders, difficult regions).
"""
from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf

from kdseg.data.source import DatasetLayoutError, SegmentationSource, SplitFiles

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

IGNORE_LABEL = 255


@functools.lru_cache(maxsize=None)
def voc_palette() -> np.ndarray:
  """[256, 3] uint8 VOC colour map: the bits of the index interleaved into R, G, B (MSB first)."""
  index = np.arange(256)
  palette = np.zeros((256, 3), np.uint8)
  for bit in range(8):
    for channel in range(3):
      palette[:, channel] |= (((index >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
  return palette


def palette_rgb_to_index(rgb: tf.Tensor) -> tf.Tensor:
  """Inverts the VOC colour map in-graph: [H, W, 3] uint8 colours -> [H, W] uint8 indices.

  tf.io.decode_png expands palette PNGs to RGB; the VOC map is a bijection on 0..255, so the index
  is recovered exactly by de-interleaving the bits.
  """
  rgb = tf.cast(rgb, tf.int32)
  index = tf.zeros(tf.shape(rgb)[:-1], tf.int32)
  for bit in range(8):
    for channel in range(3):
      value = tf.bitwise.bitwise_and(tf.bitwise.right_shift(rgb[..., channel], 7 - bit), 1)
      index = tf.bitwise.bitwise_or(index, tf.bitwise.left_shift(value, 3 * bit + channel))
  return tf.cast(index, tf.uint8)


def decode_voc_label(png_bytes: tf.Tensor) -> tf.Tensor:
  """Palette (VOC colour map) or grayscale index PNG bytes -> [H, W] uint8 class ids."""
  decoded = tf.io.decode_png(png_bytes, channels=0)
  return tf.cond(tf.shape(decoded)[-1] >= 3,
                 lambda: palette_rgb_to_index(decoded[..., :3]),
                 lambda: decoded[..., 0])


def _read_ids(list_file: str) -> tuple[str, ...]:
  with open(list_file) as handle:
    return tuple(line.split()[0] for line in handle if line.strip())


def read_voc_layout(root: str, class_names: tuple[str, ...] = VOC_CLASSES,
                    label_dir: str | None = None, name: str = "voc",
                    splits: tuple[str, ...] = ("train", "val")) -> SegmentationSource:
  """Reads a VOC-layout tree. `label_dir` defaults to SegmentationClassAug if present, else
  SegmentationClass. Raises DatasetLayoutError naming the first missing path."""
  root = os.path.abspath(os.path.expanduser(root))
  expected = ("expected the Pascal VOC 2012 layout: JPEGImages/<id>.jpg, "
              "SegmentationClass[Aug]/<id>.png, ImageSets/Segmentation/{train,val}.txt")
  if not os.path.isdir(root):
    raise DatasetLayoutError(f"dataset folder {root} does not exist ({expected}). For VOC, "
                             "download VOCtrainval_11-May-2012.tar and point --data_root at "
                             "VOCdevkit/VOC2012.")
  if label_dir is None:
    label_dir = ("SegmentationClassAug" if os.path.isdir(os.path.join(root, "SegmentationClassAug"))
                 else "SegmentationClass")
  for folder in ("JPEGImages", label_dir, os.path.join("ImageSets", "Segmentation")):
    if not os.path.isdir(os.path.join(root, folder)):
      raise DatasetLayoutError(f"missing folder {os.path.join(root, folder)}: {expected}")
  files = {}
  for split in splits:
    list_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
    if not os.path.isfile(list_file):
      raise DatasetLayoutError(f"missing image list {list_file}: {expected}")
    ids = _read_ids(list_file)
    if not ids:
      raise DatasetLayoutError(f"image list {list_file} is empty")
    for folder, suffix in (("JPEGImages", ".jpg"), (label_dir, ".png")):
      present = set(os.listdir(os.path.join(root, folder)))
      missing = [i for i in ids if i + suffix not in present]
      if missing:
        raise DatasetLayoutError(
            f"{list_file} lists {len(missing)} ids without {os.path.join(root, folder)}/<id>"
            f"{suffix}, e.g. {missing[:3]}; restore those files or remove them from the list.")
    images = tuple(os.path.join(root, "JPEGImages", f"{i}.jpg") for i in ids)
    labels = tuple(os.path.join(root, label_dir, f"{i}.png") for i in ids)
    files[split] = SplitFiles(ids, images, labels)
  palette = tuple(tuple(int(v) for v in row) for row in voc_palette())
  return SegmentationSource(name=name, root=root, class_names=tuple(class_names), splits=files,
                            decode_label=decode_voc_label, palette=palette)
