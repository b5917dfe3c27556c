import tensorflow as tf

from kdseg.data.tasks import TaskError, make_plan, step_sizes

VOC = list(range(1, 21))
ADE = list(range(1, 151))


class StepSizesTest(tf.test.TestCase):

  def test_paper_scenarios(self):
    self.assertEqual(step_sizes("19-1", 20), [19, 1])
    self.assertEqual(step_sizes("15-5", 20), [15, 5])
    self.assertEqual(step_sizes("15-1", 20), [15, 1, 1, 1, 1, 1])
    self.assertEqual(step_sizes("15-5s", 20), [15, 1, 1, 1, 1, 1])
    self.assertEqual(step_sizes("10-1", 20), [10] + [1] * 10)
    self.assertEqual(step_sizes("10-10", 20), [10, 10])
    self.assertEqual(step_sizes("10-5-5", 20), [10, 5, 5])
    self.assertEqual(step_sizes("100-50", 150), [100, 50])
    self.assertEqual(step_sizes("100-10", 150), [100] + [10] * 5)
    self.assertEqual(step_sizes("50-50", 150), [50, 50, 50])
    self.assertEqual(step_sizes("100-5", 150), [100] + [5] * 10)

  def test_malformed_names_are_rejected_with_the_flag_named(self):
    for bad in ("", "15", "15_1", "a-b", "15-", "-5", "15-0", "20-1", "25-5", "15-4",
                "10-5-4", "15-4s", "15-1-1s"):
      with self.assertRaisesRegex(TaskError, "--task", msg=bad):
        step_sizes(bad, 20)


class TaskPlanTest(tf.test.TestCase):

  def test_15_1_plan_as_in_the_spec(self):
    plan = make_plan("15-1", VOC)
    self.assertEqual(plan.num_steps, 6)
    self.assertEqual(plan.steps[0], tuple(range(0, 16)))
    self.assertEqual(plan.steps[1:], ((16,), (17,), (18,), (19,), (20,)))
    self.assertEqual(plan.old_classes(2), tuple(range(1, 17)))
    self.assertEqual(plan.new_classes(2), (17,))
    self.assertEqual(plan.num_classes(2), 18)
    self.assertEqual(plan.classes_per_step(2), [16, 1, 1])
    self.assertEqual(plan.future_classes(4), (20,))

  def test_order_renumbers_classes_by_learning_order(self):
    plan = make_plan("2-1", [5, 3, 9])  # learn 5 and 3, then 9
    self.assertEqual(plan.order(0), (0, 5, 3))
    self.assertEqual(plan.order(1), (0, 5, 3, 9))

  def test_bad_orders(self):
    with self.assertRaisesRegex(TaskError, "repeats"):
      make_plan("1-1", [1, 1])
    with self.assertRaisesRegex(TaskError, "background"):
      make_plan("1-1", [0, 1])


if __name__ == "__main__":
  tf.test.main()
