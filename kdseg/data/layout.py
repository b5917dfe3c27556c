"""Finding image/label pairs on disk: the pieces every reader shares, with errors that name the
missing path and the layout that was expected."""
from __future__ import annotations


from kdseg import fs
from kdseg.data.source import DatasetLayoutError, SplitFiles


def check_dataset_root(root: str, expected: str, download: str) -> str:
  """The absolute dataset root; DatasetLayoutError saying what to download if it is missing."""
  root = fs.absolute(root)
  if not fs.isdir(root):
    raise DatasetLayoutError(f"dataset folder {root} does not exist ({expected}). {download}")
  return root


def require_dirs(root: str, folders, expected: str) -> None:
  for folder in folders:
    if not fs.isdir(fs.join(root, folder)):
      raise DatasetLayoutError(f"missing folder {fs.join(root, folder)}: {expected}")


def image_files(root: str, folder: str, ids, suffix: str, list_file: str) -> tuple[str, ...]:
  """Paths <root>/<folder>/<id><suffix>; DatasetLayoutError naming the list and the folder if
  any is missing."""
  directory = fs.join(root, folder)
  present = set(fs.listdir(directory))
  missing = [i for i in ids if i + suffix not in present]
  if missing:
    raise DatasetLayoutError(
        f"{list_file} lists {len(missing)} ids without {directory}/<id>{suffix}, e.g. "
        f"{missing[:3]}; restore those files or remove them from the list.")
  return tuple(fs.join(directory, f"{i}{suffix}") for i in ids)


def _stems(directory: str, suffix: str) -> dict[str, str]:
  """id -> path of every file under `directory` (recursively) ending in `suffix`; the id is the
  path relative to `directory` without the suffix."""
  found = {}
  for folder, _, names in fs.walk(directory):
    for name in names:
      if name.endswith(suffix):
        path = fs.join(folder, name)
        found[fs.relpath(path, directory)[:-len(suffix)]] = path
  return found


def paired_files(image_dir: str, image_suffix: str, label_dir: str, label_suffix: str,
                 expected: str) -> SplitFiles:
  """Every label file under `label_dir` with its image under `image_dir` (same relative id),
  sorted by id. DatasetLayoutError if there is no label or a label has no image."""
  for directory in (image_dir, label_dir):
    if not fs.isdir(directory):
      raise DatasetLayoutError(f"missing folder {directory}: {expected}")
  labels = _stems(label_dir, label_suffix)
  if not labels:
    raise DatasetLayoutError(f"no *{label_suffix} label file under {label_dir}: {expected}")
  images = _stems(image_dir, image_suffix)
  missing = sorted(set(labels) - set(images))
  if missing:
    raise DatasetLayoutError(
        f"{len(missing)} labels under {label_dir} have no image <id>{image_suffix} under "
        f"{image_dir}, e.g. {missing[:3]}: {expected}")
  ids = tuple(sorted(labels))
  return SplitFiles(ids, tuple(images[i] for i in ids), tuple(labels[i] for i in ids))
