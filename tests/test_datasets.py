"""Readers of ADE20K, Cityscapes and MSRC-v2 on fake trees in their official layouts: ids and
paths, label remapping (numpy scan and in-graph decoding agree), and clear layout errors."""
import os

import numpy as np
import tensorflow as tf

from kdseg.data import pipeline, presence, splits
from kdseg.data.ade20k import ADE20K_CLASSES, read_ade20k
from kdseg.data.cityscapes import CITYSCAPES_CLASSES, read_cityscapes
from kdseg.data.datasets import DataConfig, load_source
from kdseg.data.msrc import MSRC_CLASSES, read_msrc
from kdseg.data.orders import task_plan
from kdseg.data.source import DatasetLayoutError
from kdseg.data.voc import voc_palette
from tests.helpers import write_ade20k_tree, write_cityscapes_tree, write_msrc_tree


def _eval_labels(source, split, plan, step):
  """The labels the evaluation pipeline yields for `split` (batch 1), as numpy arrays."""
  dataset = pipeline.eval_dataset(source, source.split(split), splits.eval_label_table(plan, step),
                                  batch_size=1)
  return [labels[0].numpy() for _, labels in dataset]


class Ade20kTest(tf.test.TestCase):

  def _tree(self, extra_value=None):
    label = np.array([[0, 0, 1, 1], [0, 150, 150, 1], [0, 0, 0, 0]], np.uint8)
    other = np.array([[7, 7, 0, 0], [7, 7, 0, 0], [0, 0, 0, 0]], np.uint8)
    if extra_value is not None:
      other[0, 0] = extra_value
    return write_ade20k_tree(os.path.join(self.get_temp_dir(), "ADEChallengeData2016"), {
        "training": {"ADE_train_00000002": other, "ADE_train_00000001": label},
        "validation": {"ADE_val_00000001": label}})

  def test_ids_classes_and_presence(self):
    source = read_ade20k(self._tree())
    self.assertEqual(source.split("train").ids, ("ADE_train_00000001", "ADE_train_00000002"))
    self.assertTrue(source.split("val").label_paths[0].endswith(
        "annotations/validation/ADE_val_00000001.png"))
    self.assertEqual(source.num_object_classes, 150)
    self.assertEqual((ADE20K_CLASSES[1], ADE20K_CLASSES[150]), ("wall", "flag"))
    counts = presence.class_pixel_counts(source, "train", self.get_temp_dir())
    self.assertEqual(counts[0, [0, 1, 150]].tolist(), [7, 3, 2])
    self.assertEqual(counts[1, [0, 7]].tolist(), [8, 4])

  def test_label_0_is_the_background_and_unseen_classes_are_ignored_in_validation(self):
    source = read_ade20k(self._tree())
    plan = task_plan("100-50", "dataset", source.class_names, source.scenarios)
    (label,) = _eval_labels(source, "val", plan, 0)
    self.assertAllEqual(label, [[0, 0, 1, 1], [0, 255, 255, 1], [0, 0, 0, 0]])

  def test_value_above_150_names_the_file(self):
    source = read_ade20k(self._tree(extra_value=151))
    with self.assertRaisesRegex(presence.LabelValueError,
                                r"values \(0\.\.150, 255\)[^$]*ADE_train_00000002.png \(values \[151\]\)"):
      presence.class_presence(source, "train", self.get_temp_dir())

  def test_layout_errors_name_the_path(self):
    root = self._tree()
    os.remove(os.path.join(root, "images", "training", "ADE_train_00000002.jpg"))
    with self.assertRaisesRegex(DatasetLayoutError, r"1 labels.*ADE_train_00000002.*images"):
      read_ade20k(root)
    with self.assertRaisesRegex(DatasetLayoutError, "ADEChallengeData2016.zip"):
      read_ade20k(os.path.join(root, "missing"))
    with self.assertRaisesRegex(DatasetLayoutError, "--dataset=ade20k needs --data_root"):
      load_source(DataConfig("ade20k", None, self.get_temp_dir(), None))


