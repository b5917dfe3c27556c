"""Method records become the right objective at each step (spec §4, §6 weights and options)."""
import numpy as np
import tensorflow as tf

from kdseg.losses.distillation import OutputDistillation, SimilarityPreservingDistillation
from kdseg.losses.segmentation import BinaryCrossEntropy, CrossEntropy, UnbiasedCrossEntropy
from kdseg.losses.weak import UnlabeledPriorLoss
from kdseg.engine.loop import Schedule, StepTrainer, make_optimizer
from kdseg.methods import (KD_PAPER_TEMPERATURE, METHODS, Method, MethodError, Term,
                           build_objective, customize, get_method)
from kdseg.models.freezing import freeze
from kdseg.models.segmenter import ModelConfig, build_segmenter
from tests.helpers import END_TO_END_METHODS

# Every named method the issue lists: both papers' methods and the MiB ablation rows.
NAMED = ["ft", "joint", "lwf", "lwf-mc", "ilt", "ewc", "pi", "rw", "mib", "mib-ce-only",
         "mib-ce-kd", "kd-ft", "kd-cls", "kd-cls-t", "ef", "e2lf", "ef+kd-cls", "ef+kd-cls-t",
         "e2lf+kd-cls-t",
         "kd-enc", "kd-dec", "ef+kd-dec", "kd-spkd", "kd-spkd-avg",
         "plop", "plop-ade", "plop-pod", "plop-pseudo"]


def _terms(name, old_classes=16):
  objective = build_objective(get_method(name), old_classes)
  return [(t.name, t.weight, t.endpoint, t.pixels) for t in objective.distillation]


