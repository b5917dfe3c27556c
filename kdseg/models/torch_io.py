"""Reads PyTorch checkpoint files into numpy arrays, without PyTorch.

Two formats, told apart by their first bytes:
  zip     torch.save since PyTorch 1.6: a zip archive <name>/data.pkl (the pickled object, whose
          tensors point to storages by persistent id ("storage", storage type, key, location,
          numel)), <name>/data/<key> (each storage's raw bytes), <name>/byteorder (optional).
  legacy  torch.save before 1.6 (and _use_new_zipfile_serialization=False), the format of the
          2018 In-place ABN ImageNet release: five pickles in a row -- the magic number, the
          protocol version (1001), system info, the object (persistent ids ("storage", type,
          key, location, numel, view)), the list of storage keys -- then, per key in that
          order, an int64 element count and the storage's bytes.
Every pickle of both formats (the legacy headers too) goes through one restricted unpickler.
It resolves only the globals a state dict needs -- the tensor rebuilders
(torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter), OrderedDict, numpy
scalars and dtypes -- and imports nothing. Any other global the file names becomes an inert
`Opaque` class: an object the file *reconstructs* from it (an argparse Namespace saved with the
options: NEWOBJ + state) is kept as a record of its name and state, while a *call* of it (the
REDUCE opcode, how a malicious pickle runs os.system) is refused with TorchFileError naming the
global. So nothing in a file is ever called or imported, and the parts of a checkpoint kdseg
does not need do not block reading the parts it does. Archive members must be stored
uncompressed, as torch.save writes them, so a file cannot expand beyond its own size.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np

from kdseg import fs

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001

# Storage classes of both formats (typed storages; torch.storage.UntypedStorage is bytes).
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}


class TorchFileError(ValueError):
  """The file is not a PyTorch checkpoint kdseg can read; the message names the file."""


class Opaque:
  """A global of the checkpoint that is not a tensor: reconstructing it keeps an inert record
  (name, arguments, state); calling it (pickle's REDUCE) is refused."""

  name = "?"

  def __new__(cls, *args):   # pickle's NEWOBJ: object reconstruction, nothing runs
    record = super().__new__(cls)
    record.args, record.state = args, None
    return record

  def __init__(self, *args, **kwargs):   # pickle's REDUCE: a call of the global
    del args, kwargs
    raise TorchFileError(
        f"the file asks to call {self.name}(...), which no state dict needs; kdseg never runs "
        "code from a file. Load it with PyTorch only if you trust its source, and re-save the "
        "state dict alone (torch.save(model.state_dict(), path)).")

  def __setstate__(self, state):
    self.state = state

  def __repr__(self):
    return f"<{self.name}>"


def _opaque_class(module: str, name: str) -> type:
  return type(name, (Opaque,), {"name": f"{module}.{name}"})


class _Storage:
  """A storage of the file: its dtype and raw bytes (read lazily from the archive)."""

  def __init__(self, dtype, data: bytes, byteorder: str):
    self.dtype, self.data, self.byteorder = dtype, data, byteorder

  def array(self) -> np.ndarray:
    if self.dtype == "bfloat16":   # the upper half of a float32
      raw = np.frombuffer(self.data, dtype=np.dtype("u2").newbyteorder(self.byteorder))
      return (raw.astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(self.data, dtype=np.dtype(self.dtype).newbyteorder(self.byteorder))


class _View:
  """A legacy storage view: resolved into a _Storage once its root's bytes are read."""

  def __init__(self, root: _Storage, offset: int, size: int):
    self.root, self.offset, self.size = root, offset, size


class _Tensor:
  """A tensor of the file, made an array once its storage's bytes are read (after the object's
  pickle in the legacy format)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

  def array(self) -> np.ndarray:
    storage = self.storage
    if isinstance(storage, _View):
      flat = storage.root.array()[storage.offset:storage.offset + storage.size]
    elif isinstance(storage, _Storage):
      flat = storage.array()
    else:
      raise TorchFileError(f"a tensor refers to {storage!r:.80}, not to a storage")
    if not self.size:
      return np.array(flat[self.offset], dtype=flat.dtype.newbyteorder("="))
    needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if min(self.size) > 0 and needed > flat.size:
      raise TorchFileError(f"a tensor of shape {self.size} reaches beyond its storage "
                           f"({flat.size} elements)")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                           strides=[s * itemsize for s in self.stride])
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


def _numpy_scalar(dtype, data=None):
  return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
}


class _Unpickler(pickle.Unpickler):

  def __init__(self, file, load_storage):
    super().__init__(file, encoding="latin1")
    self._load_storage = load_storage

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in STORAGE_DTYPES:
      return name     # a storage type: resolved by persistent_load
    if module == "torch" and name.endswith("Tensor"):   # legacy typed tensors (torch.FloatTensor)
      return name
    return _opaque_class(module, name)

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise TorchFileError(f"unknown persistent id {pid!r:.80}")
    storage_type, key = pid[1], str(pid[2])
    type_name = storage_type if isinstance(storage_type, str) else getattr(
        storage_type, "__name__", str(storage_type))
    if type_name not in STORAGE_DTYPES:
      raise TorchFileError(f"storage of unknown type {type_name}")
    return self._load_storage(key, STORAGE_DTYPES[type_name], pid)


def _refuse_persistent_ids(key, dtype, pid):
  raise TorchFileError(f"a header pickle refers to storage {key}: not a PyTorch file")


def _read_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    compressed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if compressed:
      raise TorchFileError(f"{path}: compressed archive members ({compressed[0]}...); torch.save "
                           "stores them uncompressed: re-save the checkpoint with torch.save.")
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
      raise TorchFileError(f"{path}: a zip archive without one data.pkl (found {pickles[:3]}); "
                           "is it a PyTorch checkpoint?")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "<"
    if f"{prefix}byteorder" in names:
      byteorder = "<" if archive.read(f"{prefix}byteorder").decode().strip() == "little" else ">"
    cache = {}

    def load_storage(key, dtype, pid):
      if key not in cache:
        member = f"{prefix}data/{key}"
        if member not in names:
          raise TorchFileError(f"storage {key} missing from the archive")
        cache[key] = _Storage(dtype, archive.read(member), byteorder)
      storage = cache[key]
      return storage if storage.dtype == dtype else _Storage(dtype, storage.data, byteorder)

    with archive.open(pickles[0]) as handle:
      return _Unpickler(io.BytesIO(handle.read()), load_storage).load()


def _read_legacy(path: str):
  with fs.open(path, "rb") as handle:
    def header():
      return _Unpickler(handle, _refuse_persistent_ids).load()
    if header() != LEGACY_MAGIC:
      raise TorchFileError(f"{path}: not a PyTorch file (no magic number)")
    protocol = header()
    if protocol != LEGACY_PROTOCOL:
      raise TorchFileError(f"{path}: legacy protocol {protocol}, kdseg reads {LEGACY_PROTOCOL}")
    header()   # system info (little endian, type sizes)
    storages = {}

    def load_storage(key, dtype, pid):
      # (storage, view_metadata): legacy views (pid[5]) share their root's bytes.
      if key not in storages:
        storages[key] = _Storage(dtype, b"", "<")
      root = storages[key]
      if len(pid) > 5 and pid[5] is not None:
        _, offset, size = pid[5]   # (view key, offset, size)
        return _View(root, int(offset), int(size))
      return root

    obj = _Unpickler(handle, load_storage).load()
    keys = header()
    for key in keys:
      count = int(np.frombuffer(handle.read(8), dtype="<i8")[0])
      storage = storages.get(str(key))
      if storage is None:
        raise TorchFileError(f"{path}: storage {key} is listed but no tensor uses it")
      nbytes = count * np.dtype(storage.dtype if storage.dtype != "bfloat16" else "u2").itemsize
      storage.data = handle.read(nbytes)
      if len(storage.data) != nbytes:
        raise TorchFileError(f"{path}: truncated (storage {key} has {len(storage.data)} of "
                             f"{nbytes} bytes)")
  return obj


def _materialise(obj):
  """The object with every _Tensor made a numpy array (containers rebuilt, Opaque kept)."""
  if isinstance(obj, _Tensor):
    return obj.array()
  if isinstance(obj, dict):
    items = [(key, _materialise(value)) for key, value in obj.items()]
    return type(obj)(items) if isinstance(obj, collections.OrderedDict) else dict(items)
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(value) for value in obj)
  if isinstance(obj, Opaque):
    obj.args = tuple(_materialise(value) for value in obj.args)
    obj.state = _materialise(obj.state)
  return obj


def load(path: str):
  """The object torch.save wrote to `path`, with every tensor a numpy array."""
  if not fs.isfile(path):
    raise TorchFileError(f"{path} does not exist.")
  try:
    with fs.local_copy(path) as local:   # zipfile and the legacy reader seek in a local file
      return _materialise(_read_zip(local) if zipfile.is_zipfile(local) else _read_legacy(local))
  except TorchFileError as error:
    if str(error).startswith(path):
      raise
    raise TorchFileError(f"{path}: {error}") from error
  except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError,
          AttributeError, zipfile.BadZipFile) as error:
    raise TorchFileError(f"{path} could not be read as a PyTorch checkpoint: "
                         f"{type(error).__name__}: {str(error)[:200]}") from error
