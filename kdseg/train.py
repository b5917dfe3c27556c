"""Trains every step of an incremental task, evaluating after each step.

  python -m kdseg.train --flagfile=flags/shapes_15_1.cfg
  python -m kdseg.train --flagfile=flags/voc_15_1.cfg --data_root=/data/VOCdevkit/VOC2012
  python -m kdseg.train --flagfile=flags/shapes_15_1.cfg --method=mib --step=3

Step t is initialised from the finished checkpoint of step t-1, which is also loaded, frozen, as
the old model. Finished steps are skipped, interrupted ones resume from their last epoch.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import flags as _kdseg_flags  # noqa: E402,F401  (defines the flags)
from kdseg import metrics, plot, report  # noqa: E402
from kdseg.data import pipeline, presence, splits  # noqa: E402
from kdseg.data.splits import SplitError  # noqa: E402
from kdseg.data.datasets import DataConfig, load_source  # noqa: E402
from kdseg.data.shapes import ShapesConfig  # noqa: E402
from kdseg.data.source import DatasetLayoutError, SegmentationSource  # noqa: E402
from kdseg.data.orders import task_plan  # noqa: E402
from kdseg.data.tasks import TaskError, TaskPlan  # noqa: E402
from kdseg.engine import checkpoints, summaries  # noqa: E402
from kdseg.engine.distribute import (StrategyError, is_chief, make_strategy,  # noqa: E402
                                     num_workers, worker_id)
from kdseg.engine.crf import DenseCRF  # noqa: E402
from kdseg.engine.evaluation import (TestTime, confusion_matrix,  # noqa: E402
                                     predict_probabilities)
from kdseg.engine.loop import (Schedule, StepTrainer, TrainingDivergedError,  # noqa: E402
                               make_optimizer)
from kdseg.losses.regularizers import ImportanceRegularizer  # noqa: E402
from kdseg.methods import Method, MethodError, build_objective, customize, get_method  # noqa: E402
from kdseg.models.classifier import HEAD_INITIALIZERS  # noqa: E402
from kdseg.models.freezing import freeze  # noqa: E402
from kdseg.models import pretrained  # noqa: E402
from kdseg.models.segmenter import (ModelConfig, build_segmenter, config_record,  # noqa: E402
                                    copy_matching_weights)

FLAGS = flags.FLAGS


class ConfigMismatchError(ValueError):
  """The run directory holds results of an experiment with other settings."""


class FlagValueError(ValueError):
  """Flags that contradict each other or the machine (e.g. batch size vs replicas)."""


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a step needs besides the method: data, task plan, model and run directory."""
  source: SegmentationSource
  plan: TaskPlan
  setting: str
  model_config: ModelConfig
  run_dir: str
  train_presence: np.ndarray
  val_presence: np.ndarray
  strategy: tf.distribute.Strategy
  backbone_weights: str | None = None   # ImageNet file loaded before step 0 ...
  pretrained_weights: dict | None = None  # ... and its weights per layer name

  @property
  def chief(self) -> bool:
    """Whether this process writes the run directory (all but non-chief workers)."""
    return is_chief(self.strategy)


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits for every worker of a multi-worker cluster (no-op on one machine)."""
  if num_workers(strategy) > 1:
    strategy.reduce(tf.distribute.ReduceOp.SUM,
                    strategy.run(lambda: tf.constant(1.0)), axis=None)


def guard_config(path: str, payload: dict, write: bool = True) -> None:
  """Records `payload` at `path`, or checks it equals what an earlier run recorded there.

  With write=False (non-chief workers) an absent record is left for the chief to write.
  """
  payload = json.loads(json.dumps(payload))
  if os.path.isfile(path):
    with open(path) as handle:
      recorded = json.load(handle)
    changed = sorted(k for k in set(recorded) | set(payload) if recorded.get(k) != payload.get(k))
    if changed:
      details = "; ".join(f"{k}: was {recorded.get(k)!r}, now {payload.get(k)!r}" for k in changed)
      raise ConfigMismatchError(
          f"{path} records another configuration ({details}). Its checkpoints and results would "
          "not match these flags: choose a new --run_dir (nothing was changed in this one).")
    return
  if write:
    checkpoints.write_json_atomic(path, payload)


def step0_config(backbone_weights: str | None) -> dict:
  # The weights file's name is recorded only when used (run directories from before the flag
  # stay valid; the file may move).
  extra = {"backbone_weights": backbone_weights} if backbone_weights else {}
  return {"lr": FLAGS.lr, "epochs": FLAGS.epochs, **_shared_schedule_config(), **extra}


def _shared_schedule_config() -> dict:
  # Options added later are recorded only when set, so run directories written before them
  # (where they had their default) stay valid.
  optional = {"end_lr": FLAGS.end_lr, "iterations_per_class": FLAGS.iterations_per_class}
  return {"batch_size": FLAGS.batch_size, "augment": FLAGS.augment,
          "crop_size": FLAGS.crop_size,
          "min_scale": FLAGS.min_scale, "max_scale": FLAGS.max_scale,
          "momentum": FLAGS.momentum, "weight_decay": FLAGS.weight_decay,
          "poly_power": FLAGS.poly_power, **{k: v for k, v in optional.items() if v}}


def build_experiment() -> Experiment:
  """Validates flags, data and run directory before any training (fail early)."""
  shapes_config = ShapesConfig(image_size=FLAGS.shapes_image_size,
                               num_train=FLAGS.shapes_num_train, num_val=FLAGS.shapes_num_val,
                               seed=FLAGS.shapes_seed)
  source = load_source(DataConfig(FLAGS.dataset, FLAGS.data_root, FLAGS.cache_dir,
                                  shapes_config))
  splits.get_setting(FLAGS.setting)
  # One cached scan of each split's labels validates them and gives every split and order.
  cache_dir = os.path.expanduser(FLAGS.cache_dir)
  train_counts = presence.class_pixel_counts(source, "train", cache_dir)
  val_presence = presence.class_presence(source, "val", cache_dir)
  plan = task_plan(FLAGS.task, FLAGS.class_order, source.class_names, source.scenarios,
                   train_counts, source.class_orders)
  if FLAGS.step >= plan.num_steps:
    raise TaskError(f"--step={FLAGS.step}, but task {FLAGS.task} has steps 0..{plan.num_steps - 1}.")
  backbone_weights = pretrained_weights = None
  if FLAGS.backbone_weights:  # read now: a wrong file fails before anything is written
    backbone_weights = pretrained.check_weights_file(FLAGS.backbone, FLAGS.backbone_weights)
    pretrained_weights = pretrained.read_weights(FLAGS.backbone, backbone_weights)
  convention = FLAGS.input_convention
  if convention == "auto":
    convention = "caffe" if backbone_weights else "imagenet"
  model_config = ModelConfig(FLAGS.backbone, FLAGS.output_stride, FLAGS.head_channels,
                             FLAGS.head, input_convention=convention, recompute=FLAGS.recompute)
  strategy = make_strategy(FLAGS.strategy)
  if FLAGS.batch_size % strategy.num_replicas_in_sync:
    raise FlagValueError(f"--batch_size={FLAGS.batch_size} must be a multiple of the "
                         f"{strategy.num_replicas_in_sync} replicas.")
  run_dir = os.path.abspath(FLAGS.run_dir or os.path.join(
      "runs", f"{FLAGS.dataset}_{FLAGS.task}_{FLAGS.setting}"))
  guard_config(os.path.join(run_dir, "experiment.json"), {
      "dataset": FLAGS.dataset, "data_root": source.root, "task": FLAGS.task,
      "setting": FLAGS.setting, "seed": FLAGS.seed, "model": config_record(model_config),
      "step_0": step0_config(backbone_weights and os.path.basename(backbone_weights)),
      **_protocol_config(plan)}, write=is_chief(strategy))
  return Experiment(source, plan, FLAGS.setting, model_config, run_dir, train_counts > 0,
                    val_presence, strategy, backbone_weights, pretrained_weights)


def _protocol_config(plan: TaskPlan) -> dict:
  # Recorded only where they differ from the defaults, so run directories written before these
  # options stay valid. The class order is recorded as the classes themselves: a frequency order
  # computed from changed labels is caught too. void_label is always recorded: run directories
  # from before it trained with void ignored, which the new default would silently change.
  record = {"void_label": FLAGS.void_label}
  last = plan.num_steps - 1
  if plan.order(last)[1:] != tuple(range(1, plan.num_classes(last))):
    record["class_order"] = list(plan.order(last)[1:])
  if FLAGS.setting == "partition":
    record["min_images_per_class"] = FLAGS.min_images_per_class
  if FLAGS.holdout_fraction:
    record["holdout_fraction"] = FLAGS.holdout_fraction
  return record


def training_rows(experiment: Experiment, plan: TaskPlan, step: int) -> np.ndarray:
  """Rows of the training split that `step` trains on (before any hold-out)."""
  return splits.train_rows(experiment.train_presence, plan, step, experiment.setting,
                           FLAGS.min_images_per_class, FLAGS.seed,
                           experiment.source.class_names)


def step_images(experiment: Experiment, plan: TaskPlan, step: int) -> dict[str, tuple[str, ...]]:
  """{'train': ids[, 'holdout': ids]} of `step`, written once to the run's split files."""
  rows = training_rows(experiment, plan, step)
  ids = experiment.source.split("train").ids
  directory = _split_dir(experiment, plan)
  if not FLAGS.holdout_fraction:
    return {"train": splits.step_ids(directory, step, "train", ids, rows)}
  train, held = splits.holdout_rows(rows, FLAGS.holdout_fraction, FLAGS.seed + step)
  return {"train": splits.step_ids(directory, step, "train", ids, train),
          "holdout": splits.step_ids(directory, step, "holdout", ids, held)}


