"""A dataset on disk as the rest of kdseg sees it: named classes and, per split, files by image id.

Readers (voc.py, later ade20k.py, cityscapes.py, ...) differ only in how they find files; they all
return a `SegmentationSource`, and splits, the presence index and the tf.data pipeline take it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf


class DatasetLayoutError(FileNotFoundError):
  """The dataset tree on disk does not have the expected layout."""


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """Image ids of one split with their image and label paths (same order)."""
  ids: tuple[str, ...]
  image_paths: tuple[str, ...]
  label_paths: tuple[str, ...]

  def select(self, ids: list[str] | tuple[str, ...]) -> "SplitFiles":
    position = {image_id: i for i, image_id in enumerate(self.ids)}
    missing = [image_id for image_id in ids if image_id not in position]
    if missing:
      raise KeyError(f"{len(missing)} image ids are not in this split, e.g. {missing[:3]}")
    rows = [position[image_id] for image_id in ids]
    return SplitFiles(tuple(ids), tuple(self.image_paths[r] for r in rows),
                      tuple(self.label_paths[r] for r in rows))


@dataclasses.dataclass(frozen=True)
class SegmentationSource:
  """class_names[i] is the name of original class id i (0 = background); 255 means ignore.

  `decode_label(png_bytes) -> [H, W] uint8` maps the stored label encoding to class ids in-graph.
  """
  name: str
  root: str
  class_names: tuple[str, ...]
  splits: dict[str, SplitFiles]
  decode_label: Callable[[tf.Tensor], tf.Tensor]
  palette: tuple[tuple[int, int, int], ...]

  @property
  def num_object_classes(self) -> int:
    return len(self.class_names) - 1

  def split(self, name: str) -> SplitFiles:
    if name not in self.splits:
      raise DatasetLayoutError(
          f"{self.name} at {self.root} has no split {name!r}; available: {sorted(self.splits)}")
    return self.splits[name]
