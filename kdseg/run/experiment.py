"""An Experiment: a RunConfig resolved against the data and the machine, before any training.

build_experiment reads the dataset, scans its labels (cached), builds the task plan, checks the
weights file and the strategy, and only then records the run directory's experiment.json (the
config guard) and run.json (the resolved run). Everything that can be wrong with flags or data
fails here, before a file is written.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import tensorflow as tf

from kdseg import atomic, fs
from kdseg.config import (EvaluationConfig, FlagValueError, ProtocolConfig, RunConfig,
                          ScheduleConfig)
from kdseg.data import presence, splits, weak
from kdseg.data.datasets import load_source
from kdseg.data.orders import task_plan
from kdseg.data.source import DatasetLayoutError, SegmentationSource
from kdseg.data.tasks import TaskPlan
from kdseg.engine import checkpoints
from kdseg.engine.distribute import is_chief, make_strategy, num_workers
from kdseg.models import pretrained
from kdseg.models.segmenter import config_record
from kdseg.methods import Method, check_weak
from kdseg.rundir import RecordedRun, RunDir, check_unlocked


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a step needs besides the method: configuration, data, plan and run directory."""
  config: RunConfig
  source: SegmentationSource
  plan: TaskPlan
  run_dir: RunDir
  train_presence: np.ndarray   # [N, 256] bool: class ids present in each training image
  val_presence: np.ndarray
  strategy: tf.distribute.Strategy
  pretrained_weights: dict | None = None  # ImageNet weights per layer name, loaded before step 0
  weak_labels: weak.AnnotationSet | None = None  # sparse training labels (--supervision)
  train_pixels: np.ndarray | None = None  # [N, 256] pixels per class id of each training image

  @property
  def chief(self) -> bool:
    """Whether this process writes the run directory (all but non-chief workers)."""
    return is_chief(self.strategy)


def joint_plan(plan: TaskPlan) -> TaskPlan:
  """The offline upper bound: every class of `plan`, in its order, learned in one step."""
  return TaskPlan(name=f"{plan.name} joint", steps=(plan.order(plan.num_steps - 1),), joint=True)


def own_rows(protocol: ProtocolConfig, seed: int, source: SegmentationSource,
             train_presence: np.ndarray, plan: TaskPlan, step: int) -> np.ndarray:
  """Rows of the training split that kdseg's filtering selects for `step` (--setting)."""
  return splits.train_rows(train_presence, plan, step, protocol.setting,
                           protocol.min_images_per_class, seed, source.class_names)


def reference_rows(protocol: ProtocolConfig, source: SegmentationSource, plan: TaskPlan,
                   step: int) -> np.ndarray:
  """Rows of the training split the reference's split file of `step` lists (--split_files)."""
  train_ids = source.split("train").ids
  listed = splits.read_list_file(protocol.split_list) if protocol.split_list else train_ids
  ids = splits.read_reference_split(protocol.split_files, step, listed, plan)
  position = {image_id: row for row, image_id in enumerate(train_ids)}
  missing = [image_id for image_id in ids if image_id not in position]
  if missing:
    raise splits.SplitError(
        f"{len(missing)} images of {protocol.split_files}/train-{step}.npy are not in "
        f"{source.name}'s training split (e.g. {missing[:3]}): the list it indexes is another "
        "one; give it with --split_list.")
  return np.array(sorted(position[image_id] for image_id in ids), np.int64)


def training_rows(experiment: Experiment, plan: TaskPlan, step: int) -> np.ndarray:
  """Rows of the training split that `step` trains on (before any hold-out): the reference's
  split files when given (--split_files; not for the offline joint plan), else kdseg's own."""
  protocol = experiment.config.protocol
  if protocol.split_files and not plan.joint:
    return reference_rows(protocol, experiment.source, plan, step)
  return own_rows(protocol, experiment.config.seed, experiment.source,
                  experiment.train_presence, plan, step)


def step_images(experiment: Experiment, plan: TaskPlan, step: int) -> dict[str, tuple[str, ...]]:
  """{'train': ids[, 'holdout': ids]} of `step`, written once to the run's split files."""
  rows = training_rows(experiment, plan, step)
  ids = experiment.source.split("train").ids
  directory = experiment.run_dir.splits_dir(joint=plan.joint)
  fraction = experiment.config.protocol.holdout_fraction
  if not fraction:
    chosen = {"train": splits.step_ids(directory, step, "train", ids, rows)}
  else:
    train, held = splits.holdout_rows(rows, fraction, experiment.config.seed + step)
    chosen = {"train": splits.step_ids(directory, step, "train", ids, train),
              "holdout": splits.step_ids(directory, step, "holdout", ids, held)}
  if experiment.chief and experiment.train_pixels is not None:
    # The manifest beside each id list: count, digest, pixels per class (once, like the list).
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    for kind, kind_ids in chosen.items():
      path = splits.manifest_file(directory, step, kind)
      if not fs.isfile(path):
        pixels = experiment.train_pixels[[row_of[i] for i in kind_ids]]
        atomic.write_json(path, splits.manifest(kind_ids, pixels, experiment.source.class_names))
  return chosen


