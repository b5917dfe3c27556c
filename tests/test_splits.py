"""Split membership (MiB §6.2.3, spec §1) on a hand-made presence matrix, and label remapping."""
import os

import numpy as np
import tensorflow as tf

from kdseg import atomic
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

  def test_no_future_keeps_every_image_without_a_later_class(self):
    # The KD code's val_1_<x>: images whose later classes (columns x+1.. of its presence
    # matrix) are all absent, background-only images included.
    present = _presence()
    self.assertEqual(_ids(splits.eval_rows(present, PLAN, 0, "no_future")),
                     {"only_bg", "old_only", "only_ignore"})
    self.assertEqual(_ids(splits.eval_rows(present, PLAN, 1, "no_future")),
                     {"only_bg", "old_only", "new_3", "old_and_3", "only_ignore"})
    self.assertEqual(_ids(splits.eval_rows(present, PLAN, 2, "no_future")), set(IDS))
    self.assertEqual((splits.eval_kind("seen"), splits.eval_kind("no_future")),
                     ("val", "val_no_future"))
    with self.assertRaisesRegex(splits.SplitError, "--eval_images"):
      splits.eval_rows(present, PLAN, 0, "unseen")

  def test_unknown_setting(self):
    with self.assertRaisesRegex(splits.SplitError, "--setting"):
      splits.train_rows(_presence(), PLAN, 1, "overlaped")


class KdPaperSettingsTest(tf.test.TestCase):
  """KD paper §3: images of step k hold only S_{k-1} ∪ U_k and at least one new class."""

  def test_both_kd_settings_select_the_disjoint_images(self):
    for setting in ("incremental-learning", "incremental-labeling"):
      self.assertEqual(_ids(splits.train_rows(_presence(), PLAN, 1, setting)),
                       {"new_3", "old_and_3"})
      self.assertEqual(_ids(splits.train_rows(_presence(), PLAN, 0, setting)), {"old_only"})

  def test_steps_never_share_an_image(self):
    rows = [set(splits.train_rows(_presence(), PLAN, step, "incremental-learning"))
            for step in range(PLAN.num_steps)]
    self.assertEqual(_ids(rows[2]), {"3_and_future_4", "only_future_4"})
    self.assertFalse(rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])

  def test_incremental_learning_keeps_old_labels_labeling_does_not(self):
    keep = splits.train_label_table(PLAN, 1, splits.get_setting("incremental-learning")
                                    .keep_old_labels)
    self.assertAllEqual(keep[[0, 1, 2, 3, 4, 255]], [0, 1, 2, 3, 0, 255])
    drop = splits.train_label_table(PLAN, 1, splits.get_setting("incremental-labeling")
                                    .keep_old_labels)
    self.assertAllEqual(drop[[0, 1, 2, 3, 4, 255]], [0, 0, 0, 3, 0, 255])
    # Old classes keep their position in the step's order, not their original id.
    plan = make_plan("2-1", [7, 2, 5])
    self.assertAllEqual(splits.train_label_table(plan, 1, True)[[0, 7, 2, 5, 9]], [0, 1, 2, 3, 0])


class PartitionTest(tf.test.TestCase):
  """MiB ADE20K/Cityscapes: disjoint image sets, at least N images per class in its step."""

  def test_hand_computed_assignment(self):
    steps = dict(zip(IDS, splits.partition(_presence(), PLAN, 1, seed=0)))
    # Class 2 occurs only in old_and_3, so the minimum for class 2 sends it to step 0 although
    # it holds class 3 of step 1; images without an object class belong to no step.
    self.assertEqual({k: steps[k] for k in ("only_bg", "old_only", "old_and_3", "new_3",
                                             "only_future_4", "only_ignore")},
                     {"only_bg": -1, "old_only": 0, "old_and_3": 0, "new_3": 1,
                      "only_future_4": 2, "only_ignore": -1})
    self.assertIn(steps["3_and_future_4"], (1, 2))
    self.assertEqual(_ids(splits.train_rows(_presence(), PLAN, 0, "partition",
                                            min_images_per_class=1)), {"old_only", "old_and_3"})

  def test_too_few_images_names_the_class_and_the_flag(self):
    names = ("background", "aeroplane", "bicycle", "bird", "boat")
    with self.assertRaisesRegex(splits.SplitError, r"bicycle \(step 0\).*only 1 of its 1 images"
                                r".*--min_images_per_class"):
      splits.train_rows(_presence(), PLAN, 1, "partition", min_images_per_class=2,
                        class_names=names)

  def test_random_tree_is_a_partition_with_the_minimum_per_class(self):
    rng = np.random.default_rng(5)
    present = np.zeros((400, 256), bool)
    present[:, 0] = True
    present[:, 1:11] = rng.random((400, 10)) < 0.3
    plan = make_plan("4-2", list(range(1, 11)))
    assigned = splits.partition(present, plan, 20, seed=1)
    self.assertAllEqual(assigned == -1, ~present[:, 1:11].any(axis=1))
    for step in range(plan.num_steps):
      mine = assigned == step
      for cls in plan.new_classes(step):
        self.assertGreaterEqual(np.count_nonzero(present[mine, cls]), 20)
      # Every image of a step holds at least one of its new classes.
      self.assertTrue(present[mine][:, list(plan.new_classes(step))].any(axis=1).all())
    self.assertAllEqual(assigned, splits.partition(present, plan, 20, seed=1))
    self.assertNotAllEqual(assigned, splits.partition(present, plan, 20, seed=2))


