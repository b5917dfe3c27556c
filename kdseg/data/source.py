"""A dataset on disk as the rest of kdseg sees it: named classes and, per split, files by image id.

Readers (voc.py, ade20k.py, cityscapes.py, msrc.py) differ only in how they find files and how
their label files encode classes; they all return a `SegmentationSource`, and splits, the presence
index and the tf.data pipeline take it. A label file is decoded in two stages that every reader
shares: its `LabelCodec` turns the file into raw values 0..255 (e.g. Cityscapes labelIds, MSRC
colour indices), then the source's `class_table` maps raw values to class ids (255 = ignore,
-1 = a value the dataset never uses, reported by the presence scan).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from kdseg.constants import IGNORE_LABEL

INVALID = -1  # class_table entry of a raw value the dataset's labels must not contain


class DatasetLayoutError(FileNotFoundError):
  """The dataset tree on disk does not have the expected layout."""


class LabelFormatError(ValueError):
  """A label file whose encoding is not the dataset's (mode, palette, channels)."""


@dataclasses.dataclass(frozen=True)
class LabelCodec:
  """How label files store raw values: `decode` in-graph (file bytes -> [H, W] uint8) and `read`
  in numpy for the presence scan (path -> [H, W] uint8; raises LabelFormatError). Both must agree.
  """
  name: str
  decode: Callable[[tf.Tensor], tf.Tensor]
  read: Callable[[str], np.ndarray]


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """Image ids of one split with their image and label paths (same order).

  From TFDS records (kdseg.data.records) the paths only name the records (for messages) and
  `split` says which split of the records holds the ids.
  """
  ids: tuple[str, ...]
  image_paths: tuple[str, ...]
  label_paths: tuple[str, ...]
  split: str = ""

  def select(self, ids: list[str] | tuple[str, ...]) -> "SplitFiles":
    position = {image_id: i for i, image_id in enumerate(self.ids)}
    missing = [image_id for image_id in ids if image_id not in position]
    if missing:
      raise KeyError(f"{len(missing)} image ids are not in this split, e.g. {missing[:3]}")
    rows = [position[image_id] for image_id in ids]
    return SplitFiles(tuple(ids), tuple(self.image_paths[r] for r in rows),
                      tuple(self.label_paths[r] for r in rows), self.split)


def identity_table(num_classes: int) -> np.ndarray:
  """class_table of labels that store class ids directly: 0..num_classes-1 and 255."""
  table = np.full(256, INVALID, np.int16)
  table[:num_classes] = np.arange(num_classes)
  table[IGNORE_LABEL] = IGNORE_LABEL
  return table


@dataclasses.dataclass(frozen=True)
class SegmentationSource:
  """class_names[i] is the name of class id i (0 = background); 255 means ignore.

  class_table: [256] int16, raw label value -> class id, 255 (ignore) or INVALID.
  scenarios: the dataset's named tasks (e.g. Cityscapes 'vehicles') -> (step sizes task name,
  class order by name).
  class_orders: the dataset's named class orders -> {task -> class ids per step, background in
  step 0} (the MiB reference's ADE20K orders "b" and "c", VOC's "19-1b").
  """
  name: str
  root: str
  class_names: tuple[str, ...]
  splits: dict[str, SplitFiles]
  codec: LabelCodec
  class_table: np.ndarray
  palette: tuple[tuple[int, int, int], ...]
  scenarios: dict[str, tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=dict)
  class_orders: dict[str, dict[str, tuple[tuple[int, ...], ...]]] = dataclasses.field(
      default_factory=dict)
  # Scene parsing (ADE20K; MiB paper §5.1): every pixel is one of the classes, so weak labels'
  # U_x never holds background. Object segmentation (the others): background is in every U_x.
  scene_parsing: bool = False
  # Read from TFDS records instead of files (kdseg.data.records.Records): image and label bytes
  # and the class-presence counts come from there.
  records: object | None = None

  @property
  def num_object_classes(self) -> int:
    return len(self.class_names) - 1

  def split(self, name: str) -> SplitFiles:
    if name not in self.splits:
      raise DatasetLayoutError(
          f"{self.name} at {self.root} has no split {name!r}; available: {sorted(self.splits)}")
    return self.splits[name]

  def decode_label(self, file_bytes: tf.Tensor) -> tf.Tensor:
    """Label file bytes -> [H, W] int32 class ids (255 ignore), in-graph."""
    table = np.where(self.class_table == INVALID, IGNORE_LABEL, self.class_table)
    return tf.gather(tf.constant(table, tf.int32), tf.cast(self.codec.decode(file_bytes), tf.int32))