def _how_to_train(step: int, method: Method) -> str:
  return (f"Train step {step} first: python -m kdseg.train <same flags> --method={method.name} "
          f"--step={step} (or omit --step to train all steps in order).")


def resolve_methods() -> list[Method]:
  """The --method records, changed by the method flags (--distill, --freeze, ...)."""
  return [customize(get_method(name), classification=FLAGS.classification,
                    distill=FLAGS.distill, freeze=FLAGS.freeze, init=FLAGS.init,
                    regularizer=FLAGS.regularizer, pixel_mean=FLAGS.pixel_mean,
                    temperature=FLAGS.temperature, kd_alpha=FLAGS.kd_alpha,
                    distill_pixels=FLAGS.distill_pixels, spkd_divide_by=FLAGS.spkd_divide_by,
                    ce_pixels=FLAGS.ce_pixels,
                    feature_normalisation=FLAGS.feature_normalisation)
          for name in FLAGS.method]


def joint_plan(plan: TaskPlan) -> TaskPlan:
  """The offline upper bound: every class of `plan`, in its order, learned in one step."""
  return TaskPlan(name=f"{plan.name} joint", steps=(plan.order(plan.num_steps - 1),))


def _split_dir(experiment: Experiment, plan: TaskPlan) -> str:
  directory = os.path.join(experiment.run_dir, "splits")
  return directory if plan is experiment.plan else os.path.join(directory, "joint")