class HoldoutTest(tf.test.TestCase):

  def test_twenty_percent_held_out_seeded_and_disjoint(self):
    rows = np.arange(10, 30)
    train, held = splits.holdout_rows(rows, 0.2, seed=4)
    self.assertLen(held, 4)
    self.assertAllEqual(np.sort(np.concatenate([train, held])), rows)
    again_train, again_held = splits.holdout_rows(rows, 0.2, seed=4)
    self.assertAllEqual(held, again_held)
    self.assertAllEqual(train, again_train)


class LabelTablesTest(tf.test.TestCase):

  def test_training_labels_keep_only_current_classes(self):
    table = splits.train_label_table(PLAN, 1)
    # old 1, 2 -> background; new 3 -> 3; future 4 -> background; 255 stays.
    self.assertAllEqual(table[[0, 1, 2, 3, 4, 255]], [0, 0, 0, 3, 0, 255])
    self.assertAllEqual(splits.train_label_table(PLAN, 0)[[0, 1, 2, 3, 4]], [0, 1, 2, 0, 0])

  def test_void_pixels_train_as_background_in_the_mib_recipe(self):
    # MiB dataset/voc.py: inverted_order[255] = masking_value, 0 in training, at every step;
    # the evaluation table keeps 255 (masking_value 255 when train=False).
    for step in (0, 1):
      table = splits.train_label_table(PLAN, step, void_label="background")
      self.assertEqual(table[255], 0)
      self.assertNotIn(255, table)
      self.assertAllEqual(table[:255], splits.train_label_table(PLAN, step)[:255])
      self.assertEqual(splits.eval_label_table(PLAN, step)[255], 255)
    with self.assertRaisesRegex(splits.SplitError, "--void_label='zero'"):
      splits.train_label_table(PLAN, 1, void_label="zero")

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

  def test_split_files_of_a_seed_are_byte_identical_across_runs(self):
    rng = np.random.default_rng(0)
    present = np.zeros((300, 256), bool)
    present[:, 1:5] = rng.random((300, 4)) < 0.4
    ids = tuple(f"img_{i:04d}" for i in range(300))
    contents = []
    for run in range(2):
      directory = os.path.join(self.get_temp_dir(), f"run_{run}")
      for step in range(PLAN.num_steps):
        rows = splits.train_rows(present, PLAN, step, "partition", 10, seed=7)
        train, held = splits.holdout_rows(rows, 0.2, seed=7 + step)
        splits.step_ids(directory, step, "train", ids, train)
        splits.step_ids(directory, step, "holdout", ids, held)
      contents.append({name: open(os.path.join(directory, name), "rb").read()
                       for name in sorted(os.listdir(directory))})
    self.assertLen(contents[0], 6)
    self.assertEqual(contents[0], contents[1])

  def test_an_edited_list_is_refused(self):
    # Once its manifest is written, a list edited by hand (ids removed, or an unknown id added)
    # is refused instead of trained on.
    directory = os.path.join(self.get_temp_dir(), "edited")
    ids = splits.step_ids(directory, 1, "train", IDS, np.array([0, 1, 2]))
    atomic.write_json(os.path.join(directory, "step_1_train.json"),
                      splits.manifest(ids, np.zeros((3, 256), np.int64), ("background",)))
    self.assertEqual(splits.step_ids(directory, 1, "train", IDS, np.array([0])), ids)
    path = os.path.join(directory, "step_1_train.txt")
    with open(path, "w") as out:
      out.write(f"{ids[0]}\n")
    with self.assertRaisesRegex(splits.SplitError, r"step_1_train.txt was changed after this run "
                                r"recorded it: 1 ids .*records 3 .*Restore the list"):
      splits.step_ids(directory, 1, "train", IDS, np.array([0]))
    with open(path, "w") as out:
      out.write("".join(f"{i}\n" for i in ids + ("nowhere",)))
    with self.assertRaisesRegex(splits.SplitError, r"lists 1 image id\(s\) the dataset does not "
                                r"have \(e.g. \['nowhere'\]\)"):
      splits.step_ids(directory, 1, "train", IDS, np.array([0]))

  def test_empty_step_is_an_error(self):
    with self.assertRaisesRegex(splits.SplitError, "no train image"):
      splits.step_ids(self.get_temp_dir(), 1, "train", IDS, np.array([], int))


if __name__ == "__main__":
  tf.test.main()
