"""Merging the SBD augmentation (Hariharan et al.) into a Pascal VOC 2012 tree: the 10,582-image
training set both papers use ("train_aug") with grayscale index labels in SegmentationClassAug.

  VOC:  <voc_root>/JPEGImages, SegmentationClass (palette PNGs), ImageSets/Segmentation/{train,val}.txt
  SBD:  <sbd_root>/cls/<id>.mat (GTcls.Segmentation, uint8 0..20), <sbd_root>/{train,val}.txt
        (<sbd_root> is benchmark_RELEASE/dataset of benchmark.tgz)
train_aug = (SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted. A label comes from VOC's
SegmentationClass where VOC has one (it marks object borders 255) and from SBD's .mat otherwise;
the VOC val labels are copied too, so one label folder serves both splits.
"""
from __future__ import annotations

import concurrent.futures

import numpy as np
from PIL import Image
import scipy.io

from kdseg import atomic, fs
from kdseg.data.source import DatasetLayoutError
from kdseg.data.voc import read_index_png

AUG_LABELS = "SegmentationClassAug"


def _read_list(path: str, what: str) -> list[str]:
  if not fs.isfile(path):
    raise DatasetLayoutError(f"missing {what} list {path}")
  with fs.open(path) as handle:
    return [line.split()[0] for line in handle if line.strip()]


def read_sbd_label(path: str) -> np.ndarray:
  """SBD cls/<id>.mat -> [H, W] uint8 class ids."""
  try:
    record = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)["GTcls"]
    return np.asarray(record.Segmentation, np.uint8)
  except (OSError, ValueError, KeyError, AttributeError) as error:
    raise DatasetLayoutError(f"{path} is not an SBD class label (GTcls.Segmentation): "
                             f"{error}") from None


def _write_png(values: np.ndarray, path: str) -> None:
  # An interrupted run never leaves a half-written label.
  atomic.write_png(path, lambda out: Image.fromarray(values, mode="L").save(out, format="PNG"))


def merge_sbd(voc_root: str, sbd_root: str, workers: int = 8) -> dict[str, int]:
  """Writes <voc_root>/SegmentationClassAug and ImageSets/Segmentation/train_aug.txt.

  Labels already written are kept (the tool can be re-run after an interruption). Returns counts:
  train_aug images, labels from VOC, labels from SBD, labels written now.
  """
  lists = fs.join(voc_root, "ImageSets", "Segmentation")
  voc_train = _read_list(fs.join(lists, "train.txt"), "VOC train")
  voc_val = _read_list(fs.join(lists, "val.txt"), "VOC val")
  sbd_ids = (_read_list(fs.join(sbd_root, "train.txt"), "SBD train") +
             _read_list(fs.join(sbd_root, "val.txt"), "SBD val"))
  train_aug = sorted(set(sbd_ids + voc_train) - set(voc_val))
  images = set(fs.listdir(fs.join(voc_root, "JPEGImages")))
  missing = [i for i in train_aug if f"{i}.jpg" not in images]
  if missing:
    raise DatasetLayoutError(f"{len(missing)} train_aug images are not in "
                             f"{voc_root}/JPEGImages, e.g. {missing[:3]}: is {voc_root} VOC 2012?")
  voc_labels = fs.join(voc_root, "SegmentationClass")

  def source_of(image_id: str) -> tuple[str, str]:
    voc_path = fs.join(voc_labels, f"{image_id}.png")
    if fs.isfile(voc_path):
      return "voc", voc_path
    sbd_path = fs.join(sbd_root, "cls", f"{image_id}.mat")
    if not fs.isfile(sbd_path):
      raise DatasetLayoutError(f"no label for {image_id}: neither {voc_path} nor {sbd_path}")
    return "sbd", sbd_path

  output = fs.join(voc_root, AUG_LABELS)
  fs.makedirs(output)
  sources = {image_id: source_of(image_id) for image_id in train_aug + voc_val}

  def convert(item) -> bool:
    image_id, (kind, path) = item
    target = fs.join(output, f"{image_id}.png")
    if fs.isfile(target):
      return False
    _write_png(read_index_png(path) if kind == "voc" else read_sbd_label(path), target)
    return True

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    written = sum(pool.map(convert, sources.items()))
  list_path = fs.join(lists, "train_aug.txt")
  atomic.write_text(list_path, "".join(f"{i}\n" for i in train_aug))
  from_voc = sum(kind == "voc" for kind, _ in sources.values())
  return {"train_aug": len(train_aug), "from_voc": from_voc,
          "from_sbd": len(sources) - from_voc, "written": written}
