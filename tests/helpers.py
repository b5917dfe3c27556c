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
