"""Split membership (MiB §6.2.3, spec §1) on a hand-made presence matrix, and label remapping."""
import os

import numpy as np
import tensorflow as tf

from kdseg.data import splits
from kdseg.data.tasks import make_plan

# Task 2-1-1 over classes 1..4: step 0 = {0, 1, 2}, step 1 = {3}, step 2 = {4}.
PLAN = make_plan("2-1-1", [1, 2, 3, 4])
IMAGES = {            # classes present in each label file (255 = ignore border)
    "only_bg": [0],
    "old_only": [0, 1, 255],
    "new_3": [0, 3, 255],
    "old_and_3": [0, 1, 2, 3],
    "3_and_future_4": [0, 3, 4],
    "only_future_4": [0, 4],
    "only_ignore": [255],
}
IDS = tuple(IMAGES)


def _presence():
  present = np.zeros((len(IDS), 256), bool)
  for row, classes in enumerate(IMAGES.values()):
    present[row, classes] = True
  return present


def _ids(rows):
  return {IDS[r] for r in rows}


class MembershipTest(tf.test.TestCase):

  def test_overlapped_keeps_every_image_with_a_new_class(self):
    rows = splits.train_rows(_presence(), PLAN, 1, "overlapped")
    self.assertEqual(_ids(rows), {"new_3", "old_and_3", "3_and_future_4"})

  def test_disjoint_drops_images_with_future_classes(self):
    rows = splits.train_rows(_presence(), PLAN, 1, "disjoint")
    self.assertEqual(_ids(rows), {"new_3", "old_and_3"})

  def test_step_0(self):
    present = _presence()
    self.assertEqual(_ids(splits.train_rows(present, PLAN, 0, "overlapped")),
                     {"old_only", "old_and_3"})
    self.assertEqual(_ids(splits.train_rows(present, PLAN, 0, "disjoint")), {"old_only"})

  def test_last_step_disjoint_equals_overlapped(self):
    present = _presence()
    self.assertEqual(_ids(splits.train_rows(present, PLAN, 2, "disjoint")),
                     _ids(splits.train_rows(present, PLAN, 2, "overlapped")))

  def test_validation_keeps_images_with_a_seen_class(self):
    present = _presence()
    self.assertEqual(_ids(splits.eval_rows(present, PLAN, 0)), {"old_only", "old_and_3"})
    self.assertEqual(_ids(splits.eval_rows(present, PLAN, 1)),
                     {"old_only", "new_3", "old_and_3", "3_and_future_4"})

  def test_unknown_setting(self):
    with self.assertRaisesRegex(splits.SplitError, "--setting"):
      splits.train_rows(_presence(), PLAN, 1, "overlaped")


class LabelTablesTest(tf.test.TestCase):

  def test_training_labels_keep_only_current_classes(self):
    table = splits.train_label_table(PLAN, 1)
    # old 1, 2 -> background; new 3 -> 3; future 4 -> background; 255 stays.
    self.assertAllEqual(table[[0, 1, 2, 3, 4, 255]], [0, 0, 0, 3, 0, 255])
    self.assertAllEqual(splits.train_label_table(PLAN, 0)[[0, 1, 2, 3, 4]], [0, 1, 2, 0, 0])

  def test_validation_labels_ignore_unseen_classes(self):
    table = splits.eval_label_table(PLAN, 1)
    self.assertAllEqual(table[[0, 1, 2, 3, 4, 255]], [0, 1, 2, 3, 255, 255])

  def test_renumbering_follows_the_class_order(self):
    plan = make_plan("2-1", [7, 2, 5])
    self.assertAllEqual(splits.train_label_table(plan, 1)[[0, 7, 2, 5]], [0, 0, 0, 3])
    self.assertAllEqual(splits.eval_label_table(plan, 1)[[0, 7, 2, 5, 1]], [0, 1, 2, 3, 255])

  def test_lookup_in_graph_maps_a_label_map(self):
    table = tf.constant(splits.train_label_table(PLAN, 1))
    label = tf.constant([[0, 1, 3], [4, 255, 2]])
    self.assertAllEqual(tf.gather(table, label), [[0, 0, 3], [0, 255, 0]])


class SplitFilesTest(tf.test.TestCase):

  def test_written_once_then_reused_verbatim(self):
    directory = self.get_temp_dir()
    first = splits.step_ids(directory, 1, "train", IDS, np.array([2, 3]))
    self.assertEqual(first, ("new_3", "old_and_3"))
    again = splits.step_ids(directory, 1, "train", IDS, np.array([0, 1, 2]))
    self.assertEqual(again, first)
    with open(os.path.join(directory, "step_1_train.txt")) as handle:
      self.assertEqual(handle.read(), "new_3\nold_and_3\n")

  def test_empty_step_is_an_error(self):
    with self.assertRaisesRegex(splits.SplitError, "no train image"):
      splits.step_ids(self.get_temp_dir(), 1, "train", IDS, np.array([], int))


if __name__ == "__main__":
  tf.test.main()
