"""Every file kdseg reads or writes goes through here, on tf.io.gfile: local paths and any
filesystem TensorFlow has (gs://, s3:// or hdfs:// with their plugins, ram:// in memory), so
--data_root, --run_dir, --cache_dir and --tfds_data_dir may name any of them.

Paths with a scheme ("gs://bucket/runs") are kept as given; local paths are made absolute (with
~ expanded), as kdseg always did. Two operations need more than gfile offers, and say so where
they are used: the run lock is exclusive (O_EXCL) on local paths and check-then-write elsewhere
(kdseg.rundir.lock), and readers that need a seekable local file (h5py for .weights.h5) read a
remote file through a local temporary copy (`local_copy`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import tempfile

import numpy as np
import tensorflow as tf

gfile = tf.io.gfile


def is_url(path: str) -> bool:
  """Whether `path` names a file on a TF filesystem with a scheme (gs://, ram://...)."""
  return "://" in str(path)


def absolute(path: str) -> str:
  """A local path made absolute (~ expanded); a URL unchanged but for a trailing slash."""
  path = str(path)
  if is_url(path):
    return path.rstrip("/") if not path.endswith("://") else path
  return os.path.abspath(os.path.expanduser(path))


def join(*parts: str) -> str:
  """os.path.join, where a URL counts as an absolute path (a later one restarts the path)."""
  for index in range(len(parts) - 1, -1, -1):
    if is_url(parts[index]):
      return posixpath.join(*parts[index:])
  return os.path.join(*parts)


def dirname(path: str) -> str:
  return posixpath.dirname(path) if is_url(path) else os.path.dirname(path)


def basename(path: str) -> str:
  return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path)


def relpath(path: str, start: str) -> str:
  """`path` relative to `start` (a URL relative to a URL prefix of it)."""
  if is_url(path) or is_url(start):
    start = start.rstrip("/") + "/"
    if not path.startswith(start):
      raise ValueError(f"{path} is not under {start}")
    return path[len(start):]
  return os.path.relpath(path, start)


def is_inside(path: str, root: str) -> bool:
  """Whether `path` is `root` or below it (both absolute, see `absolute`)."""
  if is_url(path) or is_url(root):
    return path == root or path.startswith(root.rstrip("/") + "/")
  return os.path.commonpath([path, root]) == root


def exists(path: str) -> bool:
  return gfile.exists(path)


def isdir(path: str) -> bool:
  return gfile.isdir(path)


def isfile(path: str) -> bool:
  return gfile.exists(path) and not gfile.isdir(path)


def makedirs(path: str) -> None:
  gfile.makedirs(path)


def listdir(path: str) -> list[str]:
  """Names in a folder (object stores list sub-folders with a trailing '/': removed)."""
  return [name.rstrip("/") for name in gfile.listdir(path)]


def walk(path: str):
  """(folder, sub-folders, files) from `path` down, like os.walk."""
  for folder, folders, files in gfile.walk(path):
    yield folder, [name.rstrip("/") for name in folders], files


def glob(pattern: str) -> list[str]:
  return gfile.glob(pattern)


def open(path: str, mode: str = "r"):  # noqa: A001 - the module's open, as gfile.GFile
  return gfile.GFile(path, mode)


def read_text(path: str) -> str:
  with gfile.GFile(path, "r") as handle:
    return handle.read()


def read_bytes(path: str) -> bytes:
  with gfile.GFile(path, "rb") as handle:
    return handle.read()


class CorruptFileError(ValueError):
  """A file kdseg wrote (or reads) is not what it should be: cut short, emptied or edited."""


def read_json(path: str):
  """The JSON document at `path`; CorruptFileError naming the file if it does not parse."""
  text = read_text(path)
  try:
    return json.loads(text)
  except ValueError as error:
    raise CorruptFileError(
        f"{path} is not valid JSON ({'empty' if not text.strip() else error}): it was cut short "
        "(a full disk or a kill outside kdseg's atomic writes) or edited. Delete it and rerun "
        "the command that wrote it: kdseg records it again and keeps finished checkpoints."
    ) from None


def load_npy(path: str) -> np.ndarray:
  """The array of an .npy file (no pickled objects)."""
  return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Every array of an .npz file, read whole (no pickled objects)."""
  with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as stored:
    return {key: stored[key] for key in stored.files}


def remove(path: str) -> None:
  """Removes a file; nothing if it is already gone."""
  with contextlib.suppress(tf.errors.NotFoundError):
    gfile.remove(path)


def rmtree(path: str) -> None:
  """Removes a folder and all it holds; nothing if it is already gone."""
  if gfile.exists(path):
    with contextlib.suppress(tf.errors.NotFoundError):
      gfile.rmtree(path)


def rename(source: str, target: str, overwrite: bool = True) -> None:
  gfile.rename(source, target, overwrite=overwrite)


def stat(path: str) -> tuple[int, int]:
  """(modification time in ns, size in bytes); filesystems without times (ram://) give 0."""
  info = gfile.stat(path)
  return int(info.mtime_nsec), int(info.length)


def open_image(path: str):
  """A PIL image of the file at `path` (any filesystem); use it in a `with` block."""
  from PIL import Image
  return Image.open(io.BytesIO(read_bytes(path)))


@contextlib.contextmanager
def local_copy(path: str):
  """A local path holding the file at `path`: the path itself when it is local, else a temporary
  copy removed afterwards (for readers that need a seekable local file, such as h5py)."""
  if not is_url(path):
    yield path
    return
  folder = tempfile.mkdtemp(prefix="kdseg-")
  try:
    local = os.path.join(folder, basename(path))
    gfile.copy(path, local, overwrite=True)
    yield local
  finally:
    shutil.rmtree(folder, ignore_errors=True)
