"""Class orders (dataset, alphabetical, pixel frequency, seeded random, explicit) and the task
plans they give."""
import os

import numpy as np
import tensorflow as tf

from kdseg.data.orders import class_order, task_plan
from kdseg.data.tasks import TaskError
from kdseg.data.voc import VOC_CLASSES

NAMES = ("background", "dog", "cat", "ant", "bee")


class ClassOrderTest(tf.test.TestCase):

  def test_dataset_and_alphabetical(self):
    self.assertEqual(class_order("dataset", NAMES), (1, 2, 3, 4))
    self.assertEqual(class_order("alphabetical", NAMES), (3, 4, 2, 1))  # ant bee cat dog
    # VOC's ids are alphabetical: the KD paper's "alphabetical order" is the dataset order.
    self.assertEqual(class_order("alphabetical", VOC_CLASSES), class_order("dataset", VOC_CLASSES))

  def test_pixel_frequency_from_the_training_labels(self):
    counts = np.zeros((3, 256), np.int64)
    counts[0, [0, 1, 2]] = [100, 3, 4]      # background pixels do not count
    counts[1, [2, 3]] = [5, 1]
    counts[2, [1, 3, 255]] = [2, 4, 50]     # nor do ignored ones
    # totals: dog 5, cat 9, ant 5, bee 0 -> cat, then dog and ant tied (dataset order), bee.
    self.assertEqual(class_order("frequency", NAMES, counts), (2, 1, 3, 4))

  def test_seeded_random(self):
    first = class_order("random:3", NAMES)
    self.assertEqual(first, class_order("random:3", NAMES))
    self.assertCountEqual(first, (1, 2, 3, 4))
    self.assertEqual(class_order("random", NAMES), class_order("random:0", NAMES))
    orders = {class_order(f"random:{seed}", VOC_CLASSES) for seed in range(5)}
    self.assertLen(orders, 5)

  def test_explicit_by_name_id_or_file(self):
    self.assertEqual(class_order("bee, 2,dog,ant", NAMES), (4, 2, 1, 3))
    path = os.path.join(self.get_temp_dir(), "order.txt")
    with open(path, "w") as out:
      out.write("ant\nbee\n\ncat\ndog\n")
    self.assertEqual(class_order(f"@{path}", NAMES), (3, 4, 2, 1))

  def test_bad_orders_are_clear_errors(self):
    with self.assertRaisesRegex(TaskError, r"missing \['ant'\], repeated \['dog'\]"):
      class_order("dog,cat,dog,bee", NAMES)
    with self.assertRaisesRegex(TaskError, "'horse' is not an object class"):
      class_order("horse,cat,ant,bee", NAMES)
    with self.assertRaisesRegex(TaskError, "'background' is not an object class"):
      class_order("background,dog,cat,ant,bee", NAMES)
    with self.assertRaisesRegex(TaskError, "no such file"):
      class_order("@/nonexistent/order.txt", NAMES)
    with self.assertRaisesRegex(TaskError, "random:"):
      class_order("random:x", NAMES)


class TaskPlanTest(tf.test.TestCase):

  def test_order_decides_the_steps(self):
    plan = task_plan("2-1-1", "alphabetical", NAMES, {})
    self.assertEqual(plan.steps, ((0, 3, 4), (2,), (1,)))
    self.assertEqual(plan.name, "2-1-1")

  def test_scenario_brings_its_order_and_rejects_another(self):
    scenarios = {"insects-last": ("2-2", ("dog", "cat", "ant", "bee"))}
    plan = task_plan("insects-last", "dataset", NAMES, scenarios)
    self.assertEqual((plan.name, plan.steps), ("insects-last", ((0, 1, 2), (3, 4))))
    with self.assertRaisesRegex(TaskError, "fixes its own class order"):
      task_plan("insects-last", "frequency", NAMES, scenarios)


if __name__ == "__main__":
  tf.test.main()