def train_labels(experiment: Experiment, plan: TaskPlan, step: int) -> np.ndarray:
  protocol = experiment.config.protocol
  return splits.train_label_table(plan, step, splits.get_setting(protocol.setting).keep_old_labels,
                                  protocol.void_label)


def experiment_steps(experiment: Experiment) -> list[int]:
  """The steps this run trains: all (--step=-1) or the one --step."""
  step = experiment.config.step
  return list(range(experiment.plan.num_steps)) if step < 0 else [step]


def how_to_train(step: int, method: Method) -> str:
  return (f"Train step {step} first: python -m kdseg.train <same flags> --method={method.name} "
          f"--step={step} (or omit --step to train all steps in order).")


def check_starting_weights(experiment: Experiment) -> None:
  """A step 0 still to train on a real dataset, on a backbone with released weights, needs them
  (--backbone_weights) or an explicit --backbone_weights=none: every recipe of both papers
  starts from pretrained weights, and a network trained from scratch there is rarely what was
  meant. Runs that only continue from a finished (e.g. imported) step 0 need none."""
  config = experiment.config
  if (config.backbone_weights or config.from_scratch or config.data.dataset == "shapes"
      or config.model.backbone not in pretrained.RELEASED or 0 not in experiment_steps(experiment)):
    return
  if all(checkpoints.is_complete(experiment.run_dir.step_dir(m, 0)) for m in config.methods):
    return
  backbone = config.model.backbone
  raise FlagValueError(
      f"--dataset={config.data.dataset} on --backbone={backbone} without --backbone_weights: "
      f"{pretrained.starting_point(backbone)} {pretrained.how_to_get(backbone)} To train step 0 "
      "from random weights on purpose, pass --backbone_weights=none.")