def _regularizer(method: Method, model, old_model, previous_dir: str | None, step: int):
  """The step's EWC/PI/RW state, seeded with the previous step's finished state (None if the
  method has no regulariser)."""
  if method.regularizer is None:
    return None
  previous = old_parameters = None
  if old_model is not None:
    previous = checkpoints.load_state(previous_dir, _how_to_train(step - 1, method))
    old_parameters = {v.path: v.numpy() for v in old_model.variables}
  return ImportanceRegularizer(method.regularizer,
                               [(v.path, v) for v in model.trainable_variables], previous,
                               old_parameters, name=method.regularizer)


def train_step(experiment: Experiment, method: Method, step: int,
               plan: TaskPlan | None = None) -> None:
  """Trains `step` of `method` (resuming if interrupted) and saves its final checkpoint."""
  plan, strategy = plan or experiment.plan, experiment.strategy
  directory = checkpoints.step_dir(experiment.run_dir, method, step)
  # Non-chief workers save too (saving may need every worker), into a directory of their own.
  save_dir = directory if experiment.chief else checkpoints.worker_dir(
      directory, worker_id(strategy))
  train_files = experiment.source.split("train")
  ids = step_images(experiment, plan, step)["train"]
  first = step == 0
  schedule = Schedule(
      learning_rate=FLAGS.lr if first else FLAGS.lr_incremental,
      epochs=FLAGS.epochs if first else FLAGS.epochs_incremental,
      steps_per_epoch=len(ids) // FLAGS.batch_size, momentum=FLAGS.momentum,
      weight_decay=FLAGS.weight_decay, poly_power=FLAGS.poly_power,
      end_learning_rate=FLAGS.end_lr,
      # KD paper §5.2: |S_0| x 1000 iterations at step 0 (background counts), |U_k| x 1000 later.
      iterations=FLAGS.iterations_per_class * len(plan.steps[step]))
  dataset = pipeline.train_dataset(
      experiment.source, train_files.select(ids), _train_labels(experiment, plan, step),
      FLAGS.batch_size, FLAGS.crop_size, FLAGS.min_scale, FLAGS.max_scale, FLAGS.seed + step,
      FLAGS.augment)
  keras.utils.set_random_seed(FLAGS.seed + step)
  with strategy.scope():
    model = build_segmenter(experiment.model_config, plan.classes_per_step(step))
    old_model = previous_dir = None
    if step == 0 and experiment.backbone_weights:
      count = pretrained.assign_weights(model.backbone, experiment.pretrained_weights,
                                        experiment.backbone_weights)
      print(f"  backbone: {count} layers from {experiment.backbone_weights}")
    if step > 0:
      previous_dir = checkpoints.step_dir(experiment.run_dir, method, step - 1)
      old_model = checkpoints.load_final(
          previous_dir, experiment.model_config, plan.classes_per_step(step - 1),
          _how_to_train(step - 1, method))
      old_model.trainable = False
      copy_matching_weights(old_model, model)
      HEAD_INITIALIZERS[method.init](model.classifier)
    objective = build_objective(method, plan.num_classes(step - 1) if step else 0)
    frozen = freeze(model, objective.freeze)
    regularizer = _regularizer(method, model, old_model, previous_dir, step)
    optimizer = make_optimizer(schedule, loss_scaling=FLAGS.precision == "mixed_float16")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint, manager = checkpoints.training_manager(directory, model, optimizer, epoch,
                                                       regularizer, save_dir)
    if manager.latest_checkpoint:
      optimizer.build(model.trainable_variables)  # create the momentum slots it restores into
      checkpoint.restore(manager.latest_checkpoint).assert_consumed()
      print(f"  resuming step {step} from {manager.latest_checkpoint} (epoch {int(epoch.numpy())})")
    trainer = StepTrainer(strategy, model, old_model, objective, optimizer,
                          FLAGS.weight_decay, FLAGS.jit_compile, regularizer)
  writer = None if not experiment.chief else tf.summary.create_file_writer(os.path.join(
      experiment.run_dir, "tensorboard", os.path.relpath(directory, experiment.run_dir)))
  print(f"[{method.name}] step {step}: classes {list(plan.new_classes(step))}, {len(ids)} "
        f"training images, {schedule.total_iterations} iterations ({schedule.num_epochs} x "
        f"{schedule.steps_per_epoch} per pass), "
        f"terms {trainer.term_names}" + (f", {len(frozen)} frozen variables" if frozen else ""),
        flush=True)
  start = time.time()
  try:
    trainer.train(dataset, schedule, epoch, on_epoch_end=manager.save, writer=writer,
                  log_every=FLAGS.log_every, verbose=FLAGS.verbose)
  except TrainingDivergedError as error:
    raise TrainingDivergedError(f"[{method.name}] step {step}: {error}") from None
  checkpoints.save_final(model, save_dir,
                         None if regularizer is None else regularizer.finish())
  if writer is not None:
    writer.close()
  if not experiment.chief:
    checkpoints.remove_worker_dir(save_dir)
  print(f"[{method.name}] step {step} trained in {time.time() - start:.1f}s", flush=True)


