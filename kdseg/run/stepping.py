"""Training the learning steps of a method: images and labels of a step, the model chained from
the previous step, the objective, and the loop (kdseg.engine.loop).

Step t is initialised from the finished checkpoint of step t-1, which is also loaded, frozen, as
the old model. Finished steps are skipped, interrupted ones resume after their last save.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kdseg import fs, plot, report
from kdseg.data import pipeline
from kdseg.data.tasks import TaskPlan
from kdseg.engine import checkpoints, progress, summaries
from kdseg.engine.distribute import worker_id
from kdseg.engine.loop import Schedule, StepTrainer, TrainingDivergedError, make_optimizer
from kdseg.losses import pseudo
from kdseg.losses.regularizers import ImportanceRegularizer
from kdseg.methods import Method, build_objective, method_from_record, method_record
from kdseg.models import pretrained
from kdseg.models.classifier import HEAD_INITIALIZERS
from kdseg.models.freezing import freeze, freeze_statistics
from kdseg.models.segmenter import build_segmenter, copy_matching_weights, step_heads
from kdseg.run.experiment import (Experiment, barrier, experiment_steps, joint_plan, step_images,
                                  train_labels)
from kdseg.run.scoring import evaluate_step, require_finished
from kdseg.rundir import lock


def _regularizer(method: Method, model, old_model, previous_dir: str | None):
  """The step's EWC/PI/RW state, seeded with the previous step's finished state (None if the
  method has no regulariser)."""
  if method.regularizer is None:
    return None
  previous = old_parameters = None
  if old_model is not None:
    previous = checkpoints.load_state(previous_dir)
    old_parameters = {v.path: v.numpy() for v in old_model.variables}
  return ImportanceRegularizer(method.regularizer,
                               [(v.path, v) for v in model.trainable_variables], previous,
                               old_parameters, name=method.regularizer)


def initial_model(experiment: Experiment, method: Method, step: int,
                  plan: TaskPlan | None = None):
  """(model, old_model) at the start of `step`: step 0 from scratch (or the pretrained weights),
  step t from the finished step t-1 -- every matching weight copied, the new head initialised as
  the method says -- with that finished model, frozen, as the old model (None at step 0).
  With --batch_norm=frozen the BN layers whose statistics were loaded keep them (the backbone's
  at step 0 if weights were loaded; every layer from step 1 on)."""
  plan, config = plan or experiment.plan, experiment.config
  model = build_segmenter(config.model, step_heads(config.model, plan, step))
  frozen_statistics = config.schedule.batch_norm == "frozen"
  if step == 0:
    if experiment.pretrained_weights:
      count = pretrained.assign_weights(model.backbone, experiment.pretrained_weights,
                                        config.backbone_weights)
      print(f"  backbone: {count} layers from {config.backbone_weights}")
      if frozen_statistics:
        freeze_statistics(model.backbone)
    return model, None
  previous_dir = require_finished(experiment.run_dir, method, step - 1)
  old_model = checkpoints.load_final(previous_dir, config.model,
                                     step_heads(config.model, plan, step - 1))
  old_model.trainable = False
  copy_matching_weights(old_model, model)
  HEAD_INITIALIZERS[method.init](model.classifier)
  if frozen_statistics:
    freeze_statistics(model)
  return model, old_model


def step_schedule(experiment: Experiment, plan: TaskPlan, step: int, num_images: int,
                  method: Method | None = None) -> Schedule:
  """The schedule of `step`: its length, rate and decay horizon (the method's
  incremental_decay: over the step, or over as many iterations as step 0 ran)."""
  schedule = experiment.config.schedule
  first = step == 0
  length = Schedule(
      learning_rate=schedule.lr if first else schedule.lr_incremental,
      epochs=schedule.epochs if first else schedule.epochs_incremental,
      iterations_per_epoch=num_images // schedule.batch_size, momentum=schedule.momentum,
      weight_decay=schedule.weight_decay, poly_power=schedule.poly_power,
      end_learning_rate=schedule.end_lr, nesterov=schedule.nesterov,
      weight_decay_on=schedule.weight_decay_on,
      # KD paper §5.2: |S_0| x 1000 iterations at step 0 (background counts), |U_k| x 1000 later.
      iterations=schedule.iterations_per_class * len(plan.steps[step]))
  if first or method is None or method.incremental_decay == "step":
    return length
  step0 = step_schedule(experiment, plan, 0, len(step_images(experiment, plan, 0)["train"]))
  return dataclasses.replace(length, decay_iterations=step0.total_iterations)


@dataclasses.dataclass
class StepContext:
  """One step ready to train, built once by prepare_step: where it is saved, its images and
  schedule, the model chained from the previous step, the trainer (objective with its freezing,
  regulariser and weights; optimizer) and the training checkpoint it resumes from."""
  method: Method
  step: int
  plan: TaskPlan
  directory: str             # the step folder
  save_dir: str              # where this process saves (non-chief workers: a folder of their own)
  previous_dir: str | None   # the finished step t-1 it starts from
  num_images: int
  schedule: Schedule
  epoch_dataset: Callable    # (epoch, skip_batches, input_context) -> tf.data.Dataset
  model: keras.Model
  trainer: StepTrainer
  epoch: tf.Variable
  manager: object            # saves the step in progress (checkpoints.training_manager)
  regularizer: ImportanceRegularizer | None
  frozen: list[str]


def _epoch_data(experiment: Experiment, plan: TaskPlan, step: int, ids,
                num_epochs: int) -> Callable:
  """make(first_epoch, skip_batches, input_context) -> the step's training data from
  first_epoch to its last epoch."""
  config, weak_labels = experiment.config, experiment.weak_labels
  data = config.schedule
  files = (weak_labels.files if weak_labels else experiment.source.split("train")).select(ids)
  label_table = train_labels(experiment, plan, step)
  weak = None if weak_labels is None else pipeline.WeakLabels(
      plan.num_classes(step), background_is_class=not experiment.source.scene_parsing)

  def epoch_dataset(epoch_index: int, skip_batches: int, input_context=None):
    return pipeline.train_dataset(
        experiment.source, files, label_table, batch_size=data.batch_size,
        crop_size=data.crop_size, min_scale=data.min_scale, max_scale=data.max_scale,
        seed=config.seed, augmentation=data.augment, epoch=epoch_index,
        skip_batches=skip_batches, weak=weak, step=step, input_context=input_context,
        epochs=max(1, num_epochs - epoch_index))
  return epoch_dataset


PSEUDO_THRESHOLDS = "pseudo_thresholds.json"


def pseudo_thresholds(experiment: Experiment, method: Method, old_model, data: Callable,
                      schedule: Schedule, num_classes: int, directory: str) -> tuple[float, ...]:
  """PLOP's per-class entropy thresholds of a step (kdseg.losses.pseudo): the old model over one
  pass of the step's training batches (the first epoch's, as the step then trains on them), once;
  saved in the step folder with the histogram they come from, and read back when the step
  resumes."""
  path = fs.join(directory, PSEUDO_THRESHOLDS)
  if fs.exists(path):
    saved = fs.read_json(path)
    values = saved.get("thresholds") if isinstance(saved, dict) else None
    if not (isinstance(values, list) and len(values) == num_classes
            and all(isinstance(v, (int, float)) for v in values)):
      raise ValueError(f"{path}: not the pseudo-label thresholds of this step ({num_classes} "
                       "classes expected). Delete the file to compute them again.")
    print(f"  pseudo-label thresholds read from {path}")
    return tuple(float(v) for v in values)
  start = time.time()

  @tf.function
  def histogram(images, labels):
    return pseudo.entropy_histogram(old_model(images, training=False)["logits"], labels,
                                    num_classes)

  counts = np.zeros([num_classes, pseudo.NUM_BINS], np.int64)
  for images, labels in data(0, 0).take(schedule.iterations_per_epoch):
    counts += histogram(images, labels).numpy()
  values = pseudo.thresholds(counts, method.pseudo_threshold, method.pseudo_median)
  if experiment.chief:
    experiment.run_dir.write_json(path, {
        "thresholds": [float(v) for v in values], "floor": method.pseudo_threshold,
        "median_rule": method.pseudo_median, "max_entropy": pseudo.max_entropy(num_classes),
        "histogram": counts.tolist()})
  print(f"  pseudo-label thresholds per class ({time.time() - start:.1f}s): "
        + " ".join(f"{v:.4g}" for v in values[:num_classes]), flush=True)
  return tuple(float(v) for v in values)


def prepare_step(experiment: Experiment, method: Method, step: int,
                 plan: TaskPlan | None = None) -> StepContext:
  """Everything `step` of `method` trains with, restored from its last save if it was
  interrupted."""
  plan, strategy, config = plan or experiment.plan, experiment.strategy, experiment.config
  directory = experiment.run_dir.step_dir(method, step)
  # Non-chief workers save too (saving may need every worker), into a directory of their own.
  save_dir = directory if experiment.chief else checkpoints.worker_dir(
      directory, worker_id(strategy))
  previous_dir = experiment.run_dir.step_dir(method, step - 1) if step > 0 else None
  ids = step_images(experiment, plan, step)["train"]
  schedule = step_schedule(experiment, plan, step, len(ids), method)
  keras.utils.set_random_seed(config.seed + step)
  with strategy.scope():
    model, old_model = initial_model(experiment, method, step, plan)
    objective = build_objective(method, plan.num_classes(step - 1) if step else 0,
                                config.weak.loss if experiment.weak_labels else None,
                                config.weak.gamma)
    frozen = freeze(model, objective.freeze)
    regularizer = _regularizer(method, model, old_model, previous_dir)
    optimizer = make_optimizer(schedule, loss_scaling=config.precision == "mixed_float16")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint, manager = checkpoints.training_manager(directory, model, optimizer, epoch,
                                                       regularizer, save_dir)
    if manager.latest_checkpoint:
      optimizer.build(model.trainable_variables)  # create the momentum slots it restores into
      restored = checkpoints.restore_training(checkpoint, manager)
      print(f"  resuming step {step} from {restored} (epoch "
            f"{int(epoch.numpy()) + 1}, after iteration {int(optimizer.iterations.numpy())})")
    data = _epoch_data(experiment, plan, step, ids, schedule.num_epochs)
    if method.pseudo is not None and old_model is not None:
      objective = dataclasses.replace(objective, pseudo_thresholds=pseudo_thresholds(
          experiment, method, old_model, data, schedule, plan.num_classes(step), directory))
    trainer = StepTrainer(strategy, model, old_model, objective, optimizer,
                          schedule.weight_decay, config.jit_compile, regularizer,
                          schedule.weight_decay_on)
  return StepContext(method, step, plan, directory, save_dir, previous_dir, len(ids), schedule,
                     data, model, trainer, epoch, manager, regularizer, frozen)


def fit(experiment: Experiment, context: StepContext) -> None:
  """Trains a prepared step to its end, then saves it as finished."""
  config, name, step = experiment.config, context.method.name, context.step
  schedule, trainer = context.schedule, context.trainer
  writer = None
  if experiment.chief:
    events = experiment.run_dir.train_tensorboard(context.directory)
    # A resumed step logs again the iterations after its last checkpoint: drop the old ones.
    summaries.purge_after(events, int(trainer.optimizer.iterations.numpy()))
    writer = tf.summary.create_file_writer(events)
  decay = f"; lr decay over {schedule.decay_iterations}" if schedule.decay_iterations else ""
  frozen = f", {len(context.frozen)} frozen variables" if context.frozen else ""
  print(f"[{name}] step {step}: classes {list(context.plan.new_classes(step))}, "
        f"{context.num_images} training images, {schedule.total_iterations} iterations "
        f"({schedule.num_epochs} x {schedule.iterations_per_epoch} per pass{decay}), "
        f"terms {trainer.term_names}{frozen}", flush=True)
  start = time.time()
  try:
    trainer.train(context.epoch_dataset, schedule, context.epoch,
                  on_epoch_end=context.manager.save, writer=writer, log_every=config.log_every,
                  verbose=config.verbose, on_checkpoint=context.manager.save,
                  checkpoint_seconds=config.checkpoint_seconds)
  except TrainingDivergedError as error:
    raise TrainingDivergedError(f"[{name}] step {step}: {error}") from None
  regularizer = context.regularizer
  checkpoints.save_final(context.model, context.save_dir,
                         None if regularizer is None else regularizer.finish(),
                         context.previous_dir)
  if writer is not None:
    writer.close()
  if not experiment.chief:
    checkpoints.remove_worker_dir(context.save_dir)
  print(f"[{name}] step {step} trained in {time.time() - start:.1f}s", flush=True)


def train_step(experiment: Experiment, method: Method, step: int,
               plan: TaskPlan | None = None) -> None:
  """Trains `step` of `method` (resuming if interrupted) and saves its final checkpoint."""
  fit(experiment, prepare_step(experiment, method, step, plan))


def run_method(experiment: Experiment, method: Method, steps: list[int]) -> dict:
  """Trains (or skips, if finished) and scores each of `steps`; returns the last record.

  The chief holds the method's lock throughout (a second run of the same method in this run
  directory is refused, naming the first), and each step folder's lock while it trains that step:
  a step 0 shared with a method trained in parallel is trained once, the other run waits for it.
  """
  run_dir = experiment.run_dir
  with _locked(experiment, run_dir.method_dir(method.name),
               f"method {method.name} of {run_dir.path}", wait=False):
    return _run_method(experiment, method, steps)


def _locked(experiment: Experiment, directory: str, what: str, wait: bool):
  return lock(directory, what, wait) if experiment.chief else contextlib.nullcontext()


def _canonical_method(record: dict) -> dict:
  """A method.json with its method in canonical form (method_record): a record written with
  fields at their defaults, or without fields added since, matches."""
  if not isinstance(record.get("method"), dict):
    return record
  try:
    method = method_from_record(record["method"])
  except (TypeError, ValueError):   # not a method record: compared as it is
    return record
  return {**record, "method": json.loads(json.dumps(method_record(method)))}


def _run_method(experiment: Experiment, method: Method, steps: list[int]) -> dict:
  config, run_dir = experiment.config, experiment.run_dir
  run_dir.guard(run_dir.method_json(method.name), {
      "method": method_record(method), "lr_incremental": config.schedule.lr_incremental,
      "epochs_incremental": config.schedule.epochs_incremental,
      **config.schedule.shared_record()}, write=experiment.chief, normalize=_canonical_method)
  if experiment.chief:
    run_dir.write_text(run_dir.flags_txt(method.name), config.flags_text)
  plan = None
  if method.offline:  # one step with every class; reported as the experiment's last step
    plan, steps = joint_plan(experiment.plan), [0]
  record = {}
  for step in steps:
    barrier(experiment.strategy)  # workers agree on what is finished (the chief wrote it)
    directory = run_dir.step_dir(method, step)
    if step > 0 and plan is None:   # (a step 0 retrained by this run: checked now)
      checkpoints.check_parent(directory, run_dir.step_dir(method, step - 1))
    if checkpoints.is_complete(directory):
      print(f"[{method.name}] step {step} already trained; evaluating its checkpoint.")
    else:
      with _locked(experiment, directory, f"step {step} ({directory})", wait=True):
        if checkpoints.is_complete(directory):   # trained meanwhile by the lock's holder
          print(f"[{method.name}] step {step} was trained by another run; evaluating it.")
        else:
          with progress.phase("training"):
            train_step(experiment, method, step, plan)
    with progress.phase("evaluation"):
      record = evaluate_step(experiment, method, step, plan)
    if record:
      with progress.phase("reporting"):
        print(report.format_step_table(record, method.name), flush=True)
        report.write_summary(run_dir, method.name)
  return record


def run_experiment(experiment: Experiment) -> dict[str, dict]:
  """Every method of the config over its steps; the chief writes the comparison and plot of
  every method evaluated in the run directory (methods trained by other runs included).
  Returns the last record of each method of this run."""
  config = experiment.config
  steps = experiment_steps(experiment)
  finals = {method.name: run_method(experiment, method, steps) for method in config.methods}
  barrier(experiment.strategy)
  if experiment.chief:
    with progress.phase("reporting"):
      _write_comparison(experiment)
  return finals


def _write_comparison(experiment: Experiment) -> None:
  """The comparison table and mIoU plot of every method evaluated in the run directory."""
  config, run_dir = experiment.config, experiment.run_dir
  every = report.method_records(run_dir)
  comparison = report.format_comparison({m: records[-1] for m, records in every.items()})
  run_dir.write_text(run_dir.comparison, comparison + "\n")
  plot.plot_miou_per_step(
      every, run_dir.miou_plot,
      f"{experiment.source.name} {config.protocol.task} {config.protocol.setting}")