class ObjectiveTest(tf.test.TestCase):

  def test_methods_left_out_of_the_end_to_end_run_give_finite_terms_and_gradients(self):
    # The step-1 objective of each named method test_train.py does not train end to end, on a
    # tiny model (eager: forward of both models, every term, the gradient).
    left_out = [name for name in METHODS if name not in END_TO_END_METHODS]
    self.assertCountEqual(left_out, ["mib-ce-only", "mib-ce-kd", "kd-cls", "ef+kd-cls",
                                     "ef+kd-cls-t", "e2lf+kd-cls-t", "ef+kd-dec", "kd-spkd",
                                     "plop-ade", "plop-pod", "plop-pseudo"])
    config = ModelConfig("tiny", 16, 8)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[5, 1])
    labels = tf.random.stateless_uniform([2, 32, 32], seed=[5, 2], maxval=4, dtype=tf.int32)
    old_model = build_segmenter(config, [3])
    old_model.trainable = False
    for name in left_out:
      method = METHODS[name]
      model = build_segmenter(config, [3, 1])
      objective = build_objective(method, old_classes=3)
      freeze(model, objective.freeze)
      trainer = StepTrainer(tf.distribute.get_strategy(), model, old_model, objective,
                            make_optimizer(Schedule(0.01, 1, 1)), 1e-4)
      terms, gradients = trainer._losses_and_gradients(images, labels)   # pylint: disable=protected-access
      self.assertCountEqual(terms, [objective.classification.name] +
                            [t.name for t in objective.distillation], msg=name)
      for term, value in terms.items():
        self.assertTrue(np.isfinite(float(value)), msg=f"{name} {term}")
      self.assertTrue(all(np.all(np.isfinite(g)) for g in gradients), msg=name)
      self.assertGreater(sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients), 0.0, msg=name)

  def test_every_named_method_is_registered(self):
    self.assertCountEqual(METHODS, NAMED)

  def test_step_0_is_plain_ce_without_distillation_or_freezing(self):
    for method in METHODS.values():
      objective = build_objective(method, old_classes=0)
      self.assertEmpty(objective.distillation, msg=method.name)
      self.assertIsInstance(objective.classification, CrossEntropy, msg=method.name)
      self.assertEqual(objective.freeze, "none", msg=method.name)
      self.assertEqual(objective.classification.pixel_mean, method.pixel_mean, msg=method.name)

  def test_mib_paper_terms_and_weights(self):
    self.assertEqual(_terms("ft"), [])
    self.assertEqual(_terms("lwf"), [("kd", 100.0, "logits", None)])
    self.assertEqual(_terms("ilt"), [("kd", 100.0, "logits", None),
                                     ("feature_mse", 100.0, "encoder", None)])
    self.assertEqual(_terms("mib"), [("ukd", 10.0, "logits", None)])
    self.assertEqual(_terms("lwf-mc"), [("bce_distill", 10.0, "logits", None)])
    bce = build_objective(get_method("lwf-mc"), 16).classification
    self.assertIsInstance(bce, BinaryCrossEntropy)
    self.assertEqual(bce.pixel_mean, "all")   # the trainer's .mean() over all pixels
    self.assertEqual(_terms("mib-ce-only"), [("kd", 100.0, "logits", None)])
    self.assertEqual(_terms("mib-ce-kd"), [("ukd", 10.0, "logits", None)])
    for name in ("mib", "mib-ce-only", "mib-ce-kd"):
      self.assertIsInstance(build_objective(get_method(name), 16).classification,
                            UnbiasedCrossEntropy)
    self.assertEqual([get_method(n).init for n in ("mib", "mib-ce-kd")], ["background", "random"])
    for name, weight in (("ewc", 500.0), ("pi", 500.0), ("rw", 100.0)):
      objective = build_objective(get_method(name), 16)
      self.assertEqual((objective.regularizer, objective.regularizer_weight), (name, weight))
      self.assertFalse(get_method(name).shares_step0)   # their state starts at step 0
    self.assertTrue(get_method("joint").offline)

  def test_kd_paper_released_methods_and_their_schedules(self):
    # The released code: LD1/script.job runs FT (lambda 0) and L_cls (lambda 1), and
    # encoderfixed_LD1/script.job EF with lambda 0 and 1, all with --decay_steps 20000 (step 0's
    # length) at step 1; LD2/script.job (L_enc) with --decay_steps 1000 (the step).
    first_step = {"kd-ft", "kd-cls", "kd-cls-t", "ef", "ef+kd-cls", "ef+kd-cls-t"}
    for name, method in METHODS.items():
      self.assertEqual(method.incremental_decay, "first_step" if name in first_step else "step",
                       msg=name)
    self.assertEqual(_terms("kd-ft"), [])
    self.assertEqual(_terms("ef+kd-cls"), [("cls", 1.0, "logits", "old+bg")])
    method = get_method("ef+kd-cls")
    self.assertEqual((method.freeze, method.temperature, method.pixel_mean),
                     ("encoder", 1.0, "valid"))
    self.assertEqual(customize(get_method("kd-cls"), incremental_decay="step").name,
                     "kd-cls+decay=step")
    with self.assertRaisesRegex(MethodError, "incremental_decay"):
      customize(get_method("kd-cls"), incremental_decay="linear")

  def test_kd_paper_terms_freezing_and_valid_pixel_ce(self):
    # L_cls on background + old-class pixels at weight 1 (the scripts: old_bgr, lambda 1).
    self.assertEqual(_terms("kd-cls"), [("cls", 1.0, "logits", "old+bg")])
    # L_enc: mean over elements, weight 50 (LD2 script); L_dec the same.
    self.assertEqual(_terms("kd-enc"), [("enc", 50.0, "encoder", None)])
    self.assertEqual(_terms("kd-dec"), [("dec", 50.0, "aspp", None)])
    for name in ("kd-enc", "kd-dec"):
      self.assertEqual(build_objective(get_method(name), 16).distillation[0].loss.normalisation,
                       "mean")
    # L_cls-T's weight is T^2 (the printed term has no T^2 factor).
    self.assertEqual(_terms("kd-cls-t"),
                     [("cls", KD_PAPER_TEMPERATURE ** 2, "logits", "old+bg")])
    self.assertEqual(_terms("kd-spkd-avg"), [("spkd_avg", 1.0, "encoder", None)])
    cls_t = build_objective(get_method("kd-cls-t"), 16).distillation[0].loss
    self.assertIsInstance(cls_t, OutputDistillation)
    self.assertEqual(cls_t.temperature, KD_PAPER_TEMPERATURE)
    self.assertEqual(build_objective(get_method("kd-cls"), 16).distillation[0].loss.temperature,
                     1.0)
    self.assertFalse(build_objective(get_method("kd-spkd"), 16).distillation[0].loss.spatial_sum)
    freezes = {n: build_objective(get_method(n), 16).freeze for n in
               ("ef", "e2lf", "ef+kd-cls-t", "e2lf+kd-cls-t", "ef+kd-dec", "kd-cls")}
    self.assertEqual(freezes, {"ef": "encoder", "e2lf": "first-two", "ef+kd-cls-t": "encoder",
                               "e2lf+kd-cls-t": "first-two", "ef+kd-dec": "encoder",
                               "kd-cls": "none"})
    for name in NAMED:
      kd_paper = name.startswith(("kd-", "ef", "e2lf"))
      self.assertEqual(get_method(name).pixel_mean, "valid" if kd_paper else "all", msg=name)
    # KD-paper methods share a step 0 trained with the valid-pixel CE, MiB ones theirs.
    self.assertEqual({get_method(n).step0_key for n in ("kd-cls", "ef")}, {"ce-valid"})
    self.assertEqual(get_method("lwf").step0_key, "ce")

  def test_inconsistent_records_are_rejected(self):
    with self.assertRaisesRegex(MethodError, "distillation term 'nope'"):
      build_objective(Method("x", "", "ce", (Term("nope", 1.0),)), old_classes=3)
    with self.assertRaisesRegex(MethodError, "classification loss 'bce2'"):
      build_objective(Method("x", "", "bce2"), old_classes=3)
    with self.assertRaisesRegex(MethodError, "freeze 'half'"):
      build_objective(Method("x", "", freeze="half"), old_classes=3)


