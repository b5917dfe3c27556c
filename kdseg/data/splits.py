"""Per-step image sets and label mappings of the incremental settings (spec §1, MiB §6.2.3).

Settings implemented here:
  overlapped  step t trains on every image with at least one pixel of a class new at t;
  disjoint    ... and no pixel of a class learned after t (only old, new, background, 255).
Training labels of step t: classes new at t keep their (renumbered) id, every other class
(old or future) becomes background 0, 255 stays 255. Validation at step t: images with at least
one pixel of a class seen so far; unseen classes become 255 (ignored); seen ones are renumbered.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from kdseg.data.tasks import TaskPlan
from kdseg.data.voc import IGNORE_LABEL

SETTINGS = ("overlapped", "disjoint")


class SplitError(ValueError):
  """A setting name or a step that selects no image."""


def _class_mask(classes) -> np.ndarray:
  mask = np.zeros(256, bool)
  mask[list(classes)] = True
  return mask


def train_rows(present: np.ndarray, plan: TaskPlan, step: int, setting: str) -> np.ndarray:
  """Row indices (into the presence matrix of the training split) used to train `step`."""
  if setting not in SETTINGS:
    raise SplitError(f"--setting={setting!r} is unknown; choose one of {', '.join(SETTINGS)}.")
  has_new = present[:, _class_mask(plan.new_classes(step))].any(axis=1)
  if setting == "overlapped":
    return np.flatnonzero(has_new)
  allowed = _class_mask((0, IGNORE_LABEL) + plan.old_classes(step) + plan.new_classes(step))
  return np.flatnonzero(has_new & ~present[:, ~allowed].any(axis=1))


def eval_rows(present: np.ndarray, plan: TaskPlan, step: int) -> np.ndarray:
  """Row indices of validation images holding at least one class seen up to `step`."""
  seen = _class_mask(plan.old_classes(step) + plan.new_classes(step))
  return np.flatnonzero(present[:, seen].any(axis=1))


def train_label_table(plan: TaskPlan, step: int) -> np.ndarray:
  """[256] int32 lookup: original label value -> training label of `step`."""
  table = np.zeros(256, np.int32)
  table[IGNORE_LABEL] = IGNORE_LABEL
  order = plan.order(step)
  for new_class in plan.new_classes(step):
    table[new_class] = order.index(new_class)
  return table


def eval_label_table(plan: TaskPlan, step: int) -> np.ndarray:
  """[256] int32 lookup: original label value -> evaluation label of `step` (unseen -> 255)."""
  table = np.full(256, IGNORE_LABEL, np.int32)
  for position, original in enumerate(plan.order(step)):
    table[original] = position
  return table


def write_ids_once(path: str, ids: list[str] | tuple[str, ...]) -> tuple[str, ...]:
  """Writes `ids` to `path` unless it exists; returns the ids stored in the file.

  Split files are the record of what a step trained on: once written they are reused verbatim,
  so resumed and chained steps see exactly the same images.
  """
  if os.path.isfile(path):
    with open(path) as handle:
      return tuple(line.strip() for line in handle if line.strip())
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handle, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".txt")
  with os.fdopen(handle, "w") as out:
    out.write("".join(f"{image_id}\n" for image_id in ids))
  os.replace(tmp_path, path)
  return tuple(ids)


def step_ids(split_dir: str, step: int, kind: str, ids: tuple[str, ...],
             rows: np.ndarray) -> tuple[str, ...]:
  """The image ids of `kind` ('train' or 'val') at `step`, written once to split_dir."""
  if rows.size == 0:
    raise SplitError(f"step {step} has no {kind} image: no image contains its classes under this "
                     "setting. Check --task, --setting and the dataset's labels.")
  return write_ids_once(os.path.join(split_dir, f"step_{step}_{kind}.txt"),
                        [ids[r] for r in rows])
