"""Per-step image sets and label mappings of the incremental settings (spec §1, MiB §6.2.3-6.2.5,
KD paper §3).

Image selection of step t (new = classes first learned at t, old = learned before t):
  overlapped   every image with at least one pixel of a new class (MiB; images may recur);
  disjoint     ... and no pixel of a class learned after t: only old, new, background, 255 (MiB
               disjoint; KD paper: "images contain only elements of S_{k-1} ∪ U_k", which makes the
               steps' image sets disjoint);
  partition    the training images split into disjoint sets, one per step, with no other
               constraint than at least --min_images_per_class images per class in its step
               (MiB ADE20K and Cityscapes): an image goes to one of the steps whose new classes it
               holds, seeded.
Training labels of step t: new classes keep their (renumbered) id, future classes become
background 0, 255 stays 255 or becomes background (--void_label); old classes become background, except in the KD paper's
incremental-learning setting where they keep their ids. Validation at step t (EVAL_IMAGES): images
with at least one pixel of a class seen so far ("seen"), or every image with no pixel of a later
step's class ("no_future": the KD paper's val_1_<x> lists, LTTM/IL-SemSegm
sample_dataset/divide_dataset_1_to_x.m); unseen classes become 255 (ignored), seen ones are
renumbered.

Settings (--setting):  selection   old classes in new images
  overlapped           overlapped  background
  disjoint             disjoint    background
  partition            partition   background
  incremental-learning disjoint    keep their labels   (KD paper §3.1)
  incremental-labeling disjoint    background          (KD paper §3.2; the same as disjoint)
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf

from kdseg import atomic, fs
from kdseg.constants import IGNORE_LABEL
from kdseg.data.tasks import TaskPlan


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str
  selection: str          # overlapped | disjoint | partition
  keep_old_labels: bool


SETTINGS = {setting.name: setting for setting in (
    Setting("overlapped", "overlapped", False),
    Setting("disjoint", "disjoint", False),
    Setting("partition", "partition", False),
    Setting("incremental-learning", "disjoint", True),
    Setting("incremental-labeling", "disjoint", False),
)}


class SplitError(ValueError):
  """A setting name or a step that selects no image."""


def get_setting(name: str) -> Setting:
  if name not in SETTINGS:
    raise SplitError(f"--setting={name!r} is unknown; choose one of {', '.join(SETTINGS)}.")
  return SETTINGS[name]


def _class_mask(classes) -> np.ndarray:
  mask = np.zeros(256, bool)
  mask[list(classes)] = True
  return mask


def train_rows(present: np.ndarray, plan: TaskPlan, step: int, setting: str,
               min_images_per_class: int = 50, seed: int = 0,
               class_names: tuple[str, ...] | None = None) -> np.ndarray:
  """Row indices (into the presence matrix of the training split) used to train `step`."""
  selection = get_setting(setting).selection
  if selection == "partition":
    return np.flatnonzero(partition(present, plan, min_images_per_class, seed, class_names)
                          == step)
  has_new = present[:, _class_mask(plan.new_classes(step))].any(axis=1)
  if selection == "overlapped":
    return np.flatnonzero(has_new)
  allowed = _class_mask((0, IGNORE_LABEL) + plan.old_classes(step) + plan.new_classes(step))
  return np.flatnonzero(has_new & ~present[:, ~allowed].any(axis=1))


def partition(present: np.ndarray, plan: TaskPlan, min_images_per_class: int, seed: int,
              class_names: tuple[str, ...] | None = None) -> np.ndarray:
  """[num_images] int: the step each training image belongs to, -1 for none (MiB §6.2.4).

  First, class by class from the rarest, a class of step t gets unassigned images holding it
  until step t has `min_images_per_class` of them; then every other image holding a new class of
  some step goes to one of those steps uniformly at random. Images holding no object class
  belong to no step. Deterministic for a seed.
  """
  rng = np.random.default_rng(seed)
  step_of = np.full(256, -1)
  for step in range(plan.num_steps):
    step_of[list(plan.new_classes(step))] = step
  assigned = np.full(present.shape[0], -1)
  classes = [c for step in range(plan.num_steps) for c in plan.new_classes(step)]
  images_per_class = present[:, classes].sum(axis=0)
  for position in np.argsort(images_per_class, kind="stable"):
    cls = classes[position]
    step = step_of[cls]
    need = min_images_per_class - np.count_nonzero(present[:, cls] & (assigned == step))
    if need <= 0:
      continue
    pool = rng.permutation(np.flatnonzero(present[:, cls] & (assigned == -1)))
    if pool.size < need:
      name = class_names[cls] if class_names else f"class {cls}"
      raise SplitError(
          f"cannot give {name} (step {step}) --min_images_per_class={min_images_per_class} "
          f"training images: only {min_images_per_class - need + pool.size} of its "
          f"{images_per_class[position]} images are left for its step. Lower "
          "--min_images_per_class.")
    assigned[pool[:need]] = step
  candidates = np.zeros((present.shape[0], plan.num_steps), bool)
  for step in range(plan.num_steps):
    candidates[:, step] = present[:, _class_mask(plan.new_classes(step))].any(axis=1)
  free = (assigned == -1) & candidates.any(axis=1)
  scores = np.where(candidates, rng.random(candidates.shape), -1.0)
  assigned[free] = np.argmax(scores[free], axis=1)
  return assigned


EVAL_IMAGES = ("seen", "no_future")


def eval_rows(present: np.ndarray, plan: TaskPlan, step: int, images: str = "seen") -> np.ndarray:
  """Row indices of the validation images of `step`: holding at least one class seen up to
  `step` ("seen"), or holding no class of a later step ("no_future")."""
  if images not in EVAL_IMAGES:
    raise SplitError(f"--eval_images={images!r}; choose one of {', '.join(EVAL_IMAGES)}.")
  if images == "no_future":
    return np.flatnonzero(~present[:, _class_mask(plan.future_classes(step))].any(axis=1))
  seen = _class_mask(plan.old_classes(step) + plan.new_classes(step))
  return np.flatnonzero(present[:, seen].any(axis=1))


def eval_kind(images: str) -> str:
  """The name of a step's validation list in the run's splits folder (written once)."""
  return "val" if images == "seen" else f"val_{images}"


def holdout_rows(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held out): a seeded random `fraction` of a step's training rows held out for
  hyper-parameter search (MiB §6.2.2: 20 % of the training set as validation). Both sorted."""
  held = np.random.default_rng(seed).permutation(rows)[:int(round(fraction * rows.size))]
  return np.setdiff1d(rows, held), np.sort(held)


