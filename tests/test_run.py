"""The run layer without flags: a RunConfig built directly -> experiment, a step, its score, and
a finished model read back from the run directory alone."""
import dataclasses
import json
import os
import shutil
import tempfile

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg.config import (EvaluationConfig, FlagValueError, ProtocolConfig, RunConfig,
                          ScheduleConfig)
from kdseg.data.datasets import DataConfig
from kdseg.data.shapes import ShapesConfig
from kdseg.data import splits
from kdseg.engine import checkpoints
from kdseg.engine.evaluation import TestTime
from kdseg.methods import get_method
from kdseg.models.segmenter import ModelConfig, build_segmenter
from kdseg.run.experiment import build_experiment, open_experiment, step_images
from tests import helpers
from kdseg.run.scoring import finished_model, score_step
from kdseg.run.stepping import initial_model, run_method, step_schedule, train_step
from kdseg.rundir import ConfigMismatchError, RunDir


def _config(base: str, **changes) -> RunConfig:
  config = RunConfig(
      data=DataConfig("shapes", None, os.path.join(base, "cache"), ShapesConfig(32, 64, 24)),
      protocol=ProtocolConfig(task="19-1"),
      model=ModelConfig("tiny", 16, 16),
      schedule=ScheduleConfig(lr=0.01, lr_incremental=0.001, epochs=1, epochs_incremental=1,
                              batch_size=4, crop_size=32),
      evaluation=EvaluationConfig(batch_size=12, summary_images=2),
      methods=(get_method("mib"),), run_dir=os.path.join(base, "run"), verbose=0)
  return dataclasses.replace(config, **changes)


class RunLayerTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp(prefix="kdseg_run_")
    flags.FLAGS.unparse_flags()   # any FLAGS read below this point would raise

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.base, ignore_errors=True)
    super().tearDownClass()

  def test_experiment_step_and_score_without_flags(self):
    config = _config(self.base)
    experiment = build_experiment(config)
    run_dir = experiment.run_dir
    with open(run_dir.experiment_json) as handle:
      recorded = json.load(handle)
    self.assertEqual((recorded["task"], recorded["void_label"]), ("19-1", "background"))
    self.assertEqual(run_dir.require_run().plan, experiment.plan)
    mib = get_method("mib")
    train_step(experiment, mib, 0)
    self.assertTrue(checkpoints.is_complete(run_dir.step_dir(mib, 0)))
    record, model, _ = score_step(experiment, mib, 0)
    self.assertEqual((record["step"], record["split"]), (0, "val"))
    self.assertLen(record["class_iou"], 20)
    self.assertEqual(model.classifier.classes_per_step, [20])
    # run_method trains step 1 from the finished step 0, scores it, writes the summaries.
    last = run_method(experiment, mib, [0, 1])
    self.assertEqual(last["step"], 1)
    self.assertTrue(os.path.isfile(run_dir.step_results("mib", 1)))
    # A finished run is usable alone: the model of its last step from run.json + method.json.
    loaded_method = run_dir.load_method("mib")
    model, plan, step = finished_model(run_dir, run_dir.require_run(), loaded_method, -1)
    self.assertEqual((step, model.classifier.classes_per_step), (1, [20, 1]))
    # ... and scorable without the training configuration (its recorded dataset location).
    reopened = open_experiment(run_dir, run_dir.require_run(), loaded_method,
                               EvaluationConfig(batch_size=12))
    again, _, _ = score_step(reopened, loaded_method, 1)
    self.assertEqual(again["confusion"], last["confusion"])

  def test_checks_before_anything_is_written(self):
    # A missing previous step, or a step with fewer images than a batch: refused before the run
    # directory is created.
    missing = _config(self.base, run_dir=os.path.join(self.base, "checks"), step=1,
                      methods=(get_method("ft"),))
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                r"--step=1 needs the finished step 0 .*--step=0"):
      build_experiment(missing)
    self.assertFalse(os.path.exists(missing.run_dir))
    big = _config(self.base, run_dir=os.path.join(self.base, "big"),
                  schedule=ScheduleConfig(batch_size=100))
    with self.assertRaisesRegex(FlagValueError, "fewer than --batch_size=100"):
      build_experiment(big)
    self.assertFalse(os.path.exists(big.run_dir))
    # No image of class 20 at all: said so (not "lower --batch_size").
    labels = {"train": {f"t{i}": np.full((8, 8), 1 + i % 3, np.uint8) for i in range(6)},
              "val": {"v0": np.full((8, 8), 1, np.uint8)}}
    root = helpers.write_voc_tree(os.path.join(self.base, "voc_without_20"), labels)
    empty = _config(self.base, data=DataConfig("voc", root, os.path.join(self.base, "cache"),
                                               ShapesConfig()),
                    run_dir=os.path.join(self.base, "empty"), methods=(get_method("ft"),))
    with self.assertRaisesRegex(splits.SplitError, r"step 1 has no training image .*\[20\]"):
      build_experiment(empty)
    self.assertFalse(os.path.exists(empty.run_dir))

  def test_evaluation_convention_of_a_run_directory_is_kept(self):
    # A run directory's results share one evaluation convention: a later run with another crop,
    # mIoU convention, image set or test-time option is refused before anything is written
    # (run.json keeps its bytes); the same convention is accepted.
    config = _config(self.base, run_dir=os.path.join(self.base, "convention"))
    build_experiment(config)
    run_json = RunDir(config.run_dir).run_json
    with open(run_json, "rb") as handle:
      before = handle.read()
    others = {"eval_crop": dataclasses.replace(config.evaluation, crop=24),
              "background_in_old": dataclasses.replace(config.evaluation,
                                                       background_in_old=False),
              "eval_images": dataclasses.replace(config.evaluation, images="no_future"),
              "test_time": dataclasses.replace(config.evaluation,
                                               test_time=TestTime(flip=True))}
    for name, evaluation in others.items():
      with self.assertRaisesRegex(ConfigMismatchError, f"{name}: was .*kdseg.evaluate"):
        build_experiment(dataclasses.replace(config, evaluation=evaluation))
      with open(run_json, "rb") as handle:
        self.assertEqual(handle.read(), before, msg=name)
    build_experiment(dataclasses.replace(
        config, evaluation=dataclasses.replace(config.evaluation, batch_size=3)))

  def test_the_same_data_moved_keeps_its_run_directory(self):
    # The guard is on the data's content: the shapes cache moved elsewhere is accepted, other
    # data is not; a record from before the digest (the data's path) is upgraded where the
    # path still holds the data.
    config = _config(self.base, run_dir=os.path.join(self.base, "moved_run"),
                     data=DataConfig("shapes", None, os.path.join(self.base, "cache_a"),
                                     ShapesConfig(32, 64, 24)))
    experiment = build_experiment(config)
    path = experiment.run_dir.experiment_json
    with open(path) as handle:
      recorded = json.load(handle)
    shutil.copytree(os.path.join(self.base, "cache_a"), os.path.join(self.base, "cache_b"))
    moved = dataclasses.replace(config, data=dataclasses.replace(
        config.data, cache_dir=os.path.join(self.base, "cache_b")))
    build_experiment(moved)
    with open(path) as handle:
      self.assertEqual(json.load(handle), recorded)
    other = dataclasses.replace(config, data=dataclasses.replace(
        config.data, shapes=ShapesConfig(32, 64, 24, seed=5)))
    with self.assertRaisesRegex(ConfigMismatchError, "data_digest: was"):
      build_experiment(other)
    # experiment.json of the previous format (schema 1): the data's path, no optimizer.
    old_style = {k: v for k, v in recorded.items() if k not in ("data_digest", "schema")}
    old_style["step_0"] = {k: v for k, v in old_style["step_0"].items() if k != "optimizer"}
    with open(path, "w") as out:
      json.dump({**old_style, "data_root": experiment.source.root}, out)
    with self.assertRaisesRegex(ConfigMismatchError, r"step_0: was .*'optimizer': 'keras-sgd'"):
      build_experiment(config)
    with open(path) as handle:   # migrated: the digest, and the optimizer it was trained with
      self.assertEqual(json.load(handle),
                       {**recorded, "step_0": {**recorded["step_0"], "optimizer": "keras-sgd"}})
    # ... while a finished run of that format is still read by evaluate / predict / export.
    self.assertEqual(RunDir(config.run_dir).require_run().plan, experiment.plan)

  def test_step_0_on_a_real_dataset_needs_its_starting_weights(self):
    # The KD recipe without --backbone_weights: refused, naming the checkpoint the paper starts
    # from and where to get it; nothing written. --backbone_weights=none is the explicit way.
    labels = {"train": {f"t{i}": np.full((8, 8), (1, 2, 20)[i % 3], np.uint8) for i in range(6)},
              "val": {"v0": np.full((8, 8), 1, np.uint8)}}
    root = helpers.write_voc_tree(os.path.join(self.base, "voc"), labels)
    config = _config(self.base, data=DataConfig("voc", root, os.path.join(self.base, "cache"),
                                                ShapesConfig()),
                     protocol=ProtocolConfig(task="19-1", setting="incremental-learning"),
                     model=ModelConfig("resnet101_deeplab", 8, head="v2"),
                     schedule=ScheduleConfig(batch_size=2),
                     methods=(get_method("kd-ft"),), run_dir=os.path.join(self.base, "kd"))
    with self.assertRaisesRegex(FlagValueError, "deeplab_resnet_init.ckpt.*--backbone_weights="
                                "none"):
      build_experiment(config)
    self.assertFalse(os.path.exists(config.run_dir))
    self.assertTrue(os.path.isdir(build_experiment(
        dataclasses.replace(config, from_scratch=True)).run_dir.path))

  def test_kd_recipe_pieces_in_the_run_layer(self):
    # --classifier=full: the step-0 model has the future class's output, and a pixel predicted
    # as that class counts as an error (the KD code's argmax over all 21 outputs);
    # --incremental_decay: step 1 of kd-cls decays over step 0's length, kd-enc over its own.
    config = _config(self.base, run_dir=os.path.join(self.base, "kd_pieces"),
                     protocol=ProtocolConfig(task="19-1", setting="incremental-learning"),
                     model=ModelConfig("tiny", 16, 16, head="v2", classifier="full"),
                     methods=(get_method("kd-ft"),))
    experiment = build_experiment(config)
    kd_ft = get_method("kd-ft")
    train_step(experiment, kd_ft, 0)
    directory = experiment.run_dir.step_dir(kd_ft, 0)
    model = checkpoints.load_final(directory, config.model, [20, 1])
    record, _, _ = score_step(experiment, kd_ft, 0)
    self.assertGreater(record["overall_accuracy"], 0.0)
    for branch in model.classifier.branches:   # every pixel now predicts the future class
      branch.heads[1].bias.assign([100.0])
    forced = os.path.join(self.base, "kd_pieces_forced")
    checkpoints.save_final(model, forced)
    record, _, _ = score_step(experiment, kd_ft, 0, checkpoint_dir=forced)
    self.assertEqual((record["overall_accuracy"], record["miou_all"]), (0.0, 0.0))
    confusion = np.array(record["confusion"])   # each pixel in its true class's row, column 20
    self.assertEqual(confusion.shape, (21, 21))
    self.assertEqual(confusion[:, :20].sum(), 0)
    self.assertGreater(confusion[:20, 20].sum(), 0)
    self.assertLen(record["class_iou"], 20)   # the step's classes only

    plan, step0_images = experiment.plan, len(step_images(experiment, experiment.plan, 0)["train"])
    step0 = step_schedule(experiment, plan, 0, step0_images)
    self.assertEqual(step_schedule(experiment, plan, 1, 8, get_method("kd-cls")).decay_iterations,
                     step0.total_iterations)
    self.assertEqual(step_schedule(experiment, plan, 1, 8, get_method("kd-enc")).decay_iterations,
                     0)

  def test_a_step_trained_from_a_since_retrained_parent_is_refused(self):
    config = _config(self.base, run_dir=os.path.join(self.base, "parent"),
                     methods=(get_method("ft"),))
    run_dir = build_experiment(config).run_dir
    ft = get_method("ft")
    step0, step1 = run_dir.step_dir(ft, 0), run_dir.step_dir(ft, 1)
    model = build_segmenter(config.model, [20])
    checkpoints.save_final(model, step0)
    checkpoints.save_final(build_segmenter(config.model, [20, 1]), step1, parent=step0)
    build_experiment(config)   # consistent: accepted
    model.classifier.branches[0].heads[0].bias.assign(np.ones(20))   # step 0 trained again
    checkpoints.save_final(model, step0)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                r"step_1 was trained from another .*step_0.*delete .*step_1"):
      build_experiment(config)

  def test_initial_model_of_a_step_is_chained_from_the_previous_one(self):
    config = _config(self.base, run_dir=os.path.join(self.base, "chain"))
    experiment = build_experiment(config)
    mib = get_method("mib")
    train_step(experiment, mib, 0)
    step0 = checkpoints.load_final(experiment.run_dir.step_dir(mib, 0), config.model, [20])
    step1, old = initial_model(experiment, mib, 1)
    self.assertFalse(old.trainable)
    by_path = {v.path: v for v in step1.variables}
    for variable in step0.variables:  # backbone, head, BN statistics: all carried over
      if variable.path != "segmenter/classifier/head_0/bias":
        self.assertAllEqual(by_path[variable.path], variable, msg=variable.path)
    # MiB's background init (Eq. 10-11): the new head copies the background channel, and both
    # biases become b_bg - log(|new| + 1).
    old_head, background_head, new_head = (step0.classifier.heads[0], step1.classifier.heads[0],
                                           step1.classifier.heads[1])
    self.assertAllEqual(new_head.kernel[..., 0], old_head.kernel[..., 0])
    self.assertAllClose(new_head.bias[0], old_head.bias[0] - np.log(2))
    self.assertAllClose(background_head.bias[0], old_head.bias[0] - np.log(2))
    self.assertAllEqual(background_head.bias[1:], old_head.bias[1:])


if __name__ == "__main__":
  tf.test.main()
