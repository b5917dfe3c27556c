"""Class-presence index: how many pixels of each class every label file holds, from one parallel
pass over the label files, cached.

Every split of every setting, and the pixel-frequency class order, is computed from this
[num_images, 256] matrix, so the label files are read once per dataset, not once per step. The
cache stores raw label values (before the dataset's class table), so it does not depend on how
classes are mapped. The same pass validates the data: label values the dataset never uses, foreign
palettes, unreadable labels and undecodable images are reported with their file names before any
training starts.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

from kdseg import atomic, fs
from kdseg.data.source import INVALID, LabelCodec, SegmentationSource, SplitFiles

_CACHE_VERSION = 2


class LabelValueError(ValueError):
  """Label files hold values that are neither a class id of the dataset nor 255."""


def _fingerprint(paths: tuple[str, ...]) -> np.ndarray:
  return np.array([fs.stat(p) for p in paths], np.int64).reshape(len(paths), 2)


def read_pair(codec: LabelCodec, label_path: str,
              image_path: str) -> tuple[np.ndarray | None, str | None]:
  """(raw label values [H, W] uint8, None), or (None, the problem) when the label or the image
  cannot be read or their sizes differ."""
  try:
    values = codec.read(label_path)
    with fs.open_image(image_path) as image:
      image.load()  # a full decode: truncated or corrupt images are found here, not mid-training
      if (image.height, image.width) != values.shape:
        return None, (f"{image_path} is {image.width}x{image.height} but its label "
                      f"{label_path} is {values.shape[1]}x{values.shape[0]}")
  except (OSError, SyntaxError, ValueError, tf.errors.OpError) as error:
    return None, f"unreadable file for {label_path} / {image_path}: {error}"
  return values, None


def _scan_one(codec: LabelCodec, label_path: str,
              image_path: str) -> tuple[np.ndarray, str | None]:
  """Returns (raw value counts [256] int64, problem or None) for one image/label pair."""
  values, problem = read_pair(codec, label_path, image_path)
  if problem:
    return np.zeros(256, np.int64), problem
  return np.bincount(values.ravel(), minlength=256).astype(np.int64), None


def _scan(codec: LabelCodec, files: SplitFiles, rows: list[int], workers: int) -> np.ndarray:
  counts = np.zeros((len(rows), 256), np.int64)
  problems = []
  # A progress bar on a terminal when the scan is long (a first pass over VOC/ADE20K labels).
  bar = keras.utils.Progbar(len(rows), verbose=int(len(rows) > 500 and sys.stdout.isatty()),
                            unit_name="label")
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    results = pool.map(_scan_one, [codec] * len(rows), [files.label_paths[r] for r in rows],
                       [files.image_paths[r] for r in rows], chunksize=64)
    for index, (row_counts, problem) in enumerate(results):
      counts[index] = row_counts
      if problem:
        problems.append(problem)
      if index % 100 == 99 or index == len(rows) - 1:
        bar.update(index + 1)
  if problems:
    raise LabelValueError(f"{len(problems)} unusable files; fix or remove them from the image "
                          "list:\n  " + "\n  ".join(problems[:10]))
  return counts


def raw_value_counts(files: SplitFiles, codec: LabelCodec, cache_dir: str,
                     workers: int | None = None) -> np.ndarray:
  """[len(files.ids), 256] int64: counts[i, v] = pixels of raw value v in label file i.

  Cached in `cache_dir`, keyed by the label files and codec; rows whose label or image file
  changed (mtime or size) are rescanned.
  """
  workers = workers or min(8, (os.cpu_count() or 1) * 2)
  key = hashlib.sha1("\n".join((codec.name,) + files.label_paths).encode()).hexdigest()[:16]
  cache_path = fs.join(cache_dir, f"presence-v{_CACHE_VERSION}-{key}.npz")
  fingerprint = np.concatenate([_fingerprint(files.label_paths),
                                _fingerprint(files.image_paths)], axis=1)
  counts = np.zeros((len(files.ids), 256), np.int64)
  stale = list(range(len(files.ids)))
  cached = None
  if fs.isfile(cache_path):
    try:
      cached = fs.load_npz(cache_path)
      cached["fingerprint"], cached["counts"]   # noqa: B018  (both present)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):
      print(f"kdseg: {cache_path} cannot be read (cut short or damaged): scanning the labels "
            "again", flush=True)
      cached = None
  if cached is not None:
    if cached["fingerprint"].shape == fingerprint.shape:
      fresh = np.all(cached["fingerprint"] == fingerprint, axis=1)
      counts[fresh] = cached["counts"][fresh]
      stale = np.flatnonzero(~fresh).tolist()
  if stale:
    counts[stale] = _scan(codec, files, stale, workers)
    # An interrupted scan never leaves a truncated cache behind.
    atomic.write_npz(cache_path, counts=counts, fingerprint=fingerprint)
  return counts


def class_pixel_counts(source: SegmentationSource, split: str, cache_dir: str,
                       workers: int | None = None) -> np.ndarray:
  """[images of `split`, 256] int64 pixels per class id (column 255 = ignored pixels).

  Raises LabelValueError naming the files whose labels hold raw values outside the dataset's
  class table.
  """
  files = source.split(split)
  raw = (source.records.counts(split) if source.records is not None
         else raw_value_counts(files, source.codec, cache_dir, workers))
  check_values(source, files, raw)
  table = source.class_table.astype(np.int64)
  one_hot = np.zeros((256, 256), np.int64)
  valid = table != INVALID
  one_hot[np.flatnonzero(valid), table[valid]] = 1
  return raw @ one_hot


def class_presence(source: SegmentationSource, split: str, cache_dir: str,
                   workers: int | None = None) -> np.ndarray:
  """[images of `split`, 256] bool: present[i, c] iff label file i holds class id c."""
  return class_pixel_counts(source, split, cache_dir, workers) > 0


def check_values(source: SegmentationSource, files: SplitFiles, raw: np.ndarray) -> None:
  """LabelValueError naming the label files (rows of `raw`, raw value counts [n, 256]) that hold
  values outside the dataset's class table."""
  invalid = source.class_table == INVALID
  bad_rows = np.flatnonzero(raw[:, invalid].any(axis=1))
  if bad_rows.size:
    examples = [f"{files.label_paths[r]} (values {np.flatnonzero((raw[r] > 0) & invalid).tolist()})"
                for r in bad_rows[:5]]
    valid = np.flatnonzero(~invalid).tolist()
    raise LabelValueError(
        f"{bad_rows.size} {source.name} label files contain values outside the dataset's label "
        f"values ({_ranges(valid)}):\n  " + "\n  ".join(examples) +
        "\nFix these labels or choose the --dataset that matches them.")


def _ranges(values: list[int]) -> str:
  """[0, 1, 2, 5, 255] -> '0..2, 5, 255'."""
  parts, start = [], None
  for index, value in enumerate(values):
    if start is None:
      start = value
    if index + 1 == len(values) or values[index + 1] != value + 1:
      parts.append(str(start) if start == value else f"{start}..{value}")
      start = None
  return ", ".join(parts)