class CustomizeTest(tf.test.TestCase):

  def test_flags_compose_any_method(self):
    method = customize(get_method("mib"), freeze="first-two", distill=["enc:100"])
    self.assertEqual(method.name, "mib+freeze=first-two+enc=100")
    self.assertEqual(_terms_of(method), [("ukd", 10.0, "logits", None),
                                         ("enc", 100.0, "encoder", None)])
    self.assertEqual(method.init, "background")

  def test_reweight_remove_and_options(self):
    self.assertEqual(customize(get_method("lwf"), distill=["kd:10"]).distillation,
                     (Term("kd", 10.0),))
    self.assertEqual(customize(get_method("ilt"), distill=["feature_mse:0"]).distillation,
                     (Term("kd", 100.0),))
    method = customize(get_method("kd-cls-t"), temperature=3.0, distill_pixels="old")
    self.assertEqual(method.name, "kd-cls-t+T=3.0+pixels=old")
    objective = build_objective(method, 5)
    self.assertEqual((objective.distillation[0].loss.temperature,
                      objective.distillation[0].pixels), (3.0, "old"))
    method = customize(get_method("ft"), regularizer="ewc")
    self.assertEqual((method.regularizer, method.regularizer_weight), ("ewc", 500.0))
    spkd = build_objective(customize(get_method("kd-spkd"), spkd_divide_by="batch_squared"), 5)
    self.assertIsInstance(spkd.distillation[0].loss, SimilarityPreservingDistillation)
    self.assertEqual(spkd.distillation[0].loss.divide_by, "batch_squared")
    self.assertIs(customize(get_method("mib")), get_method("mib"))   # no change, same record

  def test_ce_pixel_restriction_is_a_kd_paper_option(self):
    objective = build_objective(customize(get_method("kd-cls"), ce_pixels="new"), 5)
    self.assertEqual(objective.classification_pixels, "new")
    self.assertIsNone(build_objective(customize(get_method("kd-cls"), ce_pixels="new"),
                                      0).classification_pixels)   # step 0: all classes are new
    with self.assertRaisesRegex(MethodError, "--pixel_mean=valid"):
      customize(get_method("mib"), ce_pixels="objects")

  def test_an_option_the_method_ignores_is_an_error(self):
    with self.assertRaisesRegex(MethodError, r"--temperature changes only the cls term, which "
                                r"--method=mib does not have \(methods with it: kd-cls, "):
      customize(get_method("mib"), temperature=2.0)
    with self.assertRaisesRegex(MethodError, "--kd_alpha .* --method=kd-cls"):
      customize(get_method("kd-cls"), kd_alpha=2.0)
    with self.assertRaisesRegex(MethodError, "--spkd_divide_by"):
      customize(get_method("ft"), spkd_divide_by="batch")
    with self.assertRaisesRegex(MethodError, "--feature_normalisation .* --distill=enc"):
      customize(get_method("lwf"), feature_normalisation="frobenius")
    with self.assertRaisesRegex(MethodError, "--distill_pixels"):
      customize(get_method("ef"), distill_pixels="old")
    # Options of a term the flags add are fine, and so is the method's own value.
    method = customize(get_method("mib"), distill=["enc:0.1"], feature_normalisation="frobenius")
    self.assertEqual(build_objective(method, 5).distillation[1].loss.normalisation, "frobenius")
    self.assertEqual(method.name, "mib+features=frobenius+enc=0.1")
    self.assertIs(customize(get_method("kd-cls-t"), temperature=KD_PAPER_TEMPERATURE),
                  get_method("kd-cls-t"))

  def test_bad_values_name_the_flag(self):
    with self.assertRaisesRegex(MethodError, "--distill"):
      customize(get_method("ft"), distill=["enc:lots"])
    with self.assertRaisesRegex(MethodError, "--distill:"):
      customize(get_method("ft"), distill=["l2:1"])
    with self.assertRaisesRegex(MethodError, "--regularizer"):
      customize(get_method("ft"), regularizer="si:1")