def check_can_start(experiment: Experiment) -> None:
  """Fails before anything is written if a previous step is missing, step 0 lacks its starting
  weights, or a step cannot fill a batch."""
  check_starting_weights(experiment)
  steps, methods = experiment_steps(experiment), experiment.config.methods
  for method in (m for m in methods if not m.offline):
    for step in (s for s in steps if s > 0):
      checkpoints.check_parent(experiment.run_dir.step_dir(method, step),
                               experiment.run_dir.step_dir(method, step - 1))
  first = steps[0]
  if first > 0:
    for method in (m for m in methods if not m.offline):
      previous = experiment.run_dir.step_dir(method, first - 1)
      if not checkpoints.is_complete(previous):
        raise checkpoints.CheckpointError(f"--step={first} needs the finished step {first - 1} "
                                          f"in {previous}. " + how_to_train(first - 1, method))
  batch_size = experiment.config.schedule.batch_size
  fraction = experiment.config.protocol.holdout_fraction
  for step in steps:
    count = len(training_rows(experiment, experiment.plan, step))
    count -= int(round(fraction * count))
    if count == 0:
      raise splits.SplitError(
          f"step {step} has no training image under --setting="
          f"{experiment.config.protocol.setting}: no image holds its classes "
          f"{list(experiment.plan.new_classes(step))} that way. Check --task, --setting, "
          "--class_order and the dataset's labels.")
    if count < batch_size:
      raise FlagValueError(f"step {step} has {count} training images under --setting="
                           f"{experiment.config.protocol.setting}, fewer than --batch_size="
                           f"{batch_size}; lower --batch_size.")


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits for every worker of a multi-worker cluster (no-op on one machine)."""
  if num_workers(strategy) > 1:
    strategy.reduce(tf.distribute.ReduceOp.SUM,
                    strategy.run(lambda: tf.constant(1.0)), axis=None)


def step0_record(config: RunConfig) -> dict:
  # The weights file's name is recorded only when used (run directories from before the flag
  # stay valid; the file may move).
  weights = config.backbone_weights
  extra = {"backbone_weights": fs.basename(weights)} if weights else {}
  return {"lr": config.schedule.lr, "epochs": config.schedule.epochs,
          **config.schedule.shared_record(), **extra}


def protocol_record(config: RunConfig, plan: TaskPlan) -> dict:
  # Recorded only where they differ from the defaults, so run directories written before these
  # options stay valid. The class order is recorded as the classes themselves: a frequency order
  # computed from changed labels is caught too. void_label is always recorded: run directories
  # from before it trained with void ignored, which the new default would silently change.
  protocol = config.protocol
  record = {"void_label": protocol.void_label}
  last = plan.num_steps - 1
  if plan.order(last)[1:] != tuple(range(1, plan.num_classes(last))):
    record["class_order"] = list(plan.order(last)[1:])
  if protocol.setting == "partition":
    record["min_images_per_class"] = protocol.min_images_per_class
  if protocol.holdout_fraction:
    record["holdout_fraction"] = protocol.holdout_fraction
  if protocol.split_files:
    record["split_files"] = protocol.split_files
  return record


def resolve_data(config: RunConfig):
  """(source, training pixels per class [N, 256], validation presence, task plan): the dataset
  read and its labels scanned (cached), nothing written to a run directory."""
  source = load_source(config.data)
  splits.get_setting(config.protocol.setting)
  # One cached scan of each split's labels validates them and gives every split and order.
  train_counts = presence.class_pixel_counts(source, "train", config.data.cache_dir)
  val_presence = presence.class_presence(source, "val", config.data.cache_dir)
  plan = task_plan(config.protocol.task, config.protocol.class_order, source.class_names,
                   source.scenarios, train_counts, source.class_orders)
  return source, train_counts, val_presence, plan


def build_experiment(config: RunConfig) -> Experiment:
  """Validates data, plan, weights, machine and the steps to train (a missing previous step, a
  step smaller than a batch), then records the run directory: nothing is written before the
  run can start."""
  source, train_counts, val_presence, plan = resolve_data(config)
  if config.step >= 0:
    plan.require_step(config.step)
  weights = None
  if config.backbone_weights:  # read now: a wrong file fails before anything is written
    path = pretrained.check_weights_file(config.model.backbone, config.backbone_weights)
    weights = pretrained.read_weights(config.model.backbone, path)
  strategy = make_strategy(config.strategy)
  if config.schedule.batch_size % strategy.num_replicas_in_sync:
    raise FlagValueError(f"--batch_size={config.schedule.batch_size} must be a multiple of the "
                         f"{strategy.num_replicas_in_sync} replicas.")
  weak_labels = None
  if config.weak.weak and source.records is not None:
    raise FlagValueError("weak supervision builds its sparse maps from the label files: use "
                         "--data_format=folder with --supervision=points/scribbles.")
  if config.weak.weak:  # built (or read from the cache) now: bad annotations fail here
    for method in config.methods:
      check_weak(method, config.weak.loss)
    weak_labels = weak.annotation_set(source, "train", config.weak, config.seed,
                                      config.data.cache_dir)
    manifest = weak_labels.manifest
    print(f"weak labels ({config.weak.supervision}, {config.weak.format}): "
          f"{manifest['annotated_pixel_fraction']:.2%} of training pixels annotated, "
          f"{manifest['images_without_annotation']} of {manifest['images']} images without "
          f"annotation; {weak_labels.directory}", flush=True)
  experiment = Experiment(config, source, plan, RunDir(config.run_dir), train_counts > 0,
                          val_presence, strategy, weights, weak_labels, train_counts)
  check_can_start(experiment)
  if experiment.chief:   # a run the method lock would refuse writes nothing
    for method in config.methods:
      check_unlocked(experiment.run_dir.method_dir(method.name),
                     f"method {method.name} of {experiment.run_dir.path}")
  record_experiment(experiment)
  return experiment


def data_digest(experiment: Experiment) -> str:
  """16 hex digits of the dataset's content as the run sees it: each split's ids, and the pixels
  per class of every training label and the classes of every validation one. The same data
  moved elsewhere (another --data_root or --cache_dir) keeps it; changed labels do not."""
  digest = hashlib.sha256()
  for split in ("train", "val"):
    digest.update("".join(f"{i}\n" for i in experiment.source.split(split).ids).encode())
  digest.update(np.ascontiguousarray(experiment.train_pixels, np.int64).tobytes())
  digest.update(np.ascontiguousarray(experiment.val_presence, bool).tobytes())
  return digest.hexdigest()[:16]


# experiment.json's format. 1 (no "schema" key): written before 2026-12-05, the data guarded by
# its path and the step-0 record without its optimizer (Keras' SGD). 2: "data_digest", and
# step_0's "optimizer" always present.
EXPERIMENT_SCHEMA = 2


def migrate_experiment_record(recorded: dict, data_root: str, digest: str) -> dict:
  """An experiment.json record brought to EXPERIMENT_SCHEMA. From 1: the data's path becomes
  its digest where that path still holds this data (elsewhere it stays, and the guard refuses);
  a step-0 record without an optimizer says "keras-sgd", the optimizer it was trained with, so a
  run continuing it with the references' SGD is refused by name."""
  record = dict(recorded)
  if record.get("schema", 1) < 2:
    if "data_digest" not in record and record.get("data_root") == data_root:
      del record["data_root"]
      record["data_digest"] = digest
    if "step_0" in record and "optimizer" not in record["step_0"]:
      record["step_0"] = {**record["step_0"], "optimizer": "keras-sgd"}
    record["schema"] = 2
  return record