def _train_labels(experiment: Experiment, plan: TaskPlan, step: int) -> np.ndarray:
  return splits.train_label_table(plan, step,
                                  splits.get_setting(experiment.setting).keep_old_labels,
                                  FLAGS.void_label)


def finished_model(experiment: Experiment, method: Method, step: int):
  """(model, plan, step) of a finished step; step -1 = the task's last (joint: its one step)."""
  plan = joint_plan(experiment.plan) if method.offline else experiment.plan
  step = 0 if method.offline else (step if step >= 0 else plan.num_steps - 1)
  model = checkpoints.load_final(checkpoints.step_dir(experiment.run_dir, method, step),
                                 experiment.model_config, plan.classes_per_step(step),
                                 _how_to_train(step, method))
  return model, plan, step


def test_time_from_flags() -> TestTime:
  try:
    crf = None
    if FLAGS.test_crf:
      crf = DenseCRF(**{field.name: getattr(FLAGS, f"crf_{field.name}")
                        for field in dataclasses.fields(DenseCRF)})
    return TestTime(tuple(float(scale) for scale in FLAGS.test_scales), FLAGS.test_flip,
                    FLAGS.test_merge, crf)
  except ValueError as error:
    raise FlagValueError(str(error)) from None


def score_step(experiment: Experiment, method: Method, step: int, plan: TaskPlan | None = None,
               split: str = "val", test_time: TestTime = TestTime(),
               checkpoint_dir: str | None = None):
  """Scores the finished model of `step` on the images of `split` holding classes seen so far.

  With `plan` (joint training) the model of that plan's `step` is evaluated and reported as the
  last step of the experiment's plan, whose classes it predicts in the same order.
  Returns (record, model, dataset).
  """
  plan = plan or experiment.plan
  report_plan = experiment.plan
  report_step = step if plan is experiment.plan else report_plan.num_steps - 1
  directory = checkpoint_dir or checkpoints.step_dir(experiment.run_dir, method, step)
  model = checkpoints.load_final(directory, experiment.model_config, plan.classes_per_step(step),
                                 _how_to_train(step, method))
  if split == "holdout":  # the step's held-out training images, labelled as in training
    files = experiment.source.split("train")
    ids = step_images(experiment, plan, step)["holdout"]
    label_table = _train_labels(experiment, plan, step)
  else:
    files = experiment.source.split(split)
    present = experiment.val_presence if split == "val" else experiment.train_presence
    rows = splits.eval_rows(present, plan, step)
    if split == "val":  # the validation list of a step is recorded with the run's splits
      ids = splits.step_ids(_split_dir(experiment, plan), step, "val", files.ids, rows)
    else:
      ids = tuple(files.ids[r] for r in rows)
    label_table = splits.eval_label_table(plan, step)
  dataset = pipeline.eval_dataset(experiment.source, files.select(ids), label_table,
                                  FLAGS.eval_batch_size, FLAGS.eval_crop)
  # A finished step never changes: its confusion matrix is kept beside it, so a step 0 shared
  # by several methods, or a re-run, is scored once per split and test-time setting.
  cache = os.path.join(directory, "final",
                       f"confusion_{split}_{test_time.tag}_crop{FLAGS.eval_crop}.npy")
  if os.path.isfile(cache):
    confusion = np.load(cache)
  else:
    confusion = confusion_matrix(model, dataset, plan.num_classes(step), test_time,
                                 progress=bool(FLAGS.verbose) and sys.stdout.isatty())
    if checkpoint_dir is None and experiment.chief:
      with open(cache + ".tmp", "wb") as out:
        np.save(out, confusion)
      os.replace(cache + ".tmp", cache)
  record = report.step_record(report_plan, report_step, metrics.scores(confusion),
                              experiment.source.class_names, FLAGS.background_in_old)
  record.update({"split": split, "num_images": len(ids), "test_time": test_time.tag,
                 "eval_crop": FLAGS.eval_crop, "checkpoint": directory,
                 "confusion": confusion.tolist()})
  return record, model, dataset


