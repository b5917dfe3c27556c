"""Pascal VOC 2012 layout reader (also reads the shapes dataset, which is written in this layout),
and the two label codecs built on the VOC colour map that the other readers share.

  <root>/JPEGImages/<id>.jpg
  <root>/SegmentationClass/<id>.png        palette PNG (VOC colour map), or
  <root>/SegmentationClassAug/<id>.png     grayscale index PNG (SBD augmentation,
                                           written by tools/prepare_voc.py)
  <root>/ImageSets/Segmentation/{train,val}.txt  (train_aug.txt, if present, is the train split)
Class ids: 0 background, 1..20 objects, 255 ignore (object borders, difficult regions).
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


from kdseg import fs
from kdseg.data.layout import check_dataset_root, image_files, require_dirs
from kdseg.data.source import (DatasetLayoutError, LabelCodec,  # noqa: F401
                               LabelFormatError, SegmentationSource, SplitFiles, identity_table)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
# The MiB reference's second VOC order (tasks.py "19-1b"): bottle (5) is the class added.
VOC_ORDERS = {"b": {"19-1": ((0,) + tuple(c for c in range(1, 21) if c != 5), (5,))}}



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


def rgb_to_index(rgb: np.ndarray) -> np.ndarray:
  """numpy twin of palette_rgb_to_index: [H, W, 3] uint8 colours -> [H, W] uint8 indices."""
  rgb = rgb.astype(np.int32)
  index = np.zeros(rgb.shape[:-1], np.int32)
  for bit in range(8):
    for channel in range(3):
      index |= ((rgb[..., channel] >> (7 - bit)) & 1) << (3 * bit + channel)
  return index.astype(np.uint8)


def read_index_png(path: str) -> np.ndarray:
  """Grayscale index PNG, or palette PNG in the VOC colour map -> [H, W] uint8 raw values."""
  with fs.open_image(path) as label:
    if label.mode == "P":
      palette = np.array(label.getpalette()[:768], np.uint8).reshape(-1, 3)
      if not np.array_equal(palette, voc_palette()[:len(palette)]):
        raise LabelFormatError(f"{path}: palette PNG whose palette is not the VOC colour map; "
                               "save labels as grayscale index PNGs instead")
    elif label.mode != "L":
      raise LabelFormatError(f"{path}: label PNG in mode {label.mode}; expected a palette (P) "
                             "or grayscale (L) index image")
    return np.asarray(label)


def decode_colour_label(file_bytes: tf.Tensor) -> tf.Tensor:
  """RGB label image (any format tf.io.decode_image reads) coloured with the VOC colour map ->
  [H, W] uint8 colour indices."""
  rgb = tf.io.decode_image(file_bytes, channels=3, expand_animations=False)
  return palette_rgb_to_index(rgb)


def read_colour_label(path: str) -> np.ndarray:
  with fs.open_image(path) as label:
    if label.mode not in ("RGB", "P"):
      raise LabelFormatError(f"{path}: colour-coded label in mode {label.mode}; expected RGB")
    return rgb_to_index(np.asarray(label.convert("RGB")))


# Labels storing indices (VOC, SBD, ADE20K, Cityscapes labelIds).
INDEX_PNG = LabelCodec("index-png", decode_voc_label, read_index_png)
# Labels painted in the VOC colour map (MSRC-v2 ground truth bitmaps).
COLOUR_CODED = LabelCodec("voc-colours", decode_colour_label, read_colour_label)


def _read_ids(list_file: str) -> tuple[str, ...]:
  with fs.open(list_file) as handle:
    return tuple(line.split()[0] for line in handle if line.strip())


def read_voc_layout(root: str, class_names: tuple[str, ...] = VOC_CLASSES,
                    label_dir: str | None = None, name: str = "voc",
                    splits: tuple[str, ...] = ("train", "val")) -> SegmentationSource:
  """Reads a VOC-layout tree. `label_dir` defaults to SegmentationClassAug if present, else
  SegmentationClass; the train split is train_aug.txt when that list exists. Raises
  DatasetLayoutError naming the first missing path."""
  expected = ("expected the Pascal VOC 2012 layout: JPEGImages/<id>.jpg, "
              "SegmentationClass[Aug]/<id>.png, ImageSets/Segmentation/{train,val}.txt")
  root = check_dataset_root(root, expected, "For VOC, download VOCtrainval_11-May-2012.tar and "
                            "point --data_root at VOCdevkit/VOC2012 (tools/prepare_voc.py adds SBD).")
  if label_dir is None:
    label_dir = ("SegmentationClassAug" if fs.isdir(fs.join(root, "SegmentationClassAug"))
                 else "SegmentationClass")
  lists = fs.join(root, "ImageSets", "Segmentation")
  require_dirs(root, ("JPEGImages", label_dir, lists), expected)
  files = {}
  for split in splits:
    list_name = ("train_aug" if split == "train" and fs.isfile(
        fs.join(lists, "train_aug.txt")) else split)
    list_file = fs.join(lists, f"{list_name}.txt")
    if not fs.isfile(list_file):
      raise DatasetLayoutError(f"missing image list {list_file}: {expected}")
    ids = _read_ids(list_file)
    if not ids:
      raise DatasetLayoutError(f"image list {list_file} is empty")
    files[split] = SplitFiles(ids, image_files(root, "JPEGImages", ids, ".jpg", list_file),
                              image_files(root, label_dir, ids, ".png", list_file))
  return voc_source(root, files, class_names, name)


def voc_source(root: str, splits: dict[str, SplitFiles], class_names: tuple[str, ...] = VOC_CLASSES,
               name: str = "voc") -> SegmentationSource:
  """VOC's classes (or shapes', which share them), orders and label encoding around `splits`."""
  palette = tuple(tuple(int(v) for v in row) for row in voc_palette())
  return SegmentationSource(name=name, root=root, class_names=tuple(class_names), splits=splits,
                            codec=INDEX_PNG, class_table=identity_table(len(class_names)),
                            palette=palette,
                            class_orders=VOC_ORDERS if tuple(class_names) == VOC_CLASSES else {})
