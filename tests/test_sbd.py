"""tools/prepare_voc.py: SBD merged into a fake VOC 2012 tree; the VOC reader then reads train_aug."""
import os
import subprocess
import sys

import numpy as np
import scipy.io
import tensorflow as tf

from kdseg.data import presence
from kdseg.data.sbd import merge_sbd
from kdseg.data.source import DatasetLayoutError
from kdseg.data.voc import read_voc_layout
from tests.helpers import write_voc_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOC_LABEL = np.array([[0, 15, 255], [0, 15, 15]], np.uint8)


def _write_sbd(root: str, labels: dict[str, np.ndarray], train, val) -> str:
  os.makedirs(os.path.join(root, "cls"), exist_ok=True)
  for image_id, label in labels.items():
    scipy.io.savemat(os.path.join(root, "cls", f"{image_id}.mat"), {"GTcls": {
        "Segmentation": label, "Boundaries": np.zeros(1), "CategoriesPresent": np.unique(label)}})
  for name, ids in (("train", train), ("val", val)):
    with open(os.path.join(root, f"{name}.txt"), "w") as out:
      out.write("".join(f"{i}\n" for i in ids))
  return root


class PrepareVocTest(tf.test.TestCase):

  def _trees(self):
    base = self.get_temp_dir()
    voc = write_voc_tree(os.path.join(base, "VOC2012"), {
        "train": {"2007_000001": VOC_LABEL}, "val": {"2007_000002": VOC_LABEL},
        "extra": {"2008_000003": VOC_LABEL, "2008_000004": VOC_LABEL}})
    sbd = _write_sbd(os.path.join(base, "sbd"), {
        "2008_000003": np.array([[0, 3, 3], [0, 0, 20]], np.uint8),
        "2008_000004": np.array([[7, 7, 0], [0, 0, 0]], np.uint8),
        "2007_000002": np.ones((2, 3), np.uint8)},
                     train=["2008_000003", "2007_000002"], val=["2008_000004"])
    # 2008_000003/4 have no VOC segmentation label: SBD provides them.
    for image_id in ("2008_000003", "2008_000004"):
      os.remove(os.path.join(voc, "SegmentationClass", f"{image_id}.png"))
    return voc, sbd

  def test_train_aug_union_minus_val_with_the_right_label_sources(self):
    voc, sbd = self._trees()
    counts = merge_sbd(voc, sbd)
    # (SBD {3, 2, 4} ∪ VOC train {1}) − VOC val {2}; val 2 keeps VOC's label too.
    self.assertEqual(counts, {"train_aug": 3, "from_voc": 2, "from_sbd": 2, "written": 4})
    source = read_voc_layout(voc)
    self.assertEqual(source.split("train").ids, ("2007_000001", "2008_000003", "2008_000004"))
    self.assertTrue(source.split("val").label_paths[0].endswith(
        "SegmentationClassAug/2007_000002.png"))
    counts = presence.class_pixel_counts(source, "train", self.get_temp_dir())
    self.assertEqual(np.flatnonzero(counts[0]).tolist(), [0, 15, 255])   # VOC palette label
    self.assertEqual(counts[1, [0, 3, 20]].tolist(), [3, 2, 1])          # SBD .mat label
    self.assertEqual(merge_sbd(voc, sbd)["written"], 0)                  # re-run keeps them

  def test_command_line_and_missing_sbd(self):
    voc, sbd = self._trees()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "prepare_voc.py"),
                             f"--voc_root={voc}", f"--sbd_root={sbd}"], capture_output=True,
                            text=True, cwd=ROOT, check=True)
    self.assertIn("train_aug: 3 images", result.stdout)
    os.remove(os.path.join(sbd, "cls", "2008_000004.mat"))
    os.remove(os.path.join(voc, "SegmentationClassAug", "2008_000004.png"))
    with self.assertRaisesRegex(DatasetLayoutError, "no label for 2008_000004"):
      merge_sbd(voc, sbd)


if __name__ == "__main__":
  tf.test.main()