def _migrate_record(experiment: Experiment, digest: str) -> None:
  """experiment.json rewritten in the current schema (migrate_experiment_record), if older."""
  path = experiment.run_dir.experiment_json
  if not (experiment.chief and fs.isfile(path)):
    return
  recorded = fs.read_json(path)
  migrated = migrate_experiment_record(recorded, experiment.source.root, digest)
  if migrated != recorded:
    experiment.run_dir.write_json(path, migrated)


def record_experiment(experiment: Experiment) -> None:
  """experiment.json (guarded: a run directory holds one experiment) and run.json."""
  config, run_dir = experiment.config, experiment.run_dir
  digest = data_digest(experiment)
  _migrate_record(experiment, digest)
  run_dir.guard(run_dir.experiment_json, {
      "schema": EXPERIMENT_SCHEMA, "dataset": config.data.dataset, "data_digest": digest,
      "task": config.protocol.task, "setting": config.protocol.setting, "seed": config.seed,
      "model": config_record(config.model), "step_0": step0_record(config),
      **protocol_record(config, experiment.plan),
      # Recorded only for weak labels and records: older run directories stay valid.
      **({"weak": config.weak.record()} if config.weak.weak else {}),
      **({"data_format": "tfds"} if experiment.source.records is not None else {})}, write=experiment.chief)
  if experiment.chief:
    data = dataclasses.replace(config.data, data_root=experiment.source.root)
    run_dir.record_run(RecordedRun(
        experiment.plan, experiment.source.class_names, experiment.source.palette,
        dataclasses.replace(config.model, recompute=False), data, config.protocol.setting,
        config.protocol.void_label, config.protocol.holdout_fraction, config.seed,
        config.protocol.min_images_per_class,
        {"eval_batch_size": config.evaluation.batch_size, "eval_crop": config.evaluation.crop,
         "background_in_old": config.evaluation.background_in_old,
         **({"eval_images": config.evaluation.images}
            if config.evaluation.images != "seen" else {}),
         **({"test_time": config.evaluation.test_time.tag}
            if config.evaluation.test_time.tag != "single" else {})}))


def open_experiment(run_dir: RunDir, recorded: RecordedRun, method: Method,
                    evaluation: EvaluationConfig, data_root: str | None = None,
                    cache_dir: str | None = None, verbose: int = 1) -> Experiment:
  """The Experiment of a finished run, from what it recorded (run.json) and the dataset it
  names (`data_root`/`cache_dir`: another location of the same data). Writes nothing."""
  data = dataclasses.replace(recorded.data, data_root=data_root or recorded.data.data_root,
                             cache_dir=cache_dir or recorded.data.cache_dir)
  try:
    source = load_source(data)
  except DatasetLayoutError as error:
    if data_root:
      raise
    raise DatasetLayoutError(
        f"{error} (The run recorded its dataset at {recorded.data.data_root}: if it moved, "
        "name its new place with --data_root, and --cache_dir if the cache moved too.)") from None
  train_counts = presence.class_pixel_counts(source, "train", data.cache_dir)
  val_presence = presence.class_presence(source, "val", data.cache_dir)
  protocol = ProtocolConfig(recorded.plan.name, recorded.setting, "recorded",
                            recorded.min_images_per_class, recorded.holdout_fraction,
                            recorded.void_label)
  config = RunConfig(data, protocol, recorded.model, ScheduleConfig(), evaluation, (method,),
                     run_dir.path, seed=recorded.seed, verbose=verbose)
  return Experiment(config, source, recorded.plan, run_dir, train_counts > 0, val_presence,
                    tf.distribute.get_strategy())
