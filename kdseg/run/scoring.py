"""Scoring finished steps: the confusion matrix of a step on a split (cached beside its weights),
the result records, TensorBoard's eval summaries, and a finished model read from a run directory
alone (kdseg.predict / kdseg.export need neither the dataset nor the training flags).
"""
from __future__ import annotations

import dataclasses
import json
import sys

import tensorflow as tf

from kdseg import fs, metrics, report
from kdseg.config import EvaluationConfig
from kdseg.constants import IGNORE_LABEL
from kdseg.data import pipeline, splits
from kdseg.data.tasks import TaskPlan
from kdseg.engine import checkpoints, summaries
from kdseg.engine.evaluation import confusion_matrix, predict_probabilities
from kdseg.methods import Method
from kdseg.models.segmenter import Segmenter, config_record, output_order, step_heads
from kdseg.run.experiment import (Experiment, how_to_train, joint_plan, step_images,
                                  train_labels)
from kdseg.rundir import RecordedRun, RunDir


def require_finished(run_dir: RunDir, method: Method, step: int) -> str:
  """The folder of a finished step, or CheckpointError saying how to train it."""
  directory = run_dir.step_dir(method, step)
  if not checkpoints.is_complete(directory):
    raise checkpoints.CheckpointError(
        f"step {step} of {method.name} is not finished in {directory} (no final/done.json). "
        + how_to_train(step, method))
  return directory


def finished_model(run_dir: RunDir, recorded: RecordedRun, method: Method,
                   step: int) -> tuple[Segmenter, TaskPlan, int]:
  """(model, plan, step) of a finished step; step -1 = the task's last (joint: its one step)."""
  plan = joint_plan(recorded.plan) if method.offline else recorded.plan
  step = 0 if method.offline else (plan.require_step(step) if step >= 0 else plan.num_steps - 1)
  directory = require_finished(run_dir, method, step)
  return (checkpoints.load_final(directory, recorded.model, step_heads(recorded.model, plan, step)),
          plan, step)


def score_step(experiment: Experiment, method: Method, step: int, plan: TaskPlan | None = None,
               split: str = "val", evaluation: EvaluationConfig | None = None,
               checkpoint_dir: str | None = None):
  """Scores the finished model of `step` on the images of `split` holding classes seen so far.

  With `plan` (joint training) the model of that plan's `step` is evaluated and reported as the
  last step of the experiment's plan, whose classes it predicts in the same order.
  Returns (record, model, dataset).
  """
  evaluation = evaluation or experiment.config.evaluation
  plan = plan or experiment.plan
  report_plan = experiment.plan
  report_step = report_plan.num_steps - 1 if plan.joint else step
  directory = checkpoint_dir or require_finished(experiment.run_dir, method, step)
  model = checkpoints.load_final(directory, experiment.config.model,
                                 step_heads(experiment.config.model, plan, step))
  if split == "holdout":  # the step's held-out training images, labelled as in training
    files = experiment.source.split("train")
    ids = step_images(experiment, plan, step)["holdout"]
    label_table = train_labels(experiment, plan, step)
  else:
    files = experiment.source.split(split)
    present = experiment.val_presence if split == "val" else experiment.train_presence
    rows = splits.eval_rows(present, plan, step, evaluation.images)
    if split == "val":  # the validation list of a step is recorded with the run's splits
      ids = splits.step_ids(experiment.run_dir.splits_dir(joint=plan.joint),
                            step, splits.eval_kind(evaluation.images), files.ids, rows)
    else:
      ids = tuple(files.ids[r] for r in rows)
    label_table = splits.eval_label_table(plan, step)
  dataset = pipeline.eval_dataset(experiment.source, files.select(ids), label_table,
                                  evaluation.batch_size, evaluation.crop)
  test_time = evaluation.test_time
  # The confusion matrix is kept beside the weights it scored, keyed by their digest: a step 0
  # shared by several methods, or a re-run, is scored once per split and test-time setting, and
  # replaced weights are scored again.
  weights = checkpoints.digest(directory)
  images = "" if evaluation.images == "seen" or split == "holdout" else f"_{evaluation.images}"
  cache = checkpoints.final_file(
      directory, f"confusion_{split}{images}_{test_time.tag}_crop{evaluation.crop}_{weights}.npy")
  if fs.isfile(cache):
    confusion = fs.load_npy(cache)
  else:
    verbose = bool(experiment.config.verbose)
    # Every output of the model: with --classifier=full a step's model also scores the classes
    # of later steps, and a pixel predicted as one of them is an error, as in the KD code.
    confusion = confusion_matrix(model, dataset, model.num_classes, test_time,
                                 progress=verbose and sys.stdout.isatty(),
                                 log=verbose and not sys.stdout.isatty())
    if checkpoint_dir is None and experiment.chief:
      experiment.run_dir.write_npy(cache, confusion)
  record = report.step_record(report_plan, report_step, metrics.scores(confusion),
                              experiment.source.class_names, evaluation.background_in_old)
  record.update({"split": split, "num_images": len(ids), "test_time": test_time.tag,
                 **({"eval_images": evaluation.images} if images else {}),
                 "eval_crop": evaluation.crop, "checkpoint": directory,
                 "checkpoint_digest": weights,
                 "confusion": confusion.tolist()})
  return record, model, dataset