VOID_LABELS = ("background", "ignore")


def train_label_table(plan: TaskPlan, step: int, keep_old_labels: bool = False,
                      void_label: str = "ignore") -> np.ndarray:
  """[256] int32 lookup: original label value -> training label of `step`.

  void_label: what a 255 (void) pixel trains as -- "ignore" (the KD paper's code) or
  "background" (the MiB reference maps 255 to 0 in training labels at every step:
  `inverted_order[255] = masking_value`, 0 when training). Evaluation keeps 255 either way.
  """
  if void_label not in VOID_LABELS:
    raise SplitError(f"--void_label={void_label!r}; choose one of {', '.join(VOID_LABELS)}.")
  table = np.zeros(256, np.int32)
  table[IGNORE_LABEL] = IGNORE_LABEL if void_label == "ignore" else 0
  order = plan.order(step)
  kept = plan.new_classes(step) + (plan.old_classes(step) if keep_old_labels else ())
  for cls in kept:
    table[cls] = order.index(cls)
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
  if fs.isfile(path):
    with fs.open(path) as handle:
      return tuple(line.strip() for line in handle if line.strip())
  atomic.write_text(path, "".join(f"{image_id}\n" for image_id in ids))
  return tuple(ids)


def list_path(split_dir: str, step: int, kind: str) -> str:
  """The id list of `kind` ('train', 'val', 'holdout', ...) at `step` in a splits folder."""
  return fs.join(split_dir, f"step_{step}_{kind}.txt")


def manifest_file(split_dir: str, step: int, kind: str) -> str:
  """The manifest (count, digest, pixels per class) beside list_path's list."""
  return fs.join(split_dir, f"step_{step}_{kind}.json")


def step_ids(split_dir: str, step: int, kind: str, ids: tuple[str, ...],
             rows: np.ndarray) -> tuple[str, ...]:
  """The image ids of `kind` ('train', 'val' or 'holdout') at `step`, written once to split_dir."""
  if rows.size == 0:
    raise SplitError(f"step {step} has no {kind} image: no image contains its classes under this "
                     "setting. Check --task, --setting and the dataset's labels.")
  path = list_path(split_dir, step, kind)
  stored = write_ids_once(path, [ids[r] for r in rows])
  unknown = sorted(set(stored) - set(ids))
  if unknown:
    raise SplitError(f"{path} lists {len(unknown)} image id(s) the dataset does not have (e.g. "
                     f"{unknown[:3]}): it was edited, or --data_root names another dataset. "
                     "Restore the file or train in a new --run_dir.")
  manifest_path = manifest_file(split_dir, step, kind)
  if fs.isfile(manifest_path):
    recorded = fs.read_json(manifest_path)
    if ids_digest(stored) != recorded.get("digest"):
      raise SplitError(
          f"{path} was changed after this run recorded it: {len(stored)} ids (digest "
          f"{ids_digest(stored)}), {manifest_path} records {recorded.get('images')} (digest "
          f"{recorded.get('digest')}). Restore the list (the manifest holds its ids) or train "
          "in a new --run_dir.")
  return stored


