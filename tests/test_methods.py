"""Method records become the right objective at each step (spec §4 weights)."""
import tensorflow as tf

from kdseg.losses.segmentation import CrossEntropy, UnbiasedCrossEntropy
from kdseg.methods import METHODS, MethodError, Method, Term, build_objective, get_method


class ObjectiveTest(tf.test.TestCase):

  def test_step_0_has_no_distillation_and_plain_ce(self):
    for method in METHODS.values():
      objective = build_objective(method, old_classes=0)
      self.assertEmpty(objective.distillation, msg=method.name)
      self.assertIsInstance(objective.classification, CrossEntropy, msg=method.name)

  def test_incremental_terms_and_weights(self):
    expected = {"ft": [], "lwf": [("kd", 100.0, "logits")],
                "ilt": [("kd", 100.0, "logits"), ("feature_mse", 100.0, "encoder")],
                "mib": [("ukd", 10.0, "logits")]}
    for name, terms in expected.items():
      objective = build_objective(get_method(name), old_classes=16)
      self.assertEqual([(loss.name, term.weight, term.endpoint)
                        for term, loss in objective.distillation], terms, msg=name)
    self.assertIsInstance(build_objective(get_method("mib"), 16).classification,
                          UnbiasedCrossEntropy)
    self.assertEqual(get_method("mib").init, "background")

  def test_inconsistent_records_are_rejected(self):
    with self.assertRaisesRegex(MethodError, "unknown terms"):
      build_objective(Method("x", "", "ce", (Term("nope", 1.0),)), old_classes=3)
    with self.assertRaisesRegex(MethodError, "classification"):
      build_objective(Method("x", "", "bce"), old_classes=3)


if __name__ == "__main__":
  tf.test.main()