def evaluate_step(experiment: Experiment, method: Method, step: int,
                  plan: TaskPlan | None = None) -> dict:
  """Scores a just-finished step on its validation images (or the hold-out): writes
  results/step_<t>.json and the TensorBoard eval summaries. Non-chief workers: {}."""
  if not experiment.chief:
    return {}
  config, run_dir = experiment.config, experiment.run_dir
  split = "holdout" if config.protocol.holdout_fraction else "val"
  record, model, dataset = score_step(experiment, method, step, plan, split=split)
  report_step = record["step"]
  path = run_dir.step_results(method.name, report_step)
  if _unchanged(path, record):   # a rerun of a finished step: no second copy of its events
    return record
  run_dir.write_json(path, record)
  writer = tf.summary.create_file_writer(run_dir.tensorboard(method.name, "eval"))
  summaries.write_step(writer, report_step, record, report.format_step_table(record, method.name),
                       _panels(model, dataset, output_order(plan or experiment.plan, model),
                               experiment))
  summaries.write_hparams(writer, method, {
      "dataset": config.data.dataset, "task": config.protocol.task,
      "setting": config.protocol.setting, "class_order": config.protocol.class_order,
      **config_record(config.model), "lr": config.schedule.lr,
      "lr_incremental": config.schedule.lr_incremental, **config.schedule.shared_record()})
  writer.close()
  return record


def _unchanged(path: str, record: dict) -> bool:
  """Whether `path` already holds this record (same weights, split and options, same scores)."""
  if not fs.isfile(path):
    return False
  try:
    return fs.read_json(path) == json.loads(json.dumps(record))
  except fs.CorruptFileError:
    return False   # cut short: written again


def _panels(model, dataset: tf.data.Dataset, order, experiment: Experiment):
  """Input | ground truth | prediction of the first summary_images images the evaluation reads
  (the same ones every time), each predicted alone as it was scored, then padded to a common
  size for the summary (padding shown as void)."""
  evaluation = experiment.config.evaluation
  count = evaluation.summary_images
  if count <= 0:
    return None
  shown = [(image, label, tf.argmax(predict_probabilities(model, image[None],
                                                          evaluation.test_time), axis=-1)[0])
           for image, label in dataset.unbatch().take(count)]
  if not shown:
    return None
  height = max(int(image.shape[0]) for image, _, _ in shown)
  width = max(int(image.shape[1]) for image, _, _ in shown)

  def padded(tensor, value):
    rows, cols = height - tensor.shape[0], width - tensor.shape[1]
    return tf.pad(tensor, [[0, rows], [0, cols]] + [[0, 0]] * (len(tensor.shape) - 2),
                  constant_values=value)

  images, labels, predictions = (tf.stack([padded(parts[i], value) for parts in shown])
                                 for i, value in ((0, 0.0), (1, IGNORE_LABEL), (2, IGNORE_LABEL)))
  return summaries.image_panels(images, labels, predictions, order, experiment.source.palette)


def tool_evaluation(recorded: RecordedRun, evaluation: EvaluationConfig,
                    given: tuple[str, ...]) -> EvaluationConfig:
  """A tool's evaluation options: the run's recorded batch, crop and mIoU convention unless the
  command line gave them; test-time options always from the command line."""
  defaults = recorded.evaluation
  recorded_values = {"batch_size": defaults["eval_batch_size"], "crop": defaults["eval_crop"],
                     "background_in_old": defaults["background_in_old"],
                     "images": defaults.get("eval_images", "seen")}
  return dataclasses.replace(evaluation, **{k: v for k, v in recorded_values.items()
                                            if k not in given})