def evaluate_step(experiment: Experiment, method: Method, step: int,
                  plan: TaskPlan | None = None) -> dict:
  """Scores a just-finished step on its validation images: results/step_<t>.json, TensorBoard."""
  if not experiment.chief:
    return {}
  test_time = test_time_from_flags()
  split = "holdout" if FLAGS.holdout_fraction else "val"
  record, model, dataset = score_step(experiment, method, step, plan, split=split,
                                      test_time=test_time)
  report_step = record["step"]
  checkpoints.write_json_atomic(
      os.path.join(experiment.run_dir, method.name, "results", f"step_{report_step}.json"),
      record)
  writer = tf.summary.create_file_writer(
      os.path.join(experiment.run_dir, "tensorboard", method.name, "eval"))
  summaries.write_step(writer, report_step, record, report.format_step_table(record, method.name),
                       _panels(model, dataset, experiment.plan.order(report_step), experiment,
                               test_time))
  summaries.write_hparams(writer, method, {
      "dataset": FLAGS.dataset, "task": FLAGS.task, "setting": FLAGS.setting,
      "class_order": FLAGS.class_order, **config_record(experiment.model_config), "lr": FLAGS.lr,
      "lr_incremental": FLAGS.lr_incremental, **_shared_schedule_config()})
  writer.close()
  return record


def _panels(model, dataset: tf.data.Dataset, order, experiment: Experiment,
            test_time: TestTime):
  """Input | ground truth | prediction of the first --summary_images validation images."""
  if FLAGS.summary_images <= 0:
    return None
  images, labels = next(iter(dataset.unbatch().take(FLAGS.summary_images).padded_batch(
      FLAGS.summary_images, padding_values=(0.0, pipeline.IGNORE_LABEL))))
  predictions = tf.argmax(predict_probabilities(model, images, test_time), axis=-1)
  return summaries.image_panels(images, labels, predictions, order, experiment.source.palette)


