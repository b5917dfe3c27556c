"""Class orders (dataset, alphabetical, pixel frequency, seeded random, explicit) and the task
plans they give."""
import os

import numpy as np
import tensorflow as tf

from kdseg.data.orders import class_order, task_plan
from kdseg.data.tasks import TaskError
from kdseg.data.ade20k import ADE20K_CLASSES, ADE20K_ORDERS
from kdseg.data.voc import VOC_CLASSES, VOC_ORDERS

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
    # numpy's print of an id array, as the MiB repository's data/ade/order-b.txt.
    with open(path, "w") as out:
      out.write("[ 3  4\n  2 1]\n")
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


class NamedOrderTest(tf.test.TestCase):
  """The MiB reference's tasks.py orders: ADE20K "b" and "c" for 100-50, 100-10 and 50-50
  (its "50" task), VOC "19-1b"."""

  def test_every_named_order_learns_every_class_once(self):
    for orders, names in ((ADE20K_ORDERS, ADE20K_CLASSES), (VOC_ORDERS, VOC_CLASSES)):
      for order, by_task in orders.items():
        for task, steps in by_task.items():
          classes = [c for step in steps for c in step]
          self.assertCountEqual(classes, range(len(names)), msg=(order, task))
          self.assertEqual(steps[0][0], 0, msg=(order, task))

  def test_plans_follow_the_reference_steps_and_numbering(self):
    plan = task_plan("100-10", "b", ADE20K_CLASSES, {}, named_orders=ADE20K_ORDERS)
    self.assertEqual(plan.name, "100-10b")
    self.assertEqual(plan.new_classes(1), (11, 16, 50, 64, 66, 73, 89, 92, 145, 146))
    self.assertEqual(plan.new_classes(5), (17, 20, 59, 68, 83, 94, 102, 122, 127, 137))
    # The reference numbers outputs [0] + labels_old + labels, each step in its listed order.
    self.assertEqual(plan.order(1)[:4], (0, 1, 3, 5))
    self.assertEqual(plan.order(1)[101:103], (11, 16))
    plan = task_plan("50-50", "c", ADE20K_CLASSES, {}, named_orders=ADE20K_ORDERS)
    self.assertEqual([len(s) for s in plan.steps], [51, 50, 50])
    self.assertEqual(plan.new_classes(2)[:4], (2, 3, 4, 7))
    self.assertEqual(plan.steps[0][:4], (0, 5, 10, 11))
    plan = task_plan("100-50", "b", ADE20K_CLASSES, {}, named_orders=ADE20K_ORDERS)
    self.assertEqual(set(plan.new_classes(1)), set(ADE20K_ORDERS["b"]["50-50"][2]))
    plan = task_plan("19-1", "b", VOC_CLASSES, {}, named_orders=VOC_ORDERS)
    self.assertEqual((plan.new_classes(1), 5 in plan.steps[0]), ((5,), False))

  def test_a_named_order_without_the_task_is_an_error(self):
    with self.assertRaisesRegex(TaskError, r"--class_order=b is defined for tasks 100-50, "
                                r"100-10, 50-50 .* not for --task=100-5"):
      task_plan("100-5", "b", ADE20K_CLASSES, {}, named_orders=ADE20K_ORDERS)
    with self.assertRaisesRegex(TaskError, "'c' is not an object class"):
      task_plan("19-1", "c", VOC_CLASSES, {}, named_orders=VOC_ORDERS)


if __name__ == "__main__":
  tf.test.main()
