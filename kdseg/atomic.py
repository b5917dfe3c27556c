"""The one way kdseg writes a file: whole or not at all, on any filesystem (kdseg.fs).

Every writer puts its bytes in a temporary file beside the target and renames it over the target
(a rename: atomic on POSIX; on object stores the object appears whole when its upload ends), so a
kill or a full disk leaves the old file or none, never a half-written one. Local files get the
permissions an ordinary `open()` gives (0666 minus the umask), so a group can read shared run
directories.
"""
from __future__ import annotations

import contextlib
import io
import json
import uuid
from typing import Callable, IO

import numpy as np

from kdseg import fs


def write_with(path: str, write: Callable[[IO], None], binary: bool = True) -> str:
  """Calls write(handle) on a temporary file, then renames it to `path`; returns `path`."""
  path = fs.absolute(path)
  fs.makedirs(fs.dirname(path))
  temporary = fs.join(fs.dirname(path), f".{fs.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    with fs.open(temporary, "wb" if binary else "w") as out:
      write(out)
    fs.rename(temporary, path, overwrite=True)
  except BaseException:
    with contextlib.suppress(Exception):
      fs.remove(temporary)
    raise
  return path


def write_text(path: str, text: str) -> str:
  return write_with(path, lambda out: out.write(text), binary=False)


def write_json(path: str, payload) -> str:
  return write_with(path, lambda out: json.dump(payload, out, indent=1), binary=False)


def _buffered(save: Callable[[IO], None]) -> bytes:
  buffer = io.BytesIO()
  save(buffer)
  return buffer.getvalue()


def write_npy(path: str, array: np.ndarray) -> str:
  return write_bytes(path, _buffered(lambda out: np.save(out, array)))


def write_npz(path: str, **arrays: np.ndarray) -> str:
  return write_bytes(path, _buffered(lambda out: np.savez(out, **arrays)))


def write_bytes(path: str, data: bytes) -> str:
  return write_with(path, lambda out: out.write(data))


def write_png(path: str, save: Callable[[IO], None]) -> str:
  """`save(handle)` writes PNG bytes (e.g. PIL's image.save(handle, format="PNG"),
  matplotlib's figure.savefig(handle, format="png"))."""
  return write_bytes(path, _buffered(save))