class CityscapesTest(tf.test.TestCase):

  # labelIds: 7 road, 26 car, 0 unlabeled, 9 parking (not evaluated), 33 bicycle, 24 person.
  LABEL = np.array([[7, 7, 26, 0], [9, 33, 24, 24]], np.uint8)

  def _tree(self, label=LABEL):
    return write_cityscapes_tree(os.path.join(self.get_temp_dir(), "cityscapes"), {
        "train": {"aachen/aachen_000000_000019": label,
                  "bremen/bremen_000001_000019": np.full((2, 4), 7, np.uint8)},
        "val": {"lindau/lindau_000000_000019": label}})

  def test_label_ids_become_the_19_classes_and_255(self):
    source = read_cityscapes(self._tree())
    self.assertEqual(source.split("train").ids, ("aachen/aachen_000000_000019",
                                                 "bremen/bremen_000001_000019"))
    self.assertLen(CITYSCAPES_CLASSES, 20)
    counts = presence.class_pixel_counts(source, "train", self.get_temp_dir())
    road, car, person, bicycle = (CITYSCAPES_CLASSES.index(n)
                                  for n in ("road", "car", "person", "bicycle"))
    self.assertEqual((road, car, person, bicycle), (1, 14, 12, 19))
    self.assertEqual(np.flatnonzero(counts[0]).tolist(), [road, person, car, bicycle, 255])
    self.assertEqual(counts[0, [road, person, 255]].tolist(), [2, 2, 2])
    plan = task_plan("11-2", "dataset", source.class_names, source.scenarios)
    (label,) = _eval_labels(source, "val", plan, 0)  # step 0: road .. sky (ids 1..11)
    self.assertAllEqual(label, [[1, 1, 255, 255], [255, 255, 255, 255]])
    (label,) = _eval_labels(source, "val", plan, 4)
    self.assertAllEqual(label, [[1, 1, 14, 255], [255, 19, 12, 12]])

  def test_named_scenarios_bring_their_class_order(self):
    names = CITYSCAPES_CLASSES
    vehicles = task_plan("vehicles", "dataset", names, read_cityscapes(self._tree()).scenarios)
    self.assertEqual([names[c] for c in vehicles.new_classes(1)],
                     ["car", "truck", "bus", "train", "motorcycle", "bicycle"])
    self.assertEqual(vehicles.num_classes(0), 14)
    driving = task_plan("non-driving", "dataset", names, read_cityscapes(self._tree()).scenarios)
    self.assertEqual([names[c] for c in driving.new_classes(1)],
                     ["building", "wall", "fence", "vegetation", "terrain", "sky"])
    self.assertEqual([names[c] for c in driving.new_classes(0)][:3], ["road", "sidewalk", "pole"])

  def test_label_id_outside_0_33_names_the_file(self):
    source = read_cityscapes(self._tree(np.array([[7, 40], [7, 7]], np.uint8)))
    with self.assertRaisesRegex(presence.LabelValueError, r"aachen_000000_000019_gtFine_labelIds"
                                r".png \(values \[40\]\)"):
      presence.class_presence(source, "train", self.get_temp_dir())

  def test_missing_gtfine_is_named(self):
    root = self._tree()
    os.rename(os.path.join(root, "gtFine"), os.path.join(root, "gt"))
    with self.assertRaisesRegex(DatasetLayoutError, r"gtFine/train: expected the Cityscapes"):
      read_cityscapes(root)


def _colours(indices):
  return voc_palette()[np.asarray(indices)]


class MsrcTest(tf.test.TestCase):

  # Colour indices: 0 void, 1 building, 5 horse (excluded), 25 boat, 21 road, 8 mountain.
  GT = [[0, 1, 1], [5, 25, 21], [8, 8, 1]]

  def _tree(self, gt=GT):
    return write_msrc_tree(os.path.join(self.get_temp_dir(), "MSRC_ObjCategImageDatabase_v2"), {
        "Train": {"1_1_s": _colours(gt), "1_2_s": _colours([[2, 2], [3, 3]])},
        "Validation": {"2_1_s": _colours([[7, 7], [0, 0]])},
        "Test": {"3_1_s": _colours(gt)}})

  def test_trainval_and_test_splits_and_21_classes(self):
    source = read_msrc(self._tree())
    self.assertEqual(source.split("train").ids, ("1_1_s", "1_2_s", "2_1_s"))
    self.assertEqual(source.split("val").ids, ("3_1_s",))
    self.assertEqual(source.num_object_classes, 21)
    self.assertNotIn("horse", MSRC_CLASSES)
    self.assertNotIn("mountain", MSRC_CLASSES)
    self.assertEqual(MSRC_CLASSES[-1], "boat")

  def test_colours_decode_to_classes_in_scan_and_graph(self):
    source = read_msrc(self._tree())
    building, road, boat = (MSRC_CLASSES.index(n) for n in ("building", "road", "boat"))
    counts = presence.class_pixel_counts(source, "val", self.get_temp_dir())
    self.assertEqual(np.flatnonzero(counts[0]).tolist(), [building, road, boat, 255])
    self.assertEqual(counts[0, [building, 255]].tolist(), [3, 4])
    plan = task_plan("20-1", "dataset", source.class_names, source.scenarios)
    (label,) = _eval_labels(source, "val", plan, 1)
    self.assertAllEqual(label, [[255, building, building], [255, boat, road],
                                [255, 255, building]])
    # The display palette gives each class its ground-truth colour.
    self.assertEqual(source.palette[boat], tuple(voc_palette()[25]))

  def test_colour_of_no_class_names_the_file(self):
    source = read_msrc(self._tree(gt=[[1, 19], [1, 1]]))  # index 19 (128, 192, 0) is unused
    with self.assertRaisesRegex(presence.LabelValueError, r"1_1_s_GT.bmp \(values \[19\]\)"):
      presence.class_presence(source, "train", self.get_temp_dir())

  def test_missing_split_list_says_where_to_get_it(self):
    root = self._tree()
    os.remove(os.path.join(root, "TextonBoostSplits", "Test.txt"))
    with self.assertRaisesRegex(DatasetLayoutError, "Test.txt.*TextonBoostSplits.zip"):
      read_msrc(root)


if __name__ == "__main__":
  tf.test.main()