# --- manifests and the reference repositories' split files -----------------------------------


def ids_digest(ids) -> str:
  """sha256 (first 16 hex digits) of the sorted image ids, one per line: equal digests, equal
  image sets, whatever order each side lists them in."""
  return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()[:16]


def manifest(ids, pixel_counts: np.ndarray, class_names: tuple[str, ...]) -> dict:
  """A step's image set: count, digest, pixels per class (the selected rows of the presence
  index's pixel counts, [n, 256], by class id; 255 = void) and the ids themselves."""
  totals = pixel_counts.sum(axis=0) if len(pixel_counts) else np.zeros(256, np.int64)
  pixels = {name: int(totals[c]) for c, name in enumerate(class_names) if totals[c]}
  if totals[IGNORE_LABEL]:
    pixels["void"] = int(totals[IGNORE_LABEL])
  return {"images": len(ids), "digest": ids_digest(ids), "pixels_per_class": pixels,
          "ids": list(ids)}


def read_list_file(path: str) -> tuple[str, ...]:
  """Image ids of a list file in order: one id per line, or the reference's train_aug.txt lines
  '/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png' (the id is the first path's stem)."""
  try:
    with fs.open(path) as handle:
      lines = [line.split() for line in handle if line.strip()]
  except OSError as error:
    raise SplitError(f"--split_list={path}: {error.strerror}.") from None
  return tuple(os.path.splitext(fs.basename(parts[0]))[0] for parts in lines)


def kd_list_names(plan: TaskPlan, step: int) -> list[str]:
  """The KD paper's list files that may hold `step`'s training images, most specific first
  (LTTM/IL-SemSegm sample_dataset/: train_1_19.txt for step 0 of 19-1, train_20.txt or
  train_16_20.txt for a later step, train_16_16_notin_following.txt for a one-class step that
  excludes images with later classes). Class ids are the dataset's: the step's new classes must
  be a run of consecutive ids (the dataset's class order)."""
  new = sorted(plan.new_classes(step))
  if not new or new != list(range(new[0], new[-1] + 1)):
    raise SplitError(f"step {step} learns classes {new}: the KD paper's split lists are named by "
                     "runs of consecutive class ids; use --class_order=dataset with them.")
  first, last = (1 if step == 0 else new[0]), new[-1]
  names = [f"train_{first}_{last}_notin_following.txt", f"train_{first}_{last}.txt"]
  if first == last:
    names.append(f"train_{first}.txt")
  return names


def read_reference_split(directory: str, step: int, listed: tuple[str, ...],
                         plan: TaskPlan | None = None) -> tuple[str, ...]:
  """The image ids of `step` in a reference's split folder: a MiB / PLOP task folder
  (data/<dataset>/<task>[-ov]/), where train-<step>.npy holds integer indices into the
  reference's ordered image list `listed`, or the KD paper's sample_dataset/ folder of list files
  (kd_list_names, lines '/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png')."""
  path = fs.join(directory, f"train-{step}.npy")
  if not fs.isfile(path):
    for name in (kd_list_names(plan, step) if plan is not None else []):
      if fs.isfile(fs.join(directory, name)):
        return read_list_file(fs.join(directory, name))
    kd = (f", or the KD paper's sample_dataset folder with one of "
          f"{', '.join(kd_list_names(plan, step))}" if plan is not None else "")
    raise SplitError(f"{path} is missing: --split_files must name a MiB/PLOP task folder "
                     f"(e.g. MiB's data/voc/15-5s-ov) with train-0.npy ... train-<last step>.npy"
                     f"{kd}.")
  try:
    indices = fs.load_npy(path)
  except (OSError, ValueError, tf.errors.OpError) as error:
    raise SplitError(f"{path} is not a numpy array file: {error}") from None
  if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
    raise SplitError(f"{path}: expected a 1-d integer array of image indices, found "
                     f"{indices.dtype} {indices.shape}.")
  if indices.size and (indices.min() < 0 or indices.max() >= len(listed)):
    raise SplitError(f"{path}: indices {int(indices.min())}..{int(indices.max())} do not fit an "
                     f"image list of {len(listed)} images; give the reference's own list with "
                     "--split_list (MiB VOC: its splits/train_aug.txt; ADE20K: the sorted file "
                     "names of images/training).")
  return tuple(listed[i] for i in indices.tolist())


def compare(reference: tuple[str, ...], own: tuple[str, ...]) -> dict:
  """Where a reference split and kdseg's own filtering differ."""
  only_reference = sorted(set(reference) - set(own))
  only_own = sorted(set(own) - set(reference))
  return {"reference": len(reference), "kdseg": len(own), "common": len(set(reference) & set(own)),
          "only_reference": len(only_reference), "only_kdseg": len(only_own),
          "examples_only_reference": only_reference[:5], "examples_only_kdseg": only_own[:5],
          "same": not only_reference and not only_own}
