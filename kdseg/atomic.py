"""The one way kdseg writes a file: whole or not at all.

Every writer puts its bytes in a temporary file beside the target and renames it over the target
(`os.replace`, atomic on POSIX), so a kill or a full disk leaves the old file or none, never a
half-written one. The result gets the permissions an ordinary `open()` would give (0666 minus the
umask), not mkstemp's 0600, so a group can read shared run directories.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Callable, IO

import numpy as np


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_with(path: str, write: Callable[[IO], None], binary: bool = True) -> str:
  """Calls write(handle) on a temporary file, then renames it to `path`; returns `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                       suffix=".tmp")
  try:
    with os.fdopen(handle, "wb" if binary else "w") as out:
      write(out)
    os.chmod(temporary, 0o666 & ~_umask())
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temporary)
    raise
  return path


def write_text(path: str, text: str) -> str:
  return write_with(path, lambda out: out.write(text), binary=False)


def write_json(path: str, payload) -> str:
  return write_with(path, lambda out: json.dump(payload, out, indent=1), binary=False)


def write_npy(path: str, array: np.ndarray) -> str:
  return write_with(path, lambda out: np.save(out, array))


def write_npz(path: str, **arrays: np.ndarray) -> str:
  return write_with(path, lambda out: np.savez(out, **arrays))


def write_bytes(path: str, data: bytes) -> str:
  return write_with(path, lambda out: out.write(data))


def write_png(path: str, save: Callable[[IO], None]) -> str:
  """`save(handle)` writes PNG bytes (e.g. PIL's image.save(handle, format="PNG"),
  matplotlib's figure.savefig(handle, format="png"))."""
  buffer = io.BytesIO()
  save(buffer)
  return write_bytes(path, buffer.getvalue())
