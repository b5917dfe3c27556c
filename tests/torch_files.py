"""Writes PyTorch checkpoint files by hand (no torch): the pickle opcodes torch.save emits.

Only what state dicts need: dicts / OrderedDicts of str keys, lists, tuples, ints, floats,
str, bool, None, numpy arrays (as tensors with contiguous strides), `Global(module, name,
state)` for other objects as pickle protocol 2 saves an instance (an argparse Namespace, say:
NEWOBJ, then BUILD with its state), and `Call(module, name, args)` for a call of a global (the
REDUCE opcode a malicious file uses to run code). Used to test kdseg.models.torch_io on both
formats.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
                  np.dtype(np.bool_): "BoolStorage"}


@dataclasses.dataclass
class Global:
  module: str
  name: str
  state: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Call:
  module: str
  name: str
  args: tuple = ()


class _Pickler:
  """Emits protocol-2 opcodes; tensors become _rebuild_tensor_v2 calls on persistent storages."""

  def __init__(self, legacy: bool):
    self.out = io.BytesIO()
    self.legacy = legacy
    self.storages: list[tuple[str, np.ndarray]] = []

  def op(self, code: bytes, payload: bytes = b""):
    self.out.write(code + payload)

  def glob(self, module: str, name: str):
    self.op(b"c", f"{module}\n{name}\n".encode())

  def dump(self, obj):
    if obj is None:
      self.op(b"N")
    elif obj is True or obj is False:
      self.op(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
      if -2**31 <= obj < 2**31:
        self.op(b"J", struct.pack("<i", obj))
      else:
        data = obj.to_bytes(8, "little", signed=True)
        self.op(b"\x8a", bytes([len(data)]) + data)
    elif isinstance(obj, float):
      self.op(b"G", struct.pack(">d", obj))
    elif isinstance(obj, str):
      data = obj.encode()
      self.op(b"X", struct.pack("<I", len(data)) + data)
    elif isinstance(obj, tuple):
      self.op(b"(")
      for item in obj:
        self.dump(item)
      self.op(b"t")
    elif isinstance(obj, list):
      self.op(b"]")
      if obj:
        self.op(b"(")
        for item in obj:
          self.dump(item)
        self.op(b"e")
    elif isinstance(obj, dict):
      if isinstance(obj, collections.OrderedDict):
        self.glob("collections", "OrderedDict")
        self.op(b")")
        self.op(b"R")
      else:
        self.op(b"}")
      if obj:
        self.op(b"(")
        for key, value in obj.items():
          self.dump(key)
          self.dump(value)
        self.op(b"u")
    elif isinstance(obj, np.ndarray):
      self.tensor(obj)
    elif isinstance(obj, Global):
      self.glob(obj.module, obj.name)
      self.op(b")")
      self.op(b"\x81")                                # NEWOBJ: cls.__new__(cls)
      self.dump(obj.state)
      self.op(b"b")                                   # BUILD
    elif isinstance(obj, Call):
      self.glob(obj.module, obj.name)
      self.dump(tuple(obj.args))
      self.op(b"R")
    else:
      raise TypeError(type(obj))

  def tensor(self, array: np.ndarray):
    array = np.array(array, order="C")   # (ascontiguousarray would make a 0-d array 1-d)
    key = str(len(self.storages))
    self.storages.append((key, array))
    self.glob("torch._utils", "_rebuild_tensor_v2")
    self.op(b"(")
    # persistent id: ("storage", storage type, key, location, numel[, view metadata])
    self.op(b"(")
    self.dump("storage")
    self.glob("torch", _STORAGE_NAMES[array.dtype])
    self.dump(key)
    self.dump("cpu")
    self.dump(int(array.size))
    if self.legacy:
      self.dump(None)
    self.op(b"t")
    self.op(b"Q")
    self.dump(0)                                      # storage offset
    self.dump(tuple(int(n) for n in array.shape))
    strides = tuple(int(s // array.itemsize) for s in array.strides) if array.ndim else ()
    self.dump(strides)
    self.dump(False)                                  # requires_grad
    self.dump(collections.OrderedDict())              # backward hooks
    self.op(b"t")
    self.op(b"R")

  def finish(self) -> bytes:
    self.op(b".")
    return self.out.getvalue()


def _pickled(obj, legacy: bool) -> tuple[bytes, list]:
  pickler = _Pickler(legacy)
  pickler.out.write(b"\x80\x02")
  pickler.dump(obj)
  return pickler.finish(), pickler.storages


def save_zip(obj, path: str, name: str = "archive") -> None:
  """The format of torch.save since PyTorch 1.6."""
  data, storages = _pickled(obj, legacy=False)
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr(f"{name}/data.pkl", data)
    archive.writestr(f"{name}/byteorder", "little")
    for key, array in storages:
      archive.writestr(f"{name}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
    archive.writestr(f"{name}/version", "3\n")


def save_legacy(obj, path: str) -> None:
  """The format of torch.save before PyTorch 1.6 (the 2018 In-place ABN release)."""
  data, storages = _pickled(obj, legacy=True)
  with open(path, "wb") as handle:
    pickle.dump(0x1950a86a20f9469cfc6c, handle, protocol=2)
    pickle.dump(1001, handle, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, handle, protocol=2)
    handle.write(data)
    pickle.dump([key for key, _ in storages], handle, protocol=2)
    for _, array in storages:
      handle.write(struct.pack("<q", array.size))
      handle.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