def _terms_of(method):
  return [(t.name, t.weight, t.endpoint, t.pixels)
          for t in build_objective(method, 16).distillation]



class WeakObjectiveTest(tf.test.TestCase):

  def test_the_weak_loss_replaces_the_supervised_loss_at_every_step(self):
    step0 = build_objective(METHODS["mib"], 0, "unl", 0.5)
    self.assertIsInstance(step0.classification, UnlabeledPriorLoss)
    self.assertEqual((step0.classification.gamma, step0.classification.old_classes), (0.5, 0))
    step1 = build_objective(METHODS["mib"], 16, "unl")
    self.assertEqual(step1.classification.old_classes, 16)      # MiB: the unbiased form
    self.assertEqual([t.name for t in step1.distillation], ["ukd"])
    self.assertEqual(build_objective(METHODS["lwf"], 16, "pce").classification.old_classes, 0)
    with self.assertRaisesRegex(MethodError, "no weak form"):
      build_objective(METHODS["lwf-mc"], 16, "unl")

if __name__ == "__main__":
  tf.test.main()


class MethodRecordTest(tf.test.TestCase):

  def test_fields_added_later_are_recorded_only_when_changed(self):
    # Run directories written before PLOP's fields existed still match their methods.
    from kdseg.methods import method_from_record, method_record  # pylint: disable=g-import-not-at-top
    for name in ("mib", "kd-cls-t", "plop", "plop-pod"):
      method = get_method(name)
      record = method_record(method)
      self.assertEqual(method_from_record(record), method, msg=name)
    self.assertNotIn("pseudo", method_record(get_method("mib")))
    self.assertEqual(method_record(get_method("plop"))["pseudo"], "entropy")
    self.assertNotIn("pseudo_median", method_record(get_method("plop")))

  def test_a_method_json_of_another_version_matches(self):
    import dataclasses  # pylint: disable=g-import-not-at-top
    from kdseg.methods import method_record  # pylint: disable=g-import-not-at-top
    from kdseg.run.stepping import _canonical_method  # pylint: disable=g-import-not-at-top
    method = get_method("mib")
    now = {"method": method_record(method), "lr_incremental": 0.001}
    older = {"method": {k: v for k, v in now["method"].items()}, "lr_incremental": 0.001}
    fuller = {"method": dataclasses.asdict(method), "lr_incremental": 0.001}
    fuller["method"]["distillation"] = [dataclasses.asdict(t) for t in method.distillation]
    for recorded in (older, fuller):
      self.assertEqual(_canonical_method(recorded), _canonical_method(now))
    changed = {"method": {**now["method"], "kd_alpha": 2.0}, "lr_incremental": 0.001}
    self.assertNotEqual(_canonical_method(changed), _canonical_method(now))
