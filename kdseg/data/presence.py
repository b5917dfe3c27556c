"""Class-presence index: which classes occur in each label file, from one parallel pass, cached.

Every split of every setting is computed from this [num_images, 256] boolean matrix, so the label
files are read once per dataset, not once per step. The same pass validates the data: label values
outside the class set, foreign palettes, unreadable labels and undecodable images are reported
with their file names before any training starts.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import sys
import tempfile

import keras
import numpy as np
from PIL import Image

from kdseg.data.source import SplitFiles
from kdseg.data.voc import IGNORE_LABEL, voc_palette

_CACHE_VERSION = 1


class LabelValueError(ValueError):
  """Label files hold values that are neither a class id of the dataset nor 255."""


def _fingerprint(paths: tuple[str, ...]) -> np.ndarray:
  stats = [os.stat(p) for p in paths]
  return np.array([[s.st_mtime_ns, s.st_size] for s in stats], np.int64)


def _scan_one(label_path: str, image_path: str) -> tuple[np.ndarray, str | None]:
  """Returns (present[256] bool, problem or None) for one image/label pair."""
  try:
    with Image.open(label_path) as label:
      if label.mode == "P":
        palette = np.array(label.getpalette()[:768], np.uint8).reshape(-1, 3)
        if not np.array_equal(palette, voc_palette()[:len(palette)]):
          return np.zeros(256, bool), (f"{label_path}: palette PNG whose palette is not the VOC "
                                       "colour map; save labels as grayscale index PNGs instead")
      elif label.mode != "L":
        return np.zeros(256, bool), (f"{label_path}: label PNG in mode {label.mode}; expected a "
                                     "palette (P) or grayscale (L) index image")
      values = np.asarray(label)
    with Image.open(image_path) as image:
      image.load()
      if (image.height, image.width) != values.shape:
        return np.zeros(256, bool), (f"{image_path} is {image.width}x{image.height} but its "
                                     f"label {label_path} is {values.shape[1]}x{values.shape[0]}")
  except (OSError, SyntaxError, ValueError) as error:
    return np.zeros(256, bool), f"unreadable file for {label_path} / {image_path}: {error}"
  return np.bincount(values.ravel(), minlength=256).astype(bool), None


def _scan(files: SplitFiles, rows: list[int], workers: int) -> np.ndarray:
  present = np.zeros((len(rows), 256), bool)
  problems = []
  # A progress bar on a terminal when the scan is long (a first pass over VOC/ADE20K labels).
  bar = keras.utils.Progbar(len(rows), verbose=int(len(rows) > 500 and sys.stdout.isatty()),
                            unit_name="label")
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    results = pool.map(_scan_one, [files.label_paths[r] for r in rows],
                       [files.image_paths[r] for r in rows], chunksize=64)
    for index, (row_present, problem) in enumerate(results):
      present[index] = row_present
      if problem:
        problems.append(problem)
      if index % 100 == 99 or index == len(rows) - 1:
        bar.update(index + 1)
  if problems:
    raise LabelValueError(f"{len(problems)} unusable files; fix or remove them from the image "
                          "list:\n  " + "\n  ".join(problems[:10]))
  return present


def class_presence(files: SplitFiles, num_classes: int, cache_dir: str,
                   workers: int | None = None) -> np.ndarray:
  """[len(files.ids), 256] bool: present[i, c] iff label file i contains value c.

  Cached in `cache_dir`, keyed by the label folder and split; rows whose label or image file
  changed (mtime or size) are rescanned. Raises LabelValueError for values >= num_classes other
  than 255, naming the files.
  """
  workers = workers or min(8, (os.cpu_count() or 1) * 2)
  key = hashlib.sha1("\n".join(files.label_paths).encode()).hexdigest()[:16]
  cache_path = os.path.join(cache_dir, f"presence-v{_CACHE_VERSION}-{key}.npz")
  fingerprint = np.concatenate([_fingerprint(files.label_paths),
                                _fingerprint(files.image_paths)], axis=1)
  present = np.zeros((len(files.ids), 256), bool)
  stale = list(range(len(files.ids)))
  if os.path.isfile(cache_path):
    cached = np.load(cache_path)
    if cached["fingerprint"].shape == fingerprint.shape:
      fresh = np.all(cached["fingerprint"] == fingerprint, axis=1)
      present[fresh] = cached["present"][fresh]
      stale = np.flatnonzero(~fresh).tolist()
  if stale:
    present[stale] = _scan(files, stale, workers)
    os.makedirs(cache_dir, exist_ok=True)
    # Write-then-rename: an interrupted scan never leaves a truncated cache behind.
    handle, tmp_path = tempfile.mkstemp(dir=cache_dir, suffix=".npz")
    with os.fdopen(handle, "wb") as out:
      np.savez(out, present=present, fingerprint=fingerprint)
    os.replace(tmp_path, cache_path)
  _check_values(files, present, num_classes)
  return present


def _check_values(files: SplitFiles, present: np.ndarray, num_classes: int) -> None:
  allowed = np.zeros(256, bool)
  allowed[:num_classes] = True
  allowed[IGNORE_LABEL] = True
  bad_rows = np.flatnonzero(present[:, ~allowed].any(axis=1))
  if bad_rows.size:
    examples = [f"{files.label_paths[r]} (values {np.flatnonzero(present[r] & ~allowed).tolist()})"
                for r in bad_rows[:5]]
    raise LabelValueError(
        f"{bad_rows.size} label files contain values outside the {num_classes} classes "
        f"(0..{num_classes - 1}) and the ignore value 255:\n  " + "\n  ".join(examples) +
        "\nFix these labels or choose the dataset flag that matches them.")
