"""Datasets read from TFDS records (--data_format=tfds) instead of folders.

The records come from kdseg's builders (kdseg.datasets: kdseg_voc, kdseg_ade20k, ...) or from
TFDS's own cityscapes/semantic_segmentation, whose gtFine labelIds are the encoding kdseg's
Cityscapes reader uses. A records source has the folder reader's classes, class table and
orders; its splits list the ids in the folder reader's order (restored from each example's
`index`), so the presence index, every step's image set and the label remapping are the same as
from the folders. What differs is the order the training pipeline sees images in: records are
read in sequence and shuffled through a buffer (--tfds_shuffle_buffer), not drawn at random
from the whole split, so a run from records is the same experiment, not the same numbers.

Before the first use, one pass over each split's records reads (id, index, counts) -- no image
is decoded -- and caches them in --cache_dir.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import tensorflow as tf

from kdseg import atomic, fs
from kdseg.data.source import DatasetLayoutError, LabelCodec, SegmentationSource, SplitFiles

_CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FeatureNames:
  """Where a records dataset keeps what kdseg reads (None: not stored, computed from labels)."""
  image: str = "image"
  label: str = "label"
  id: str = "id"
  index: str | None = "index"
  counts: str | None = "counts"
  splits: tuple[tuple[str, str], ...] = (("train", "train"), ("val", "val"))


# TFDS's own Cityscapes records: no index (ids sorted like the folder reader's), no counts.
TFDS_CITYSCAPES = FeatureNames(image="image_left", label="segmentation_label", id="image_id",
                               index=None, counts=None,
                               splits=(("train", "train"), ("val", "validation")))
FOREIGN = {"cityscapes/semantic_segmentation": TFDS_CITYSCAPES}


def _decode_raw(png_bytes: tf.Tensor) -> tf.Tensor:
  return tf.io.decode_png(png_bytes, channels=1)[..., 0]


def _read_raw(path: str) -> np.ndarray:
  raise DatasetLayoutError(f"{path} is a record, not a file: this needs --data_format=folder.")


# Labels in records: raw values as a grayscale PNG (the dataset's class table maps them).
RAW_PNG = LabelCodec("raw-png", _decode_raw, _read_raw)


def _skip_decoding(names: FeatureNames) -> dict:
  import tensorflow_datasets as tfds
  return {names.image: tfds.decode.SkipDecoding(), names.label: tfds.decode.SkipDecoding()}


@dataclasses.dataclass(frozen=True)
class Records:
  """One prepared TFDS dataset: its builder and what kdseg reads of it."""
  name: str
  data_dir: str
  names: FeatureNames
  counts_by_split: dict = dataclasses.field(default_factory=dict)
  shuffle_buffer: int = 2048
  shapes: object | None = None   # kdseg_shapes: the generation (ShapesConfig) of its config

  def builder(self):
    from kdseg.data import builders   # (tensorflow_datasets: imported only for records)
    return builders.make_builder(self.name, self.data_dir, self.shapes)

  def split_name(self, split: str) -> str:
    return dict(self.names.splits)[split]

  def counts(self, split: str) -> np.ndarray:
    """[images, 256] int64 raw value counts of `split`, in the split's id order."""
    return self.counts_by_split[split]

  def examples(self, files: SplitFiles) -> tf.data.Dataset:
    """(image bytes, label bytes) of the ids of `files`, in the records' (fixed) order."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(files.ids), tf.string),
                                            tf.ones(len(files.ids), tf.int32)), 0)
    names = self.names
    dataset = self.builder().as_dataset(split=self.split_name(files.split), shuffle_files=False,
                                        decoders=_skip_decoding(names))
    return (dataset.filter(lambda example: table.lookup(example[names.id]) > 0)
            .map(lambda example: (example[names.image], example[names.label])))


def _index(records: Records, split: str, cache_dir: str) -> tuple[tuple[str, ...], np.ndarray]:
  """(ids in the folder reader's order, their raw value counts [n, 256]); cached."""
  builder = records.builder()
  info = fs.read_text(fs.join(str(builder.data_dir), "dataset_info.json"))
  key = hashlib.sha1("\n".join((records.name, str(builder.data_dir), split, info)).encode())
  cache = fs.join(cache_dir, f"records-v{_CACHE_VERSION}-{key.hexdigest()[:16]}.npz")
  if fs.isfile(cache):
    stored = fs.load_npz(cache)
    return tuple(str(i) for i in stored["ids"]), stored["counts"]
  names = records.names
  dataset = builder.as_dataset(split=records.split_name(split), shuffle_files=False,
                               decoders=_skip_decoding(names))

  def summary(example):
    if names.counts:
      counts = example[names.counts]
    else:
      values = tf.reshape(tf.cast(_decode_raw(example[names.label]), tf.int32), [-1])
      counts = tf.math.bincount(values, minlength=256, maxlength=256, dtype=tf.int64)
    index = example[names.index] if names.index else tf.constant(-1, tf.int64)
    return example[names.id], index, counts

  ids, order, counts = [], [], []
  for image_id, index, row in dataset.map(summary, num_parallel_calls=tf.data.AUTOTUNE)\
                                     .as_numpy_iterator():
    ids.append(image_id.decode())
    order.append(int(index))
    counts.append(row)
  if not ids:
    raise DatasetLayoutError(f"{records.name} at {records.data_dir} has no {split} example.")
  rows = np.lexsort((np.array(ids), np.array(order)))   # by index, ids sorted when absent
  ids = tuple(ids[r] for r in rows)
  counts = np.stack(counts)[rows].astype(np.int64)
  atomic.write_npz(cache, ids=np.array(ids), counts=counts)
  return ids, counts


def load_records_source(template: SegmentationSource, name: str, data_dir: str, cache_dir: str,
                        shuffle_buffer: int = 2048, shapes=None) -> SegmentationSource:
  """`template` (a dataset's classes and class table, kdseg.data.datasets.DESCRIBE) with the
  splits of the records `name` under `data_dir` (`shapes`: the generation of kdseg_shapes)."""
  import tensorflow_datasets as tfds
  data_dir = fs.absolute(data_dir)
  records = Records(name, data_dir, FOREIGN.get(name, FeatureNames()),
                    shuffle_buffer=shuffle_buffer, shapes=shapes)
  source = ("the same --shapes_* flags" if shapes is not None
            else "--manual_dir=<the dataset's folder or archive>")
  how = (f"build them with: python -m kdseg.datasets --dataset={template.name} {source} "
         f"--tfds_data_dir={data_dir} (or tfds build {name.split('/')[0]} "
         "--imports=kdseg.datasets; docs/DATASETS.md, 'Datasets as TFDS records')")
  try:
    builder = records.builder()
  except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
    raise DatasetLayoutError(f"--tfds_name={name}: {str(error).splitlines()[0]}") from None
  if not builder.is_prepared():
    raise DatasetLayoutError(f"no {name} records under --tfds_data_dir={data_dir}; {how}.")
  splits, counts = {}, {}
  for split, _ in records.names.splits:
    ids, counts[split] = _index(records, split, cache_dir)
    where = fs.join(str(builder.data_dir), records.split_name(split))
    splits[split] = SplitFiles(ids, tuple(f"{where}#{i}" for i in ids),
                               tuple(f"{where}#{i}:label" for i in ids), split)
  records = dataclasses.replace(records, counts_by_split=counts)
  return dataclasses.replace(template, root=str(builder.data_dir), splits=splits, codec=RAW_PNG,
                             records=records)