def run_method(experiment: Experiment, method: Method, steps: list[int]) -> dict:
  method_dir = os.path.join(experiment.run_dir, method.name)
  guard_config(os.path.join(method_dir, "method.json"), {
      "method": dataclasses.asdict(method), "lr_incremental": FLAGS.lr_incremental,
      "epochs_incremental": FLAGS.epochs_incremental, **_shared_schedule_config()},
               write=experiment.chief)
  if experiment.chief:
    with open(os.path.join(method_dir, "flags.txt"), "w") as out:
      out.write(FLAGS.flags_into_string())
  plan = None
  if method.offline:  # one step with every class; reported as the experiment's last step
    plan, steps = joint_plan(experiment.plan), [0]
  record = {}
  for step in steps:
    barrier(experiment.strategy)  # workers agree on what is finished (the chief wrote it)
    if checkpoints.is_complete(checkpoints.step_dir(experiment.run_dir, method, step)):
      print(f"[{method.name}] step {step} already trained; evaluating its checkpoint.")
    else:
      train_step(experiment, method, step, plan)
    record = evaluate_step(experiment, method, step, plan)
    if record:
      print(report.format_step_table(record, method.name), flush=True)
      report.write_summary(method_dir, method.name)
  return record


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  logging.set_verbosity(logging.WARNING)
  methods = resolve_methods()
  keras.config.set_dtype_policy(FLAGS.precision)
  start = time.time()
  experiment = build_experiment()
  steps = list(range(experiment.plan.num_steps)) if FLAGS.step < 0 else [FLAGS.step]
  if FLAGS.step > 0:  # fail before any training if a previous step is missing
    for method in (m for m in methods if not m.offline):
      previous = checkpoints.step_dir(experiment.run_dir, method, FLAGS.step - 1)
      if not checkpoints.is_complete(previous):
        raise checkpoints.CheckpointError(
            f"--step={FLAGS.step} needs the finished step {FLAGS.step - 1} in {previous}. "
            + _how_to_train(FLAGS.step - 1, method))
  for step in steps:  # every step must fill at least one batch: fail before training any
    count = len(training_rows(experiment, experiment.plan, step))
    count -= int(round(FLAGS.holdout_fraction * count))
    if count < FLAGS.batch_size:
      raise FlagValueError(f"step {step} has {count} training images under --setting="
                           f"{FLAGS.setting}, fewer than --batch_size={FLAGS.batch_size}; "
                           "lower --batch_size.")
  print(f"kdseg: {experiment.source.name} {FLAGS.task} {FLAGS.setting}, methods "
        f"{[m.name for m in methods]}, {experiment.strategy.num_replicas_in_sync} replica(s), "
        f"run dir {experiment.run_dir}", flush=True)
  finals = {method.name: run_method(experiment, method, steps) for method in methods}
  barrier(experiment.strategy)
  if not experiment.chief:
    print(f"worker {worker_id(experiment.strategy)} done; the chief wrote the results.")
    return
  comparison = report.format_comparison(finals, experiment.plan)
  print(f"\n{comparison}\n(total wall time {time.time() - start:.0f}s)")
  with open(os.path.join(experiment.run_dir, "comparison.txt"), "w") as out:
    out.write(comparison + "\n")
  figure = plot.plot_miou_per_step(
      {method.name: report.load_records(os.path.join(experiment.run_dir, method.name))
       for method in methods}, os.path.join(experiment.run_dir, "miou_per_step.png"),
      f"{experiment.source.name} {FLAGS.task} {FLAGS.setting}")
  print(f"per-method summaries in {experiment.run_dir}/<method>/results/summary.md, plot {figure}")


# Errors caused by flags or data: reported as one message (what and how to fix), exit code 2.
USER_ERRORS = (TaskError, MethodError, SplitError, DatasetLayoutError, presence.LabelValueError,
               pipeline.PipelineError, checkpoints.CheckpointError, ConfigMismatchError,
               FlagValueError, TrainingDivergedError, StrategyError,
               pretrained.PretrainedWeightsError)


def command_line(name: str, main_function, *errors: type[Exception]):
  """The absl entry point of a kdseg command: a user error (USER_ERRORS, `errors`) prints one
  line naming the command and exits with status 2 instead of a traceback."""

  def main_with_clean_errors(argv):
    try:
      main_function(argv)
    except (*USER_ERRORS, *errors) as error:
      print(f"{name}: error: {error}", file=sys.stderr)
      sys.exit(2)

  return lambda: app.run(main_with_clean_errors)


run = command_line("kdseg.train", main)


if __name__ == "__main__":
  run()
