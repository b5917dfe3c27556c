"""Fake dataset trees in the Pascal VOC 2012 layout, written by the tests themselves."""
import os
import socket

import numpy as np
from PIL import Image

from kdseg.data.voc import voc_palette


def write_label(path: str, label: np.ndarray, palette: bool = True) -> None:
  image = Image.fromarray(label.astype(np.uint8), mode="P" if palette else "L")
  if palette:
    image.putpalette(voc_palette().flatten().tolist())
  image.save(path)


def write_voc_tree(root: str, labels: dict[str, dict[str, np.ndarray]],
                   label_dir: str = "SegmentationClass", palette: bool = True) -> str:
  """labels: split -> {image id: [H, W] label}; images are random RGB of the same size."""
  for folder in ("JPEGImages", label_dir, os.path.join("ImageSets", "Segmentation")):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
  rng = np.random.default_rng(0)
  for split, items in labels.items():
    for image_id, label in items.items():
      rgb = rng.integers(0, 255, label.shape + (3,), dtype=np.uint8)
      Image.fromarray(rgb).save(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
      write_label(os.path.join(root, label_dir, f"{image_id}.png"), label, palette)
    with open(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt"), "w") as out:
      out.write("".join(f"{i}\n" for i in items))
  return root


def free_port() -> int:
  """A TCP port free on localhost now (for TF_CONFIG clusters in tests)."""
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    return probe.getsockname()[1]


def _random_rgb(shape, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 255, tuple(shape) + (3,), dtype=np.uint8)


def write_ade20k_tree(root: str, labels: dict[str, dict[str, np.ndarray]]) -> str:
  """ADEChallengeData2016 layout; labels: 'training'/'validation' -> {stem: [H, W] 0..150}."""
  for folder, items in labels.items():
    for kind in ("images", "annotations"):
      os.makedirs(os.path.join(root, kind, folder), exist_ok=True)
    for stem, label in items.items():
      Image.fromarray(_random_rgb(label.shape)).save(
          os.path.join(root, "images", folder, f"{stem}.jpg"))
      Image.fromarray(label.astype(np.uint8), mode="L").save(
          os.path.join(root, "annotations", folder, f"{stem}.png"))
  return root


def write_cityscapes_tree(root: str, labels: dict[str, dict[str, np.ndarray]]) -> str:
  """Cityscapes layout; labels: 'train'/'val' -> {'<city>/<city>_<seq>_<frame>': labelIds}."""
  for split, items in labels.items():
    for image_id, label in items.items():
      for kind, suffix, array in (
          ("leftImg8bit", "_leftImg8bit.png", _random_rgb(label.shape)),
          ("gtFine", "_gtFine_labelIds.png", label.astype(np.uint8))):
        path = os.path.join(root, kind, split, f"{image_id}{suffix}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(array).save(path)
      # The other gtFine files of the official archive, which the reader must skip.
      Image.fromarray(label.astype(np.uint8)).save(
          os.path.join(root, "gtFine", split, f"{image_id}_gtFine_instanceIds.png"))
  return root


def write_msrc_tree(root: str, labels: dict[str, dict[str, np.ndarray]]) -> str:
  """MSRC-v2 layout; labels: 'Train'/'Validation'/'Test' -> {id: [H, W, 3] uint8 colours}."""
  for folder in ("Images", "GroundTruth", "TextonBoostSplits"):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
  for split, items in labels.items():
    for image_id, colours in items.items():
      Image.fromarray(_random_rgb(colours.shape[:2])).save(
          os.path.join(root, "Images", f"{image_id}.bmp"))
      Image.fromarray(colours.astype(np.uint8)).save(
          os.path.join(root, "GroundTruth", f"{image_id}_GT.bmp"))
    with open(os.path.join(root, "TextonBoostSplits", f"{split}.txt"), "w") as out:
      out.write("".join(f"{i}.bmp\n" for i in items))
  return root


# The methods test_train.py trains end to end (two steps of 15-1): every loss term, classifier
# loss, regulariser, freezing mode and the offline bound at least once. The other named methods
# recombine these with other weights or temperatures; test_methods.py computes their terms and
# gradients on a tiny model instead (an end-to-end run costs ~25 s of the suite per method).
# Grouped by the step 0 they start from (test_train.py trains each group in a run directory of
# its own, so pytest-xdist's workers take them side by side): the MiB paper's shared CE step 0,
# the KD paper's shared valid-pixel CE step 0, and the methods that train their own.
END_TO_END_GROUPS = {
    "mib_step_0": ("ft", "lwf", "lwf-mc", "ilt", "mib", "plop"),
    "kd_step_0": ("kd-ft", "kd-cls-t", "ef", "e2lf", "kd-enc", "kd-dec", "kd-spkd-avg"),
    "own_step_0": ("ewc", "pi", "rw", "joint"),
}
END_TO_END_METHODS = tuple(m for group in END_TO_END_GROUPS.values() for m in group)
